-- Every fault the emulator can inject, and what client:push must make of it:
-- recovered after retries, or the right error kind and code. Also retry
-- exhaustion, Retry-After, the overall deadline, and the form of every error.

local ao = require "choco.active_order"
local clients = require "spec.support.clients"
local emulator = require "spec.support.emulator"
local errors = require "choco.active_order.errors"

local STATUSES = { "created", "paid", "cooking", "delivering", "delivered", "cancelled" }
local SECRET = "faults-spec-secret"
local FAST = { base_delay = 0.01, max_delay = 0.05 }

-- The contract's example without its optional subtitle.
local function example(order_id)
    local status = emulator.example()
    status.merchant_order_id = order_id or status.merchant_order_id
    status.external_data.subtitle_active_order_card = nil
    return status
end

-- The form every error has, whatever its kind.
local function assert_error_form(err, kind, code)
    assert.is_true(errors.is_error(err), "not an error value: " .. tostring(err))
    assert.equal(kind, err.kind, tostring(err))
    if code then assert.equal(code, err.code, tostring(err)) end
    assert.is_true(errors.KINDS[err.kind])
    assert.is_string(err.code)
    assert.is_string(err.message)
    assert.is_boolean(err.retryable)
    assert.is_number(err.attempts)
    assert.is_true(err.attempts >= 1)
    local line = tostring(err)
    assert.is_nil(line:find("\n", 1, true))
    assert.equal(kind .. "/" .. err.code .. ": ", line:sub(1, #kind + #err.code + 3))
end

local monotonic = require("choco.active_order.core").monotonic

describe("client:push under faults", function()
    local emu

    emulator.use({ statuses = STATUSES, client_secret = SECRET }, function(started) emu = started end)

    local function new_client(extra)
        return clients.new(emu, { statuses = STATUSES, retry = FAST, timeout = 2 }, extra)
    end

    -- push once with a warm token, with `faults` queued on the status endpoint
    local function push_with(faults, extra, order_id)
        local c = new_client(extra)
        assert(c:push(example("WARMUP")))
        emu:faults("status", faults)
        local started = monotonic()
        local data, meta_or_err = c:push(example(order_id or "ORDER-F"))
        local elapsed = monotonic() - started
        c:close()
        return data, meta_or_err, elapsed
    end

    local function recovers(faults, attempts, extra)
        local data, meta = push_with(faults, extra)
        assert.is_table(data, tostring(meta))
        assert.equal(attempts, meta.attempts)
        return meta
    end

    local function fails(faults, kind, code, attempts, extra)
        local data, err, elapsed = push_with(faults, extra)
        assert.is_nil(data)
        assert_error_form(err, kind, code)
        if attempts then assert.equal(attempts, err.attempts, tostring(err)) end
        return err, elapsed
    end

    for _, status in ipairs { 429, 500, 502, 503, 504 } do
        it("retries HTTP " .. status .. " and recovers", function()
            recovers({ { kind = "http", status = status } }, 2)
        end)
    end

    it("gives up after max_attempts with the last error, marked retryable", function()
        local faults = {}
        for i = 1, 6 do faults[i] = { kind = "http", status = 503 } end
        local err = fails(faults, "api", nil, 4)
        assert.equal(503, err.http_status)
        assert.matches("^API_ERROR_", err.code)
        assert.is_true(err.retryable)
        assert.equal("attempts", err.gave_up)
        assert.is_number(err.error_code)
        assert.matches("after 4 attempts", tostring(err), 1, true)
        assert.matches("HTTP 503", tostring(err), 1, true)
    end)

    it("honours Retry-After in seconds", function()
        local meta = recovers({ { kind = "http", status = 503, retry_after = 1 } }, 2)
        assert.is_true(meta.duration >= 0.9, "waited only " .. meta.duration)
        assert.is_true(meta.duration < 5)
    end)

    it("stops when Retry-After is beyond the cap, and says how long", function()
        local err = fails({ { kind = "http", status = 429, retry_after = 120 } }, "api", nil, 1)
        assert.equal(429, err.http_status)
        assert.equal(120, err.retry_after)
        assert.equal("retry_after", err.gave_up)
    end)

    for _, status in ipairs { 400, 403, 404, 409, 422 } do
        it("never retries HTTP " .. status, function()
            local err = fails({ { kind = "http", status = status }, { kind = "http", status = 503 } }, "api", nil, 1)
            assert.equal(status, err.http_status)
            assert.is_false(err.retryable)
        end)
    end

    -- libcurl itself resends once, on a fresh connection, a request whose reused
    -- connection closed without a byte; the client's retries come on top of that
    it("recovers from dropped connections", function()
        local data, meta = push_with { { kind = "close" }, { kind = "close" }, { kind = "close" } }
        assert.is_table(data, tostring(meta))
        assert.is_true(meta.attempts >= 2, "attempts: " .. meta.attempts)
        assert.equal(0, emu:state().faults_pending.status)
    end)

    it("reports a dropped connection with libcurl's name once retries run out", function()
        local faults = {}
        for i = 1, 10 do faults[i] = { kind = "close" } end
        local err = fails(faults, "transport", nil, 4)
        assert.is_true(err.code == "GOT_NOTHING" or err.code == "RECV_ERROR", err.code)
        assert.is_true(err.retryable)
        assert.is_nil(err.http_status)
    end)

    it("recovers from a truncated answer (PARTIAL_FILE)", function()
        recovers({ { kind = "truncate" } }, 2)
        local faults = {}
        for i = 1, 4 do faults[i] = { kind = "truncate" } end
        fails(faults, "transport", "PARTIAL_FILE", 4)
    end)

    it("times out a slow answer and recovers on the next attempt", function()
        local meta = recovers({ { kind = "delay", ms = 1500 } }, 2, { timeout = 0.3 })
        assert.is_true(meta.duration < 1.4)
    end)

    it("reports OPERATION_TIMEDOUT when every attempt is slow", function()
        local faults = {}
        for i = 1, 2 do faults[i] = { kind = "delay", ms = 1000 } end
        local err = fails(faults, "transport", "OPERATION_TIMEDOUT", 2,
            { timeout = 0.2, retry = { max_attempts = 2, base_delay = 0.01, max_delay = 0.01 } })
        assert.is_true(err.retryable)
    end)

    it("reports a 200 that is not JSON as a decode error, without retrying", function()
        local err = fails({ { kind = "not_json" } }, "decode", "BAD_JSON", 1)
        assert.equal(200, err.http_status)
        assert.is_string(err.body_excerpt)
    end)

    -- Answers are read by the core's strict decoder, and what it refuses by
    -- lua-cjson: a success the gateway writes with a stray byte stays a success.
    it("reads a success answer with invalid UTF-8 as lua-cjson would, and integers as integers", function()
        local stray = '{"error_code":0,"status":"success","message":"ok","data":{"id":7,"name":"caf\233"}}'
        assert.is_nil(require("choco.active_order.core").json_decode(stray, nil))
        local data, meta = push_with { { kind = "not_json", status = 200, body = stray } }
        assert.is_table(data, tostring(meta))
        assert.equal("caf\233", data.name)
        assert.equal(7, data.id)

        data, meta = push_with { { kind = "not_json", status = 200,
            body = '{"error_code":0,"status":"success","message":"ok","data":{"id":8,"backlink":null}}' } }
        assert.is_table(data, tostring(meta))
        assert.equal(8, data.id)
        if math.type then assert.equal("integer", math.type(data.id)) end
        assert.equal(require("cjson").null, data.backlink)
    end)

    it("retries an HTML 502 from a proxy, and reports it as http once retries run out", function()
        recovers({ { kind = "html", status = 502 } }, 2)
        local faults = {}
        for i = 1, 4 do faults[i] = { kind = "html", status = 502 } end
        local err = fails(faults, "http", "HTTP_502", 4)
        assert.equal(502, err.http_status)
        assert.is_true(err.retryable)
        assert.is_nil(err.error_code)
        assert.is_string(err.body_excerpt)
        assert.is_true(#err.body_excerpt <= 203)
        assert.is_nil(err.body_excerpt:find("[\r\n]"))
    end)

    it("refuses an answer over the size cap without retrying", function()
        local err = fails({ { kind = "oversize", bytes = 5 * 1024 * 1024 } }, "too_large", "TOO_LARGE", 1)
        assert.is_false(err.retryable)
    end)

    it("honours max_response_bytes", function()
        fails({ { kind = "oversize", bytes = 64 * 1024 } }, "too_large", "TOO_LARGE", 1,
            { max_response_bytes = 16 * 1024 })
    end)

    it("takes a trickling answer within the timeout, and times it out beyond", function()
        recovers({ { kind = "trickle", ms = 20 } }, 1)
        local faults = {}
        for i = 1, 4 do faults[i] = { kind = "trickle", ms = 400 } end
        fails(faults, "transport", "OPERATION_TIMEDOUT", 1,
            { timeout = 0.3, retry = { max_attempts = 1 } })
    end)

    it("respects the overall deadline (loose bounds)", function()
        local faults = {}
        for i = 1, 100 do faults[i] = { kind = "http", status = 503 } end
        local err, elapsed = fails(faults, "api", nil, nil,
            { retry = { max_attempts = 100, base_delay = 0.1, max_delay = 0.1, deadline = 1 } })
        assert.equal("deadline", err.gave_up)
        assert.is_true(err.attempts > 2 and err.attempts < 100, "attempts: " .. err.attempts)
        assert.is_true(elapsed < 2.5, "took " .. elapsed)
        assert.is_true(elapsed > 0.5, "took " .. elapsed)
    end)

    it("cuts the last attempt short at the deadline", function()
        local err, elapsed = fails({ { kind = "delay", ms = 3000 } }, "transport", "OPERATION_TIMEDOUT", 1,
            { timeout = 10, retry = { deadline = 0.5 } })
        assert.is_true(elapsed < 2, "took " .. elapsed)
        assert.is_true(err.retryable)
    end)

    it("retries a refused connection, then reports COULDNT_CONNECT", function()
        local socket = require "socket"
        local server = assert(socket.bind("127.0.0.1", 0))
        local _, port = server:getsockname()
        server:close()
        local seen = {}
        local c = assert(ao.new { base_url = "http://127.0.0.1:" .. port, client_id = "x", client_secret = "y",
                                  retry = FAST, on_response = function(info) seen[#seen + 1] = info end })
        local data, err = c:push(example())
        assert.is_nil(data)
        assert_error_form(err, "transport", "COULDNT_CONNECT")
        assert.equal(4, err.attempts)
        assert.is_true(err.retryable)
        assert.equal("attempts", err.gave_up)
        assert.is_number(err.curl_code)
        -- every attempt failed at the token request; the hook saw each with libcurl's code
        assert.equal(4, #seen)
        for i, info in ipairs(seen) do
            assert.equal("/auth/token", info.path)
            assert.equal(i, info.attempt)
            assert.equal("COULDNT_CONNECT", info.error)
            assert.is_nil(info.status)
        end
        c:close()
    end)

    it("gives every kind of error the same form", function()
        local c = new_client()
        local _, verr = c:push { merchant_order_id = "X" }
        assert.equal("validation/INVALID_STATUS", tostring(verr):match("^[^:]+"))
        assert.is_table(verr.problems)
        for _, p in ipairs(verr.problems) do
            assert.is_string(p.field)
            assert.is_string(p.code)
            assert.is_string(p.message)
        end
        local _, cerr = ao.new { base_url = "ftp://x" }
        assert.equal("config/BAD_OPTION", tostring(cerr):match("^[^:]+"))
        assert.is_false(cerr.retryable)
        local bad = new_client { client_secret = "nope" }
        local _, aerr = bad:push(example())
        assert_error_form(aerr, "auth", "AUTH_FAILED")
        assert.equal(401, aerr.http_status)
        assert.is_string(aerr.gateway_message)
        assert.matches("^auth/AUTH_FAILED: .+ %(HTTP 401%)$", tostring(aerr))
        bad:close()
        c:close()
    end)

    describe("on the token endpoint", function()
        local function push_fresh(faults, extra)
            local c = new_client(extra)
            emu:faults("token", faults)
            local data, meta = c:push(example("ORDER-TF"))
            c:close()
            return data, meta
        end

        it("retries a 503 and a dropped connection", function()
            local data, meta = push_fresh { { kind = "http", status = 503 }, { kind = "close" }, { kind = "close" } }
            assert.is_table(data, tostring(meta))
            assert.is_true(meta.attempts >= 3, "attempts: " .. meta.attempts)
            assert.equal(0, emu:state().faults_pending.token)
        end)

        it("reports wrong credentials as auth AUTH_FAILED, not retried", function()
            local c = new_client { client_secret = "wrong-secret" }
            local data, err = c:push(example())
            assert.is_nil(data)
            assert_error_form(err, "auth", "AUTH_FAILED")
            assert.equal(1, err.attempts)
            assert.equal(4, err.error_code)
            assert.is_false(err.retryable)
            assert.equal(0, emu:state().requests.status)
            c:close()
        end)

        it("reports a token answer that is not JSON as a decode error", function()
            local data, err = push_fresh { { kind = "not_json" } }
            assert.is_nil(data)
            assert_error_form(err, "decode", "BAD_JSON")
        end)
    end)
end)
