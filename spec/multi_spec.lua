-- The C multi (core.multi): many transfers in flight over one libcurl multi
-- handle with pooled easy handles, against the gateway emulator (a real nginx on
-- 127.0.0.1) and its fault injection.

local core = require "choco.active_order.core"
local emulator = require "spec.support.emulator"
local socket = require "socket"
local process = require "spec.support.process"
local free_port, read_file = process.free_port, process.read

local STATUSES = { "created", "paid", "cooking", "delivering", "delivered", "cancelled" }

local function status_of(id)
    return STATUSES[id % #STATUSES + 1]
end

-- A valid status for order MULTI-<id>; its external_status depends on the id, so
-- the emulator's history shows which body reached it.
local function body(id)
    return '{"merchant_order_id":"MULTI-' .. id .. '","user_id":1234567,"external_status":"' .. status_of(id) .. '",'
        .. '"deeplinks":[{"link":"https://rahmetapp.kz/100/orders?tab=5","type":"active_order_card"}],'
        .. '"external_data":{"expired_at":"2030-10-20 16:49:36","title_active_order_card":"Ожидает оплаты",'
        .. '"title_call_to_action":"К заказу","need_timer":false,"countdown_timer":false}}'
end



local function rss_kb()
    return tonumber(read_file("/proc/self/status"):match("VmRSS:%s*(%d+)"))
end

-- Drives m until nothing is in flight; returns the items by id and their count.
local function drain(m, limit_seconds)
    local by_id, count = {}, 0
    local deadline = socket.gettime() + (limit_seconds or 20)
    while m:in_flight() > 0 do
        assert(socket.gettime() < deadline, "transfers did not finish")
        for _, item in ipairs(m:perform(200)) do
            assert.is_nil(by_id[item.id], "id reported twice")
            by_id[item.id] = item
            count = count + 1
        end
    end
    return by_id, count
end

describe("core.multi", function()
    local emu, url, headers

    setup(function()
        emu = emulator.start { statuses = STATUSES }
        url = emu.url .. "/orders/v2/preorder/external/status"
        headers = { "Content-Type: application/json", "Accept: application/json",
                    "Authorization: Bearer " .. emu:token() }
    end)

    teardown(function()
        if emu then emu:stop() end
    end)

    it("completes 100 transfers with 16 in flight, each body to its order, over at most 16 connections", function()
        local m = core.multi { max_in_flight = 16 }
        local before = emu:state().connections
        for id = 1, 100 do m:add(id, "PUT", url, headers, body(id), 5000, 1000) end
        assert.equal(100, m:in_flight())
        collectgarbage() -- the bodies were copied: Lua may collect its strings
        local by_id, count = drain(m)
        assert.equal(100, count)
        local opened = 0
        for id = 1, 100 do
            local item = by_id[id]
            assert.is_nil(item.err)
            assert.equal(200, item.res.status, item.res.body)
            assert.matches('"status":"success"', item.res.body)
            assert.matches("^application/json", item.res.content_type)
            opened = opened + item.res.new_connections
        end
        assert.is_true(opened >= 1 and opened <= 16, "opened " .. opened)
        -- the control request that reads the state opens one more
        assert.is_true(emu:state().connections - before <= 17)
        for id = 1, 100 do assert.equal(status_of(id), emu:history("MULTI-" .. id).last) end
        assert.equal(0, m:in_flight())
        m:close()
    end)

    it("keeps connections alive across a batch refilled as transfers finish", function()
        local m = core.multi { max_in_flight = 4 }
        local next_id, done, opened = 1, 0, 0
        while done < 200 do
            while next_id <= 200 and m:in_flight() < 4 do
                m:add(next_id, "PUT", url, headers, body(next_id), 5000, 1000)
                next_id = next_id + 1
            end
            for _, item in ipairs(m:perform(1000)) do
                assert.equal(200, item.res.status)
                opened = opened + item.res.new_connections
                done = done + 1
            end
        end
        assert.is_true(opened <= 4, "opened " .. opened)
        m:close()
    end)

    it("keeps every slot's connection alive between batches that drain completely", function()
        local m = core.multi { max_in_flight = 16 }
        local opened, next_id = 0, 1000
        for round = 1, 6 do
            -- a full batch, then a lone transfer: the cache must not shrink to fit the lone one
            for _, size in ipairs { 16, 1 } do
                for _ = 1, size do
                    next_id = next_id + 1
                    m:add(next_id, "PUT", url, headers, body(next_id), 5000, 1000)
                end
                for _, item in pairs(drain(m)) do
                    assert.equal(200, item.res.status, "round " .. round)
                    opened = opened + item.res.new_connections
                end
            end
        end
        assert.is_true(opened <= 16, "opened " .. opened .. " connections for 6 rounds over 16 slots")
        m:close()
    end)

    it("does not let a stalled transfer hold the others", function()
        local m = core.multi { max_in_flight = 4 }
        emu:faults("status", { { kind = "delay", ms = 4000 } })
        for id = 1, 30 do m:add(id, "PUT", url, headers, body(id), 10000, 1000) end
        local started = socket.gettime()
        local done = 0
        while done < 29 do
            for _, item in ipairs(m:perform(200)) do
                assert.equal(200, item.res.status)
                done = done + 1
            end
            assert.is_true(socket.gettime() - started < 3.5, "fast transfers waited for the slow one")
        end
        assert.equal(1, m:in_flight())
        -- closing with a transfer still running aborts and frees it
        m:close()
    end)

    it("ends every transfer with a success or its own error when faults hit the middle of a batch", function()
        local m = core.multi { max_in_flight = 16 }
        for id = 1, 20 do m:add(id, "PUT", url, headers, body(id), 5000, 1000) end
        drain(m)
        emu:faults("status", { { kind = "http", status = 503, retry_after = 2 }, { kind = "close" },
                               { kind = "delay", ms = 3000 }, { kind = "truncate" },
                               { kind = "oversize", bytes = 2 * 1048576 } })
        for id = 21, 100 do m:add(id, "PUT", url, headers, body(id), 1500, 1000) end
        m:add(101, "PUT", "http://127.0.0.1:" .. free_port() .. "/", headers, body(101), 5000, 1000)
        m:add(102, "PUT", "file:///etc/hostname", headers, body(102), 5000, 1000)
        local by_id, count = drain(m)
        assert.equal(82, count)
        local outcomes = {}
        for id = 21, 100 do
            local item = by_id[id]
            local outcome = item.err and item.err.code or tostring(item.res.status)
            outcomes[outcome] = (outcomes[outcome] or 0) + 1
            if item.err then
                assert.is_nil(item.res)
                assert.is_string(item.err.message)
                assert.is_number(item.err.curl_code)
            elseif item.res.status == 503 then
                assert.equal("2", item.res.retry_after)
            end
        end
        -- libcurl resends a request once by itself when a reused connection closes before any byte of
        -- the answer arrived, so the dropped connection may end as a success instead of GOT_NOTHING
        assert.equal(76, (outcomes["200"] or 0) + (outcomes.GOT_NOTHING or 0))
        outcomes["200"], outcomes.GOT_NOTHING = nil, nil
        assert.same({ ["503"] = 1, OPERATION_TIMEDOUT = 1, PARTIAL_FILE = 1, TOO_LARGE = 1 }, outcomes)
        assert.equal("COULDNT_CONNECT", by_id[101].err.code)
        assert.equal("UNSUPPORTED_PROTOCOL", by_id[102].err.code)
        m:close()
    end)

    it("returns an empty list when nothing finished within wait_ms", function()
        local m = core.multi()
        assert.same({}, m:perform(0))
        emu:faults("status", { { kind = "delay", ms = 1500 } })
        m:add(1, "PUT", url, headers, body(1), 5000, 1000)
        local started = socket.gettime()
        assert.same({}, m:perform(100))
        assert.is_true(socket.gettime() - started < 1.4)
        assert.equal(1, m:in_flight())
        local by_id = drain(m)
        assert.equal(200, by_id[1].res.status)
        m:close()
    end)

    it("stays flat in memory over a long batch", function()
        local m = core.multi { max_in_flight = 16 }
        local payload = body(7)
        local function run(n)
            local next_id, done = 1, 0
            while done < n do
                while next_id <= n and m:in_flight() < 32 do
                    m:add(next_id, "PUT", url, headers, payload, 5000, 1000)
                    next_id = next_id + 1
                end
                for _, item in ipairs(m:perform(1000)) do
                    assert.equal(200, item.res.status)
                    done = done + 1
                end
            end
        end
        run(500)
        collectgarbage()
        local before = rss_kb()
        run(5000)
        collectgarbage()
        local grown = rss_kb() - before
        -- AddressSanitizer's quarantine and valgrind hold freed memory on purpose.
        if not os.getenv("AO_SANITIZED") then
            assert.is_true(grown < 2048, "resident memory grew by " .. grown .. " KiB")
        end
        m:close()
    end)

    describe("over TLS", function()
        local tls_emu, tls_url

        setup(function()
            tls_emu = emulator.start { statuses = STATUSES, tls = true }
            tls_url = tls_emu.url .. "/orders/v2/preorder/external/status"
        end)

        teardown(function()
            if tls_emu then tls_emu:stop() end
        end)

        -- a TLS handshake (the system CA bundle read and parsed included) counts
        -- as connecting, and takes seconds under valgrind
        local sanitized = os.getenv("AO_SANITIZED")
        local timeout_ms, connect_ms = sanitized and 60000 or 5000, sanitized and 30000 or 1000

        it("refuses the emulator's certificate by default and accepts it with its CA", function()
            local strict = core.multi()
            strict:add(1, "PUT", tls_url, headers, body(1), timeout_ms, connect_ms)
            local by_id = drain(strict, 90)
            assert.equal("PEER_FAILED_VERIFICATION", by_id[1].err.code)
            strict:close()

            local trusting = core.multi { ca_file = tls_emu.ca_file, max_in_flight = 4 }
            for id = 1, 12 do trusting:add(id, "PUT", tls_url, headers, body(id), timeout_ms, connect_ms) end
            local count, opened
            by_id, count = drain(trusting, 120)
            assert.equal(12, count)
            opened = 0
            for id = 1, 12 do
                -- the token belongs to the other emulator: the TLS handshake is what this checks
                assert.equal(401, by_id[id].res.status)
                opened = opened + by_id[id].res.new_connections
            end
            assert.is_true(opened <= 4, "opened " .. opened)
            trusting:close()
        end)
    end)

    describe("lifetime", function()
        it("closes idempotently, with transfers queued and running, and refuses use after close", function()
            local m = core.multi { max_in_flight = 2 }
            emu:faults("status", { { kind = "delay", ms = 1000 }, { kind = "delay", ms = 1000 } })
            for id = 1, 10 do m:add(id, "PUT", url, headers, body(id), 5000, 1000) end
            m:perform(10)
            assert.is_true(m:in_flight() > 2)
            m:close()
            m:close()
            assert.is_true(m:is_closed())
            assert.matches("closed", tostring(m))
            assert.has_error(function() m:add(1, "GET", url, nil, nil, 1000, 1000) end, "multi is closed")
            assert.has_error(function() m:perform(0) end, "multi is closed")
            assert.has_error(function() m:in_flight() end, "multi is closed")
        end)

        it("is freed by the garbage collector with transfers in flight", function()
            for i = 1, 20 do
                local m = core.multi { max_in_flight = 2, ca_file = "/nonexistent.pem", user_agent = "gc", proxy = "" }
                for id = 1, 5 do m:add(id, "PUT", url, headers, body(id), 5000, 1000) end
                if i % 2 == 0 then m:perform(50) end
            end
            collectgarbage()
            collectgarbage()
        end)

        if _VERSION == "Lua 5.4" then
            it("is closed by a to-be-closed variable", function()
                local escaped
                local use = assert(load([[
                    local core, escape = ...
                    local m <close> = core.multi()
                    escape(m)
                ]]))
                use(core, function(m) escaped = m end)
                assert.is_true(escaped:is_closed())
            end)
        end
    end)

    describe("programmer errors raise", function()
        it("bad options", function()
            assert.has_error(function() core.multi { max_in_flight = 0 } end)
            assert.has_error(function() core.multi { max_in_flight = 1.5 } end)
            assert.has_error(function() core.multi { max_in_flight = 5000 } end)
            assert.has_error(function() core.multi { max_in_flight = "16" } end)
            assert.has_error(function() core.multi { max_response_bytes = -1 } end)
            assert.has_error(function() core.multi { unknown = true } end, "options: unknown option 'unknown'")
        end)

        it("bad arguments to add and perform", function()
            local m = core.multi()
            assert.has_error(function() m:add("x", "GET", url, nil, nil, 1000, 1000) end)
            assert.has_error(function() m:add(1, "GET", url, { "X: a\nb" }, nil, 1000, 1000) end)
            assert.has_error(function() m:add(1, "GET", url, nil, nil, 0, 1000) end)
            assert.has_error(function() m:add(1, "GET", url, nil, 5, 1000, 1000) end)
            assert.has_error(function() m:add(1, "G T", url, nil, nil, 1000, 1000) end)
            assert.has_error(function() m:perform(-1) end)
            assert.equal(0, m:in_flight())
            m:close()
        end)
    end)
end)
