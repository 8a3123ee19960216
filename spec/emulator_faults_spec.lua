-- Scripted faults: each kind misbehaves as documented, queues are consumed in
-- order per endpoint, and a fault decides whether the request was processed.
-- Observed with a raw socket where the HTTP layer itself is broken.

local emulator = require "spec.support.emulator"
local cjson = require "cjson"
local socket = require "socket"

local PATH = "/orders/v2/preorder/external/status"

describe("gateway emulator faults", function()
    local emu, token, body

    emulator.use({}, function(started)
        emu = started
        body = cjson.encode(emulator.example())
    end)

    before_each(function() token = emu:token() end)

    -- One request on a fresh connection, read until the server closes it or the
    -- declared body has arrived. Returns { status, headers, body, closed_early, bytes }.
    local function raw_put(timeout)
        local c = socket.tcp()
        c:settimeout(timeout or 10)
        assert(c:connect("127.0.0.1", emu.port))
        assert(c:send(table.concat({
            "PUT " .. PATH .. " HTTP/1.1",
            "Host: 127.0.0.1",
            "Authorization: Bearer " .. token,
            "Content-Type: application/json",
            "Content-Length: " .. #body,
            "", "",
        }, "\r\n") .. body))
        local res = { headers = {} }
        local line, err = c:receive("*l")
        if not line then
            c:close()
            res.error = err
            return res
        end
        res.status = tonumber(line:match("^HTTP/1%.1 (%d+)"))
        while true do
            local h = c:receive("*l")
            if not h or h == "" then break end
            local k, v = h:match("^([^:]+):%s*(.*)$")
            res.headers[k:lower()] = v
        end
        local want = tonumber(res.headers["content-length"])
        local got, partial
        got, err, partial = c:receive(want)
        res.body = got or partial
        res.closed_early = got == nil
        res.read_error = err
        c:close()
        return res
    end

    local function put()
        return emu:put(body, "application/json", token)
    end

    it("answers queued http faults in order, with an envelope, then serves normally", function()
        emu:faults("status", {
            { kind = "http", status = 503 },
            { kind = "http", status = 500 },
            { kind = "http", status = 502 },
            { kind = "http", status = 504 },
        })
        for _, expected in ipairs { 503, 500, 502, 504 } do
            local status, text, headers = put()
            assert.are.equal(expected, status)
            assert.are.equal("application/json; charset=utf-8", headers["content-type"])
            local e = cjson.decode(text)
            assert.are_not.equal(0, e.error_code)
            assert.are.equal("error", e.status)
            assert.is_nil(headers["retry-after"])
        end
        assert.are.equal(200, (put()))
        local st = emu:state()
        assert.are.equal(1, st.accepted)
        assert.are.equal(4, st.faults_applied)
        assert.are.equal(0, st.faults_pending.status)
    end)

    it("sends Retry-After with 429 (1 by default, or as asked)", function()
        emu:faults("status", { { kind = "http", status = 429 }, { kind = "http", status = 429, retry_after = 7 },
            { kind = "http", status = 503, retry_after = 2 } })
        local status, _, headers = put()
        assert.are.equal(429, status)
        assert.are.equal("1", headers["retry-after"])
        status, _, headers = put()
        assert.are.equal(429, status)
        assert.are.equal("7", headers["retry-after"])
        status, _, headers = put()
        assert.are.equal(503, status)
        assert.are.equal("2", headers["retry-after"])
    end)

    it("answers a 401 fault like an expired token on the status endpoint", function()
        emu:faults("status", { { kind = "http", status = 401 } })
        local status, text, headers = put()
        assert.are.equal(401, status)
        assert.are.equal(5, cjson.decode(text).error_code)
        assert.is_truthy(headers["www-authenticate"]:find("Bearer", 1, true))
        assert.are.equal(200, (put()))
    end)

    it("applies token faults to /auth/token only", function()
        emu:faults("token", { { kind = "http", status = 401 }, { kind = "http", status = 502, error_code = 77,
            message = "upstream down" } })
        assert.are.equal(200, (put()))
        local status, text = emu:request("POST", "/auth/token",
            "client_id=test-client&client_secret=test-secret&grant_type=client_credentials",
            { ["content-type"] = "application/x-www-form-urlencoded" })
        assert.are.equal(401, status)
        assert.are.equal(4, cjson.decode(text).error_code)
        status, text = emu:request("POST", "/auth/token",
            "client_id=test-client&client_secret=test-secret&grant_type=client_credentials",
            { ["content-type"] = "application/x-www-form-urlencoded" })
        assert.are.equal(502, status)
        assert.are.same({ error_code = 77, status = "error", message = "upstream down", data = cjson.null },
            cjson.decode(text))
        assert.is_string(emu:token())
        assert.are.equal(2, emu:state().tokens_issued)   -- the before_each one and this one
    end)

    it("does not process a request its fault answers, unless the fault commits", function()
        emu:faults("status", { { kind = "http", status = 502 }, { kind = "http", status = 502, commit = true } })
        assert.are.equal(502, (put()))
        assert.is_nil(emu:history("WEE-11122"))
        assert.are.equal(502, (put()))
        local h = emu:history("WEE-11122")
        assert.are.equal(1, #h.history)
        assert.are.equal(1, emu:state().accepted)
    end)

    it("delays the answer, then answers normally", function()
        emu:faults("status", { { kind = "delay", ms = 400 } })
        local started = socket.gettime()
        local status = put()
        local elapsed = socket.gettime() - started
        assert.are.equal(200, status)
        assert.is_true(elapsed >= 0.35, "elapsed " .. elapsed)
        assert.are.equal(1, emu:state().accepted)
    end)

    it("closes the connection without answering", function()
        emu:faults("status", { { kind = "close" }, { kind = "close", commit = true } })
        local res = raw_put()
        assert.is_nil(res.status)
        assert.are.equal("closed", res.error)
        assert.are.equal(0, emu:state().accepted)
        res = raw_put()
        assert.are.equal("closed", res.error)
        assert.are.equal(1, emu:state().accepted)
    end)

    it("truncates the body: declares more than it sends, then closes", function()
        emu:faults("status", { { kind = "truncate" } })
        local res = raw_put()
        assert.are.equal(200, res.status)
        assert.is_true(res.closed_early)
        assert.are.equal("closed", res.read_error)
        local declared = tonumber(res.headers["content-length"])
        assert.is_true(#res.body > 0 and #res.body < declared, #res.body .. " of " .. declared)
        assert.is_nil(pcall(cjson.decode, res.body) and true or nil)
        assert.are.equal(0, emu:state().accepted)
    end)

    it("answers a body that is not JSON", function()
        emu:faults("status", { { kind = "not_json" }, { kind = "not_json", status = 503, body = "oops" } })
        local status, text, headers = put()
        assert.are.equal(200, status)
        assert.are.equal("application/json; charset=utf-8", headers["content-type"])
        assert.is_false((pcall(cjson.decode, text)))
        status, text = put()
        assert.are.equal(503, status)
        assert.are.equal("oops", text)
    end)

    it("answers an HTML error page", function()
        emu:faults("status", { { kind = "html" }, { kind = "html", status = 504 } })
        local status, text, headers = put()
        assert.are.equal(502, status)
        assert.are.equal("text/html", headers["content-type"])
        assert.is_truthy(text:find("<h1>502 Bad Gateway</h1>", 1, true))
        status, text = put()
        assert.are.equal(504, status)
        assert.is_truthy(text:find("504 Gateway Timeout", 1, true))
    end)

    it("answers an oversized body (5 MiB by default)", function()
        emu:faults("status", { { kind = "oversize" }, { kind = "oversize", bytes = 3 * 1048576 } })
        local res = raw_put()
        assert.are.equal(200, res.status)
        assert.are.equal(5242880, tonumber(res.headers["content-length"]))
        assert.are.equal(5242880, #res.body)
        local e = cjson.decode(res.body)
        assert.are.equal(0, e.error_code)
        res = raw_put()
        assert.are.equal(3 * 1048576, #res.body)
    end)

    it("trickles the normal answer out slowly", function()
        emu:faults("status", { { kind = "trickle", ms = 100, chunks = 5 } })
        local started = socket.gettime()
        local res = raw_put()
        local elapsed = socket.gettime() - started
        assert.are.equal(200, res.status)
        assert.is_false(res.closed_early)
        local e = cjson.decode(res.body)
        assert.are.equal("WEE-11122", e.data.merchant_order_id)
        assert.is_true(elapsed >= 0.35, "elapsed " .. elapsed)
        assert.are.equal(1, emu:state().accepted)
    end)

    it("a client that stops reading a trickle does not hurt the server", function()
        emu:faults("status", { { kind = "trickle", ms = 200, chunks = 10 } })
        local res = raw_put(0.3)
        assert.is_true(res.closed_early or res.body == nil or #res.body < 200)
        assert.are.equal(200, (put()))
    end)

    it("lists and resets pending faults", function()
        emu:faults("status", { { kind = "close" }, { kind = "delay", ms = 1 } })
        emu:faults("token", { { kind = "html" } })
        assert.are.same({ status = 2, token = 1 }, (emu:control("GET", "faults")))
        assert.are.same({ status = 2, token = 1 }, emu:state().faults_pending)
        emu:reset()
        assert.are.same({ status = 0, token = 0 }, (emu:control("GET", "faults")))
        token = emu:token()
        assert.are.equal(200, (put()))
    end)

    it("refuses malformed fault requests and queues nothing from them", function()
        local bad = {
            { endpoint = "orders", faults = { { kind = "close" } } },
            { endpoint = "status", faults = { { kind = "explode" } } },
            { endpoint = "status", faults = { { kind = "http" } } },
            { endpoint = "status", faults = { { kind = "http", status = 200 } } },
            { endpoint = "status", faults = { { kind = "delay" } } },
            { endpoint = "status", faults = { { kind = "close", ms = 3 } } },
            { endpoint = "status", faults = { { kind = "close" }, { kind = "oversize", bytes = -1 } } },
            { endpoint = "status", faults = "close" },
        }
        for _, req in ipairs(bad) do
            local value, status = emu:control("POST", "faults", req)
            assert.are.equal(400, status)
            assert.is_string(value.error)
        end
        assert.are.equal(0, emu:state().faults_pending.status)
    end)

    it("leaves no error in nginx's error log", function()
        assert.are.same({}, emu:lua_errors())
    end)
end)
