-- choco.active_order.ngx in real nginx: a push waiting on a slow gateway holds
-- a worker thread, never the event loop; errors cross the thread boundary as
-- the library's error values.

local emulator = require "spec.support.emulator"
local nginx_app = require "spec.support.nginx_app"
local socket = require "socket"
local cjson = require "cjson"

local STATUSES = { "created", "cooking", "on_the_way", "delivered", "cancelled" }

-- new() refuses what cannot cross into a worker thread, at configuration time;
-- a push through a thread pool nginx.conf lacks is a config error, not a raise.
local CONFIG_LOCATION = [[
        location = /spec/config {
            content_by_lua_block {
                local adapter = require "choco.active_order.ngx"
                local base = { base_url = "http://127.0.0.1:9", allow_insecure_http = true,
                               client_id = "id", client_secret = "spec-secret", statuses = { "created" } }
                local function client(extra)
                    local c = {}
                    for k, v in pairs(base) do c[k] = v end
                    for k, v in pairs(extra or {}) do c[k] = v end
                    return c
                end
                local function show(name, p, err)
                    ngx.say(name, ": ", p and "ok" or (err.kind .. "/" .. err.code .. " " .. err.message))
                end
                show("function", adapter.new { thread_pool = "choco", client = client { on_request = print } })
                show("no dict", adapter.new { thread_pool = "choco", shared_dict = "nope", client = client() })
                show("bad client", adapter.new { thread_pool = "choco", client = client { timeout = -1 } })
                show("unknown", adapter.new { thread_pool = "choco", client = client(), colour = 1 })
                local p = assert(adapter.new { thread_pool = "no_such_pool", client = client() })
                local status = require("app").render({ state = "new", order_id = "cfg-1", user_id = 5 })
                local data, err = p:push(status)
                show("no pool", data, err)
                local odd = require("app").render({ state = "new", order_id = "cfg-2", user_id = 5 })
                odd.user_id = print
                show("odd status", require("app").pusher():push(odd))
                ngx.say("tostring: ", tostring(p))
            }
        }
        location = /spec/together {
            content_by_lua_block {
                -- eight pushes at once from one handler: they go to one thread task
                local app = require "app"
                local threads, lines = {}, {}
                for i = 1, 8 do
                    threads[i] = ngx.thread.spawn(function()
                        local status = assert(app.render({ state = "new", order_id = "tog-" .. i, user_id = 5 }))
                        local data, meta = app.pusher():push(status)
                        if data then return "ok " .. meta.attempts .. " " .. meta.http_status end
                        return "failed " .. meta.code .. " " .. tostring(meta.attempts)
                    end)
                end
                for i = 1, 8 do
                    local _, line = ngx.thread.wait(threads[i])
                    lines[#lines + 1] = line
                end
                table.sort(lines)
                ngx.say(table.concat(lines, ","))
            }
        }
]]

describe("choco.active_order.ngx in nginx (one worker process)", function()
    local emu, app

    setup(function()
        emu = emulator.start { statuses = STATUSES }
        app = nginx_app.start { emulator = emu, statuses = STATUSES, workers = 1, threads = 4,
                                extra = CONFIG_LOCATION }
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
        assert.is_true(cjson.decode(body).pushed)
        assert.are.equal("created", emu:history("slow-1").last)
    end)

    it("sends statuses that wait together, retrying the one the gateway turned away for a moment", function()
        assert.are.equal(200, (app:request("POST", "/orders/warm/state?wait=1", event("new"))))
        local before = emu:state().requests.status
        emu:faults("status", { { kind = "http", status = 503 }, { kind = "http", status = 400 } })
        local status, body = app:request("GET", "/spec/together")
        assert.are.equal(200, status, body)
        -- the 503 is retried (a second attempt), the 400 is final at once
        assert.matches("^failed API_ERROR_%d+ 1," .. ("ok 1 200,"):rep(6) .. "ok 2 200\n$", body)
        assert.are.equal(before + 9, emu:state().requests.status)
        for i = 1, 8 do
            local h = emu:history("tog-" .. i)
            assert.is_true(h == nil or h.count == 1, "tog-" .. i .. " landed more than once")
        end
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

    it("checks its configuration up front and reports a missing thread pool as a config error", function()
        local status, body = app:request("GET", "/spec/config")
        assert.are.equal(200, status)
        assert.matches("function: config/BAD_OPTION client.on_request is a function", body, 1, true)
        assert.matches("no dict: config/BAD_OPTION lua_shared_dict nope is not declared", body, 1, true)
        assert.matches("bad client: config/BAD_OPTION timeout", body, 1, true)
        assert.matches("unknown: config/BAD_OPTION unknown option: colour", body, 1, true)
        assert.matches("no pool: config/WORKER_THREAD ngx.run_worker_thread: thread pool no_such_pool not found",
            body, 1, true)
        assert.matches("odd status: validation/INVALID_STATUS the status is invalid: user_id", body, 1, true)
        assert.matches("tostring: choco.active_order.ngx pusher (thread_pool=no_such_pool)", body, 1, true)
        assert.is_nil(body:find("spec-secret", 1, true))
    end)

    it("logs no Lua error, alert or secret", function()
        assert.are.same({}, app:problems())
        assert.are.same({}, emu:lua_errors())
        local log = app:log()
        assert.is_nil(log:find(emu.client_secret, 1, true))
        assert.is_nil(log:find("Bearer", 1, true))
    end)
end)
