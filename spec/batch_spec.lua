-- client:push_many against the real emulator: mixed valid and invalid input,
-- faults in the middle of a batch, per-order ordering in the emulator's history,
-- results in input order, the deadline, token renewal, progress.

local clients = require "spec.support.clients"
local emulator = require "spec.support.emulator"
local errors = require "choco.active_order.errors"

local STATUSES = { "created", "paid", "cooking", "delivering", "delivered", "cancelled" }
local SECRET = "batch-spec-secret"
local FAST = { base_delay = 0.01, max_delay = 0.05 }

local function status(order_id, step)
    return {
        merchant_order_id = order_id,
        user_id = 1000 + step,
        external_status = STATUSES[(step - 1) % #STATUSES + 1],
        deeplinks = { { link = "https://rahmetapp.kz/100/orders/" .. order_id, type = "active_order_card" } },
        external_data = {
            expired_at = "2030-01-01 00:00:00",
            title_active_order_card = "Шаг " .. step,
            title_call_to_action = "К заказу",
            need_timer = false,
            countdown_timer = false,
        },
    }
end

local monotonic = require("choco.active_order.core").monotonic

describe("client:push_many", function()
    local emu

    emulator.use({ statuses = STATUSES, client_secret = SECRET }, function(started) emu = started end)

    local function new_client(extra)
        return clients.new(emu, { statuses = STATUSES, retry = FAST, timeout = 2 }, extra)
    end

    it("sends valid statuses, reports invalid ones unsent, results in input order", function()
        local c = new_client()
        local list = {}
        for i = 1, 40 do
            if i % 5 == 0 then
                local bad = status("B-" .. i, 1)
                bad.external_data.title_active_order_card = string.rep("Я", 31) -- over the 30-character limit
                list[i] = bad
            elseif i == 13 then
                list[i] = "not a status"
            else
                list[i] = status("B-" .. i, 1)
            end
        end
        local results, summary = c:push_many(list)
        assert.equal(40, #results)
        for i = 1, 40 do
            local r = results[i]
            if i % 5 == 0 or i == 13 then
                assert.is_true(errors.is_error(r), "result " .. i)
                assert.equal("validation", r.kind)
                assert.equal("INVALID_STATUS", r.code)
                assert.is_table(r.problems)
            else
                assert.is_false(errors.is_error(r), tostring(r))
                assert.equal("B-" .. i, r.merchant_order_id)
            end
        end
        assert.same({ total = 40, sent =31, failed = 9, invalid = 9, retried = 0 },
            { total = summary.total, sent = summary.sent, failed = summary.failed, invalid = summary.invalid,
              retried = summary.retried })
        assert.is_number(summary.duration)
        assert.equal(31, emu:state().requests.status)
        assert.is_nil(emu:history("B-5"))
        c:close()
    end)

    it("sends the statuses of one order one after another, in input order, under faults", function()
        local c = new_client()
        local list, orders, steps = {}, 12, 8
        for step = 1, steps do
            for o = 1, orders do list[#list + 1] = status("ORD-" .. o, step) end
        end
        local faults = {}
        for i = 1, 12 do faults[#faults + 1] = { kind = "http", status = (i % 2 == 0) and 503 or 502 } end
        faults[#faults + 1] = { kind = "close" }
        faults[#faults + 1] = { kind = "truncate" }
        assert(c:push(status("WARM", 1)))
        emu:faults("status", faults)
        local results, summary = c:push_many(list, { max_in_flight = 8 })
        for i = 1, #list do
            assert.is_false(errors.is_error(results[i]), tostring(results[i]))
        end
        assert.equal(#list, summary.sent)
        assert.is_true(summary.retried >= 12, "retried " .. summary.retried)
        for o = 1, orders do
            local h = emu:history("ORD-" .. o).history
            assert.equal(steps, #h)
            for step = 1, steps do
                assert.equal("Шаг " .. step, h[step].body.external_data.title_active_order_card)
            end
        end
        c:close()
    end)

    it("ends every item as success or the right error when faults hit mid-batch", function()
        local c = new_client { timeout = 0.5 }
        assert(c:push(status("WARM", 1)))
        emu:faults("status", {
            { kind = "http", status = 503 }, { kind = "http", status = 400 }, { kind = "delay", ms = 1500 },
            { kind = "close" }, { kind = "not_json" }, { kind = "http", status = 429, retry_after = 1 },
        })
        local list = {}
        for i = 1, 30 do list[i] = status("F-" .. i, 1) end
        local results, summary = c:push_many(list, { max_in_flight = 4 })
        local by_code = {}
        for i = 1, 30 do
            local r = results[i]
            if errors.is_error(r) then
                by_code[r.kind .. "/" .. r.code] = (by_code[r.kind .. "/" .. r.code] or 0) + 1
                assert.equal(1, r.attempts)
            else
                assert.equal("F-" .. i, r.merchant_order_id)
            end
        end
        -- the 400 and the not-JSON answer are final; everything else recovered
        assert.same({ ["api/API_ERROR_9"] = 1, ["decode/BAD_JSON"] = 1 }, by_code)
        assert.equal(28, summary.sent)
        assert.equal(2, summary.failed)
        c:close()
    end)

    it("does not let one stalled response hold the others", function()
        local c = new_client { timeout = 5 }
        assert(c:push(status("WARM", 1)))
        emu:faults("status", { { kind = "delay", ms = 2500 } })
        local list = {}
        for i = 1, 60 do list[i] = status("S-" .. i, 1) end
        local started = monotonic()
        local finished_at = {}
        local results, summary = c:push_many(list, {
            max_in_flight = 4,
            on_result = function(i) finished_at[i] = monotonic() - started end,
        })
        assert.equal(60, summary.sent)
        local early = 0
        for i = 1, 60 do
            assert.is_false(errors.is_error(results[i]))
            if finished_at[i] < 2 then early = early + 1 end
        end
        assert.equal(59, early) -- all but the stalled one were done well before it
        c:close()
    end)

    it("honours the batch deadline (loose bounds)", function()
        local c = new_client { timeout = 5, retry = { base_delay = 0.05, max_delay = 0.05, max_attempts = 1000 } }
        assert(c:push(status("WARM", 1)))
        local faults = {}
        for i = 1, 2000 do faults[i] = { kind = "http", status = 503 } end
        emu:faults("status", faults)
        local list = {}
        for i = 1, 20 do list[i] = status("D-" .. i, 1) end
        local started = monotonic()
        local results, summary = c:push_many(list, { max_in_flight = 2, deadline = 1 })
        local elapsed = monotonic() - started
        assert.is_true(elapsed < 2.5, "took " .. elapsed)
        assert.is_true(elapsed > 0.5, "took " .. elapsed)
        assert.equal(20, summary.failed)
        for i = 1, 20 do
            local r = results[i]
            assert.is_true(errors.is_error(r))
            assert.equal("deadline", r.gave_up, tostring(r))
            assert.is_true(r.retryable)
        end
        c:close()
    end)

    it("renews a revoked token once for the whole batch", function()
        local c = new_client()
        assert(c:push(status("WARM", 1)))
        emu:revoke()
        local list = {}
        for i = 1, 30 do list[i] = status("R-" .. i, 1) end
        local results, summary = c:push_many(list, { max_in_flight = 8 })
        assert.equal(30, summary.sent, tostring(results[1]))
        assert.equal(2, emu:state().tokens_issued)
        c:close()
    end)

    it("fails every status with AUTH_FAILED after one refused token request", function()
        local c = new_client { client_secret = "wrong" }
        local list = {}
        for i = 1, 25 do list[i] = status("A-" .. i, 1) end
        local results, summary = c:push_many(list)
        assert.equal(25, summary.failed)
        for i = 1, 25 do
            assert.equal("auth", results[i].kind)
            assert.equal("AUTH_FAILED", results[i].code)
        end
        assert.equal(1, emu:state().requests.token)
        c:close()
    end)

    it("waits out a failing token endpoint once for the whole batch", function()
        local c = new_client()
        local faults = {}
        for i = 1, 3 do faults[i] = { kind = "http", status = 503 } end
        emu:faults("token", faults)
        local list = {}
        for i = 1, 30 do list[i] = status("T-" .. i, 1) end
        local results, summary = c:push_many(list, { max_in_flight = 8 })
        assert.equal(30, summary.sent, tostring(results[1]))
        assert.equal(0, summary.retried)
        assert.equal(4, emu:state().requests.token)
        assert.equal(1, emu:state().tokens_issued)
        c:close()
    end)

    it("fails every status when the token endpoint's retries run out", function()
        local c = new_client()
        local faults = {}
        for i = 1, 10 do faults[i] = { kind = "http", status = 503 } end
        emu:faults("token", faults)
        local list = {}
        for i = 1, 30 do list[i] = status("T-" .. i, 1) end
        local results, summary = c:push_many(list, { max_in_flight = 8 })
        assert.equal(30, summary.failed)
        for i = 1, 30 do
            assert.equal(503, results[i].http_status)
            assert.equal("attempts", results[i].gave_up)
        end
        assert.equal(4, emu:state().requests.token)
        assert.equal(0, emu:state().requests.status)
        c:close()
    end)

    it("reports progress, and keeps only true with keep_data = false", function()
        local c = new_client()
        local calls, last = 0, nil
        local list = {}
        for i = 1, 50 do list[i] = status("P-" .. (i % 7), i) end
        local results, summary = c:push_many(list, {
            keep_data = false,
            on_progress = function(p) calls = calls + 1; last = p end,
        })
        assert.equal(50, summary.sent)
        for i = 1, 50 do assert.is_true(results[i]) end
        assert.is_true(calls >= 2)
        assert.same({ total = 50, done = 50, sent = 50, failed = 0, retried = 0, in_flight = 0 }, last)
        c:close()
    end)

    -- Answers that look like success but are not, or are success in a form the
    -- quick path leaves to the decoder: with keep_data = false push_many must
    -- end each exactly as push does (push is the oracle, asked first).
    local success = '{"error_code":0,"status":"success","message":"Статус успешно обновлён","data":{"id":1}}'
    local ODD_ANSWERS = {
        { status = 200, body = success, expect = "ok" },
        { status = 201, body = success, expect = "ok" },
        { status = 200, body = " \r\n" .. success .. "\n", expect = "ok" },
        { status = 200, body = '{"error_code":0.0,"data":{"id":1}}', expect = "ok" },
        { status = 200, body = '{"error_code":-0}', expect = "ok" },
        { status = 200, body = '{"error_code":0,"data":' .. ("["):rep(100) .. ("]"):rep(100) .. "}", expect = "ok" },
        { status = 200, body = '{"error_code":0,"message":"\255\254"}', expect = "ok" },
        { status = 200, body = '{"error\\u005fcode":3,"error_code":0}', expect = "ok" },
        { status = 200, body = '{"error_code":5,"message":"nope"}', expect = "api/API_ERROR_5" },
        { status = 200, body = '{"error_code":0,"error_code":3}', expect = "api/API_ERROR_3" },
        { status = 200, body = '{"error_code":0,"error\\u005fcode":3}', expect = "api/API_ERROR_3" },
        { status = 200, body = '{"error_code":0}garbage', expect = "decode/BAD_JSON" },
        { status = 200, body = '{"error_code":0,"message":"\\ud800"}', expect = "decode/BAD_JSON" },
        { status = 200, body = success:sub(1, 40), expect = "decode/BAD_JSON" },
        { status = 200, body = "", expect = "decode/BAD_JSON" },
        { status = 200, body = "[]", expect = "decode/BAD_ENVELOPE" },
        { status = 200, body = '{"error_code":"0"}', expect = "decode/BAD_ENVELOPE" },
        { status = 200, body = '{"data":{"error_code":0}}', expect = "decode/BAD_ENVELOPE" },
        { status = 400, body = '{"error_code":0}', expect = "http/HTTP_400" },
        { status = 404, body = success, expect = "http/HTTP_404" },
        { status = 409, body = '{"error_code":12,"message":"late"}', expect = "api/API_ERROR_12" },
        -- cjson stops at a NUL byte: whatever push makes of it, push_many must agree
        { status = 200, body = '{"error_code":0}\0{"error_code":7}' },
    }

    local function outcome(r)
        if errors.is_error(r) then return r.kind .. "/" .. r.code end
        return "ok"
    end

    it("ends every odd answer as push does, with keep_data = false, whatever hooks are set", function()
        local hooked = 0
        local variants = {
            { name = "quick" },
            { name = "on_response", client = { on_response = function() hooked = hooked + 1 end } },
            { name = "on_result", opts = { on_result = function() hooked = hooked + 1 end } },
            { name = "keep_data", opts = { keep_data = true } },
        }
        local function faults()
            local list = {}
            for i, a in ipairs(ODD_ANSWERS) do list[i] = { kind = "not_json", status = a.status, body = a.body } end
            return list
        end
        local oracle = {}
        local c = new_client()
        assert(c:push(status("WARM", 1)))
        emu:faults("status", faults())
        for i, a in ipairs(ODD_ANSWERS) do
            local data, err = c:push(status("ODD-" .. i, 1))
            oracle[i] = outcome(data or err)
            if a.expect then assert.equal(a.expect, oracle[i], "push of answer " .. i) end
        end
        c:close()
        for _, v in ipairs(variants) do
            c = new_client(v.client)
            assert(c:push(status("WARM", 1)))
            emu:faults("status", faults())
            local opts = { keep_data = false, max_in_flight = 1 }
            for k, x in pairs(v.opts or {}) do opts[k] = x end
            -- one in flight: the answers are consumed in input order
            local list = {}
            for i = 1, #ODD_ANSWERS do list[i] = status("ODD-" .. v.name .. i, 1) end
            local results, summary = c:push_many(list, opts)
            for i = 1, #ODD_ANSWERS do
                assert.equal(oracle[i], outcome(results[i]), v.name .. ": answer " .. i .. " " .. ODD_ANSWERS[i].body)
                if oracle[i] == "ok" and not opts.keep_data then assert.is_true(results[i]) end
                if oracle[i] ~= "ok" then assert.equal(ODD_ANSWERS[i].status, results[i].http_status) end
            end
            assert.equal(0, summary.retried)
            c:close()
        end
        assert.is_true(hooked >= 2 * #ODD_ANSWERS)
    end)

    it("reads a success answer too large for the quick path in full, and goes on", function()
        local c = new_client()
        assert(c:push(status("WARM", 1)))
        -- oversize is a padded success envelope; 200 kB is under the client's limit
        emu:faults("status", { { kind = "oversize", bytes = 200000 }, { kind = "oversize", bytes = 2000000 } })
        local list = {}
        for i = 1, 12 do list[i] = status("BIG-" .. i, 1) end
        local results, summary = c:push_many(list, { keep_data = false, max_in_flight = 1 })
        assert.is_true(results[1])
        assert.equal("too_large", results[2].kind)
        for i = 3, 12 do assert.is_true(results[i], tostring(results[i])) end
        assert.equal(11, summary.sent)
        c:close()
    end)

    it("keeps its connections alive from one batch to the next, and close() releases them", function()
        local c = new_client()
        local function batch_of(prefix)
            local list = {}
            for i = 1, 32 do list[i] = status(prefix .. i, 1) end
            return list
        end
        local _, first = c:push_many(batch_of("K1-"), { max_in_flight = 4 })
        assert.equal(32, first.sent)
        local after_first = emu:state().connections
        local _, second = c:push_many(batch_of("K2-"), { max_in_flight = 4 })
        assert.equal(32, second.sent)
        assert.equal(after_first, emu:state().connections, "the second batch opened new connections")
        -- a batch started from a callback of another runs on a handle of its own
        local inner
        local _, outer = c:push_many(batch_of("K3-"), { max_in_flight = 4, on_result = function(i)
            if i == 1 then inner = select(2, c:push_many(batch_of("K4-"), { max_in_flight = 4 })) end
        end })
        assert.equal(32, outer.sent)
        assert.equal(32, inner.sent)
        -- another max_in_flight gets a new handle; close() ends the kept one
        local _, other = c:push_many(batch_of("K5-"), { max_in_flight = 2 })
        assert.equal(32, other.sent)
        local kept = c.multi
        c:close()
        assert.is_true(kept:is_closed())
        local _, err = c:push_many(batch_of("K6-"))
        assert.equal("CLOSED", err.code)
    end)

    it("checks its options and input", function()
        local c = new_client()
        local results, summary = c:push_many({})
        assert.same({}, results)
        assert.equal(0, summary.total)
        for _, bad in ipairs { { max_in_flight = 0 }, { max_in_flight = 2.5 }, { deadline = -1 },
                                { on_progress = 1 }, { keep_data = "no" }, { parallel = 3 } } do
            local r, err = c:push_many({ status("X", 1) }, bad)
            assert.is_nil(r)
            assert.equal("config", err.kind)
        end
        assert.has_error(function() c:push_many("x") end)
        c:close()
        local _, err = c:push_many({ status("X", 1) })
        assert.equal("CLOSED", err.code)
    end)
end)
