-- What the emulator remembers and tells through /_emulator/: history per order,
-- counters (requests, connections, tokens), reset, configuration; shared by
-- every nginx worker.

local emulator = require "spec.support.emulator"
local cjson = require "cjson"
local socket = require "socket"

local PATH = "/orders/v2/preorder/external/status"

local function status_for(order_id, external_status)
    local s = emulator.example()
    s.merchant_order_id = order_id
    s.external_status = external_status
    return cjson.encode(s)
end

-- several requests on one kept-alive connection; returns the status codes
local function keep_alive_puts(port, token, bodies)
    local c = socket.tcp()
    c:settimeout(10)
    assert(c:connect("127.0.0.1", port))
    local codes = {}
    for _, body in ipairs(bodies) do
        assert(c:send(table.concat({
            "PUT " .. PATH .. " HTTP/1.1", "Host: 127.0.0.1", "Authorization: Bearer " .. token,
            "Content-Type: application/json", "Content-Length: " .. #body, "", "",
        }, "\r\n") .. body))
        local line = assert(c:receive("*l"))
        local length
        while true do
            local h = assert(c:receive("*l"))
            if h == "" then break end
            length = tonumber(h:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)")) or length
        end
        assert(c:receive(length))
        codes[#codes + 1] = tonumber(line:match("^HTTP/1%.1 (%d+)"))
    end
    c:close()
    return codes
end

describe("gateway emulator state", function()
    local emu, token

    emulator.use({ client_secret = "state-secret" }, function(started) emu = started end)

    before_each(function() token = emu:token() end)

    it("keeps every accepted status of an order in arrival order, with its time", function()
        local before = os.time()
        for _, s in ipairs { "created", "paid", "cooking", "paid" } do
            assert.are.equal(200, (emu:put(status_for("ord-1", s), "application/json", token)))
        end
        assert.are.equal(200, (emu:put(status_for("ord-2", "created"), "application/json", token)))
        local h = emu:history("ord-1")
        assert.are.equal("ord-1", h.merchant_order_id)
        assert.are.equal("paid", h.last)
        assert.are.equal("paid", h.last_body.external_status)
        assert.are.equal(4, h.count)
        assert.are.equal(0, h.dropped)
        local names = {}
        for i, entry in ipairs(h.history) do
            names[i] = entry.status
            assert.is_true(entry.at >= before - 1 and entry.at <= os.time() + 1)
            if i > 1 then
                assert.is_true(entry.seq > h.history[i - 1].seq)
                assert.is_true(entry.at >= h.history[i - 1].at)
            end
            assert.are.equal("json", entry.encoding)
            assert.are.equal("ord-1", entry.body.merchant_order_id)
            assert.are.same(cjson.decode(entry.raw), entry.body)
        end
        assert.are.same({ "created", "paid", "cooking", "paid" }, names)
        assert.are.equal("created", emu:history("ord-2").last)
        assert.is_nil(emu:history("ord-3"))
    end)

    it("finds orders whose ids need escaping in a URL", function()
        local id = "A/B 1?x=%2F&ж"
        assert.are.equal(200, (emu:put(status_for(id, "created"), "application/json", token)))
        assert.are.equal(id, emu:history(id).merchant_order_id)
        local list = emu:control("GET", "orders")
        assert.are.same({ id }, list.orders)
    end)

    it("counts requests per endpoint, tokens, orders and accepted statuses", function()
        emu:put(status_for("c-1", "created"), "application/json", token)
        emu:put(status_for("c-1", "paid"), "application/json", token)
        emu:put(status_for("c-2", "created"), "application/json", token)
        emu:put(status_for("c-2", "lost"), "application/json", token)
        emu:put(status_for("c-2", "paid"), "application/json", "wrong")
        emu:request("GET", "/nowhere")
        local st = emu:state()
        assert.are.equal(1, st.requests.token)
        assert.are.equal(5, st.requests.status)
        assert.are.equal(1, st.requests.other)
        assert.is_true(st.requests.control >= 1)
        assert.are.equal(1, st.tokens_issued)
        assert.are.equal(2, st.orders)
        assert.are.equal(3, st.accepted)
        assert.are.equal(1, st.rejected.validation)
        assert.are.equal(1, st.rejected.auth)
    end)

    it("counts TCP connections, not requests, and not the control API's", function()
        local before = emu:state().connections
        assert.are.same({ 200, 200, 200 }, keep_alive_puts(emu.port, token, {
            status_for("k-1", "created"), status_for("k-1", "paid"), status_for("k-1", "cooking"),
        }))
        assert.are.same({ 200 }, keep_alive_puts(emu.port, token, { status_for("k-1", "delivered") }))
        local st = emu:state()
        assert.are.equal(before + 2, st.connections)
        assert.are.equal(4, st.accepted)
    end)

    it("resets history, counters, tokens and faults", function()
        emu:put(status_for("r-1", "created"), "application/json", token)
        emu:faults("status", { { kind = "close" } })
        assert.are.same({ reset = true }, emu:reset())
        local st = emu:state()
        assert.are.equal(0, st.accepted)
        assert.are.equal(0, st.orders)
        assert.are.equal(0, st.tokens_issued)
        assert.are.equal(0, st.connections)
        assert.are.equal(0, st.requests.status)
        assert.are.equal(0, st.faults_pending.status)
        assert.is_nil(emu:history("r-1"))
        assert.are.equal(401, (emu:put(status_for("r-1", "created"), "application/json", token)))
        local fresh = emu:token()
        local status, body = emu:put(status_for("r-1", "created"), "application/json", fresh)
        assert.are.equal(200, status)
        assert.are.equal(1, cjson.decode(body).data.id)
    end)

    it("tells its configuration, without the secret", function()
        local c, status = emu:control("GET", "config")
        assert.are.equal(200, status)
        assert.are.equal("test-client", c.client_id)
        assert.are.equal(10800, c.token_ttl)
        assert.are.equal("+05:00", c.utc_offset)
        assert.are.same({ "created", "paid", "cooking", "delivering", "delivered", "cancelled" }, c.statuses)
        assert.are.equal(30, c.limits.title)
        assert.are.equal(60, c.limits.subtitle)
        assert.is_nil(c.client_secret)
        local _, raw = emu:request("GET", "/_emulator/config")
        assert.is_nil(raw:find("state-secret", 1, true))
    end)

    it("answers 404 to an unknown control endpoint and 400 to a body that is not JSON", function()
        local value, status = emu:control("GET", "nothing")
        assert.are.equal(404, status)
        assert.is_string(value.error)
        local code, text = emu:request("POST", "/_emulator/faults", "{not json",
            { ["content-type"] = "application/json" })
        assert.are.equal(400, code)
        assert.is_string(cjson.decode(text).error)
    end)

    it("keeps at most the configured number of statuses per order, dropping the oldest", function()
        local small = emulator.start { limits = { history_per_order = 3, subtitle = 10 } }
        local ok, err = pcall(function()
            local t = small:token()
            for _, s in ipairs { "created", "paid", "cooking", "delivering", "delivered" } do
                local body = status_for("cap-1", s):gsub("Заказ отменен: товара нет в наличии", "коротко")
                local status, text = small:put(body, "application/json", t)
                assert.are.equal(200, status, text)
            end
            local h = small:history("cap-1")
            assert.are.equal(5, h.count)
            assert.are.equal(2, h.dropped)
            assert.are.equal(3, #h.history)
            assert.are.equal("cooking", h.history[1].status)
            assert.are.equal("delivered", h.last)
            -- the configured subtitle limit applies too
            local status, text = small:put(status_for("cap-2", "created"), "application/json", t)
            assert.are.equal(422, status)
            assert.are.equal("external_data.subtitle_active_order_card", cjson.decode(text).data.errors[1].field)
            assert.are.same({}, small:lua_errors())
        end)
        small:stop()
        assert(ok, err)
    end)

    it("shares state between several nginx workers", function()
        local multi = emulator.start { workers = 2 }
        local ok, err = pcall(function()
            local t = multi:token()
            local total = 0
            for c = 1, 8 do
                local bodies = {}
                for i = 1, 5 do bodies[i] = status_for("w-" .. c, i % 2 == 0 and "paid" or "created") end
                local codes = keep_alive_puts(multi.port, t, bodies)
                for _, code in ipairs(codes) do
                    assert.are.equal(200, code)
                    total = total + 1
                end
            end
            local st = multi:state()
            assert.are.equal(total, st.accepted)
            assert.are.equal(8, st.orders)
            assert.are.equal(9, st.connections)   -- 8 for the statuses, 1 for the token
            assert.are.equal(5, multi:history("w-3").count)
            assert.are.same({}, multi:lua_errors())
        end)
        multi:stop()
        assert(ok, err)
    end)

    it("leaves no error in nginx's error log", function()
        assert.are.same({}, emu:lua_errors())
    end)
end)
