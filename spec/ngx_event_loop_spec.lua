-- choco.active_order.ngx in real nginx: a push waiting on a slow gateway holds
-- a worker thread, never the event loop; errors cross the thread boundary as
-- the library's error values.

local emulator = require "spec.support.emulator"
local nginx_app = require "spec.support.nginx_app"
local socket = require "socket"
local cjson = require "cjson"

local STATUSES = { "created", "cooking", "on_the_way", "delivered", "cancelled" }

describe("choco.active_order.ngx in nginx (one worker process)", function()
    local emu, app

    setup(function()
        emu = emulator.start { statuses = STATUSES }
        app = nginx_app.start { emulator = emu, statuses = STATUSES, workers = 1, threads = 4 }
    end)

    teardown(function()
        if app then app:stop() end
        if emu then emu:stop() end
    end)

    local function event(state)
        return cjson.encode { state = state, user_id = 77 }
    end

    it("serves 50 other requests in under 100 ms each while a push waits 2 s for the gateway", function()
        -- a warm-up push: the token is fetched and a thread VM made beforehand
        assert.are.equal(200, (app:request("POST", "/orders/warm/state?wait=1", event("new"))))
        emu:faults("status", { { kind = "delay", ms = 2000 } })

        local slow = socket.tcp()
        slow:settimeout(5)
        assert(slow:connect("127.0.0.1", app.port))
        local started = socket.gettime()
        assert(slow:send(nginx_app.request_text("POST", "/orders/slow-1/state?wait=1", event("new"))))
        socket.sleep(0.2) -- the push is now in a worker thread, the gateway sitting on it

        local worst = 0
        for i = 1, 50 do
            local status, body, seconds = app:request("GET", "/health")
            assert.are.equal(200, status, "request " .. i)
            assert.are.equal("ok\n", body)
            if seconds > worst then worst = seconds end
            assert.is_true(seconds < 0.1, "request " .. i .. " took " .. seconds .. " s")
        end

        -- the push was still in flight all along
        slow:settimeout(0)
        local early = slow:receive(1)
        assert.is_nil(early, "the slow push answered before the 50 requests were done")
        assert.is_true(socket.gettime() - started < 2, "the 50 requests were not made while the push waited")

        slow:settimeout(10)
        local response = {}
        while true do
            local chunk, err, partial = slow:receive(8192)
            response[#response + 1] = chunk or partial
            if not chunk then
                assert.are.equal("closed", err)
                break
            end
        end
        slow:close()
        local status, body = nginx_app.parse_response(table.concat(response))
        local waited = socket.gettime() - started
        assert.are.equal(200, status, body)
        assert.is_true(waited >= 2, "the push came back after " .. waited .. " s, before the gateway's delay")
        assert.are.equal("slow-1", cjson.decode(body).data.merchant_order_id)
    end)

    it("returns the library's error values across the thread boundary", function()
        emu:faults("status", { { kind = "not_json" } })
        local status, body = app:request("POST", "/orders/bad-1/state?wait=1", event("accepted"))
        assert.are.equal(502, status, body)
        local answer = cjson.decode(body)
        assert.are.equal("decode", answer.kind)
        assert.are.equal("BAD_JSON", answer.code)
        assert.matches("^decode/BAD_JSON: ", answer.error)
    end)

    it("logs no Lua error, alert or secret", function()
        assert.are.same({}, app:problems())
        assert.are.same({}, emu:lua_errors())
        local log = app:log()
        assert.is_nil(log:find(emu.client_secret, 1, true))
        assert.is_nil(log:find("Bearer", 1, true))
    end)
end)
