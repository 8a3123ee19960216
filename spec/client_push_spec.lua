-- client:push against the real emulator (nginx + the emulator's own checks):
-- success, the contract's example end to end, hooks, and keep-alive.

local ao = require "choco.active_order"
local clients = require "spec.support.clients"
local emulator = require "spec.support.emulator"

local STATUSES = { "created", "paid", "cooking", "delivering", "delivered", "cancelled" }
local SECRET = "push-spec-secret"

-- The contract's example request, as a Lua table.
local function example(order_id, external_status)
    local status = emulator.example()
    status.merchant_order_id = order_id or status.merchant_order_id
    status.external_status = external_status or status.external_status
    return status
end

describe("client:push", function()
    local emu

    emulator.use({ statuses = STATUSES, client_secret = SECRET }, function(started) emu = started end)

    local function new_client(extra)
        return clients.new(emu, { statuses = STATUSES }, extra)
    end

    it("sends a status and returns the gateway's data with meta", function()
        local c = new_client()
        local data, meta = c:push(example("ORDER-1"))
        assert.is_table(data, meta and "" or tostring(meta))
        assert.is_table(meta)
        assert.equal(1, meta.attempts)
        assert.equal(200, meta.http_status)
        assert.is_number(meta.duration)
        assert.is_true(meta.duration >= 0)
        assert.is_number(meta.time_total)
        c:close()
    end)

    it("delivers the contract's example exactly, field by field", function()
        local c = new_client()
        local sent = example()
        assert(c:push(sent))
        local order = emu:history("WEE-11122")
        assert.equal("WEE-11122", order.merchant_order_id)
        assert.equal(1, #order.history)
        assert.equal("created", order.last)
        local got = order.last_body
        assert.equal("WEE-11122", got.merchant_order_id)
        assert.equal(1234567, got.user_id)
        assert.equal("created", got.external_status)
        assert.equal(2, #got.deeplinks)
        for i = 1, 2 do
            assert.equal(sent.deeplinks[i].link, got.deeplinks[i].link)
            assert.equal(sent.deeplinks[i].type, got.deeplinks[i].type)
        end
        for k, v in pairs(sent.external_data) do
            assert.equal(v, got.external_data[k], k)
        end
        for k in pairs(got.external_data) do
            assert.is_not_nil(sent.external_data[k], "unexpected field " .. k)
        end
        assert.same(sent, got)
        c:close()
    end)

    it("records statuses of one order in the order they were pushed", function()
        local c = new_client()
        for _, s in ipairs { "created", "paid", "cooking", "delivering", "delivered" } do
            assert(c:push(example("ORDER-LIFE", s)))
        end
        local order = emu:history("ORDER-LIFE")
        assert.equal(5, #order.history)
        assert.equal("delivered", order.last)
        for i, s in ipairs { "created", "paid", "cooking", "delivering", "delivered" } do
            assert.equal(s, order.history[i].body.external_status)
        end
        c:close()
    end)

    it("fetches one token and reuses it", function()
        local c = new_client()
        for i = 1, 5 do assert(c:push(example("ORDER-T" .. i))) end
        local state = emu:state()
        assert.equal(1, state.tokens_issued)
        assert.equal(1, state.requests.token)
        assert.equal(5, state.requests.status)
        c:close()
    end)

    it("calls the hooks with method, path, status, duration and attempt", function()
        local seen = {}
        local c = new_client {
            on_request = function(info) seen[#seen + 1] = { "request", info } end,
            on_response = function(info) seen[#seen + 1] = { "response", info } end,
        }
        assert(c:push(example("ORDER-H")))
        assert.equal(4, #seen)
        assert.same({ "request", { method = "POST", path = "/auth/token", attempt = 1 } }, seen[1])
        assert.equal("response", seen[2][1])
        assert.equal("POST", seen[2][2].method)
        assert.equal(200, seen[2][2].status)
        assert.same({ "request", { method = "PUT", path = "/orders/v2/preorder/external/status", attempt = 1 } },
            seen[3])
        local put = seen[4][2]
        assert.equal("PUT", put.method)
        assert.equal("/orders/v2/preorder/external/status", put.path)
        assert.equal(200, put.status)
        assert.equal(1, put.attempt)
        assert.is_number(put.duration)
        c:close()
    end)

    it("survives a hook that raises", function()
        local c = new_client { on_request = function() error("logger down") end }
        assert(c:push(example("ORDER-HOOK")))
        c:close()
    end)

    it("reports a status the gateway does not know as an api error", function()
        -- a client without the list of registered statuses lets it through to the gateway
        local c = assert(ao.new { base_url = emu.url, client_id = "test-client", client_secret = SECRET })
        local data, err = c:push(example("ORDER-U", "teleported"))
        assert.is_nil(data)
        assert.equal("api", err.kind)
        assert.matches("^API_ERROR_%d+$", err.code)
        assert.is_number(err.error_code)
        assert.equal(422, err.http_status)
        assert.is_false(err.retryable)
        assert.equal(1, err.attempts)
        assert.is_string(err.gateway_message)
        assert.is_nil(emu:history("ORDER-U"))
        c:close()
    end)

    it("never sends a status outside the registered list", function()
        local c = new_client()
        local data, err = c:push(example("ORDER-V", "teleported"))
        assert.is_nil(data)
        assert.equal("validation", err.kind)
        assert.equal("external_status", err.problems[1].field)
        assert.equal("unregistered", err.problems[1].code)
        assert.equal(0, emu:state().requests.status)
        c:close()
    end)

    it("sends exactly the documented request line and headers", function()
        -- a one-shot HTTP server in a separate process records the raw request
        local lua = os.getenv("AO_LUA") or "lua5.4"
        local record, script = os.tmpname(), os.tmpname()
        local f = assert(io.open(script, "w"))
        f:write(([[
local socket = require "socket"
local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()
io.stdout:write(port, "\n"); io.stdout:flush()
server:settimeout(10)
local conn = assert(server:accept())
conn:settimeout(5)
local lines, length = {}, 0
while true do
    local line = assert(conn:receive("*l"))
    if line == "" then break end
    lines[#lines + 1] = line
    length = tonumber(line:match("^[Cc]ontent%%-[Ll]ength:%%s*(%%d+)")) or length
end
local body = length > 0 and assert(conn:receive(length)) or ""
local out = assert(io.open(%q, "w"))
out:write(table.concat(lines, "\n"), "\n\n", body)
out:close()
local answer = '{"error_code":0,"status":"success","message":"ok","data":{"id":7}}'
conn:send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " .. #answer .. "\r\n\r\n" .. answer)
conn:close()
]]):format(record))
        f:close()
        local server = assert(io.popen(lua .. " " .. script))
        local port = assert(tonumber(server:read("*l")))
        local c = assert(ao.new { base_url = "http://127.0.0.1:" .. port .. "/", token = "tok.en-1",
                                  statuses = STATUSES, user_agent = "shop-backend/2.1" })
        local sent = example("ORDER-RAW")
        local data = assert(c:push(sent))
        c:close()
        server:close()
        assert.equal(7, data.id)
        local raw = assert(io.open(record)):read("*a")
        os.remove(record)
        os.remove(script)
        local head, body = raw:match("^(.-)\n\n(.*)$")
        local lines = {}
        for line in head:gmatch("[^\n]+") do lines[#lines + 1] = line end
        assert.equal("PUT /orders/v2/preorder/external/status HTTP/1.1", lines[1])
        local headers = {}
        for i = 2, #lines do
            local name, value = lines[i]:match("^([^:]+):%s*(.-)\r?$")
            headers[name:lower()] = value
        end
        assert.equal("application/json", headers["content-type"])
        assert.equal("application/json", headers["accept"])
        assert.equal("Bearer tok.en-1", headers["authorization"])
        assert.equal("shop-backend/2.1", headers["user-agent"])
        assert.is_nil(headers["expect"])
        assert.same(sent, require("cjson").decode(body))
    end)

    it("keeps one connection for 1,000 pushes", function()
        local c = new_client()
        assert(c:push(example("ORDER-K0")))
        local before = emu:state().connections
        local opened = 0
        local status = example("ORDER-K")
        for i = 1, 1000 do
            status.merchant_order_id = "ORDER-K" .. (i % 10)
            local data, meta = c:push(status)
            assert(data, meta)
            opened = opened + (meta.new_connections or 0)
        end
        local after = emu:state().connections
        assert.equal(0, opened)
        -- the control API's own connection may be counted; the client opened none
        assert.is_true(after - before <= 1, "connections went from " .. before .. " to " .. after)
        c:close()
    end)
end)
