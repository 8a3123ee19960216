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
        location = /spec/data {
            content_by_lua_block {
                -- the gateway's data table and meta, as push returns them
                local app = require "app"
                local status = assert(app.render({ state = "new", order_id = ngx.var.arg_order, user_id = 5 }))
                local data, meta = app.pusher():push(status)
                if not data then
                    ngx.say(require("cjson").encode { kind = meta.kind, code = meta.code, attempts = meta.attempts,
                        http_status = meta.http_status, error_code = meta.error_code, message = meta.message })
                    return
                end
                local keys = {}
                for k in pairs(data) do keys[#keys + 1] = k end
                table.sort(keys)
                ngx.say(require("cjson").encode { data = data, keys = keys, meta = meta })
            }
        }
        location = /spec/keep {
            content_by_lua_block {
                -- eight pushes in one batch; ?keep=even: the even ones keep their
                -- data, ?keep=first: the first one does, otherwise none
                local app = require "app"
                local cjson = require "cjson"
                local threads, lines = {}, {}
                for i = 1, 8 do
                    threads[i] = ngx.thread.spawn(function()
                        local status = assert(app.render({ state = "new", order_id = "keep-" .. i, user_id = 5 }))
                        local which = ngx.var.arg_keep
                        local keep = (which == "even" and i % 2 == 0) or (which == "first" and i == 1)
                        local data, meta = app.pusher():push(status, { keep_data = keep })
                        if not data then return i .. " failed " .. meta.code end
                        return i .. " " .. (type(data) == "table" and data.merchant_order_id or tostring(data))
                            .. " " .. meta.attempts .. " " .. tostring(meta.http_status ~= nil)
                            .. " " .. tostring(meta.duration >= 0)
                    end)
                end
                for i = 1, 8 do
                    local _, line = ngx.thread.wait(threads[i])
                    lines[#lines + 1] = line
                end
                local status = assert(app.render({ state = "new", order_id = "keep-x", user_id = 5 }))
                for _, bad in ipairs { "no", { keep_data = "no" } } do
                    local ok, err = pcall(app.pusher().push, app.pusher(), status, bad)
                    lines[#lines + 1] = tostring(ok) .. " " .. tostring(err):gsub("^.-: ", "")
                end
                ngx.say(table.concat(lines, "|"))
            }
        }
        location = /spec/overtake {
            content_by_lua_block {
                -- a push made while another one waits in a thread for a slow
                -- gateway goes out on its own, without waiting for that one
                local app = require "app"
                local order = {}
                local function push(id)
                    local status = assert(app.render({ state = "new", order_id = id, user_id = 5 }))
                    local data, err = app.pusher():push(status)
                    order[#order + 1] = id .. "=" .. (data and "ok" or tostring(err))
                end
                local slow = ngx.thread.spawn(push, "overtake-slow")
                ngx.sleep(0.3)
                push("overtake-quick")
                ngx.thread.wait(slow)
                ngx.say(table.concat(order, ","))
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
        local raw = table.concat(response)
        local status, body = nginx_app.parse_response(raw)
        local waited = socket.gettime() - started
        assert.are.equal(200, status, body)
        assert.is_true(waited >= 2, "the push came back after " .. waited .. " s, before the gateway's delay")
        assert.is_true(cjson.decode(body).pushed)
        -- the app's answer under load is sent whole, with its length, not chunked
        local head = raw:match("^(.-\r\n)\r\n")
        assert.matches("\r\ncontent%-length: 16\r\n", head:lower())
        assert.is_nil(head:lower():find("transfer-encoding", 1, true))
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

    it("hands back the gateway's data table whole, and meta", function()
        local status, body = app:request("GET", "/spec/data?order=data-1")
        assert.are.equal(200, status, body)
        local answer = cjson.decode(body)
        local data, meta = answer.data, answer.meta
        assert.are.equal("data-1", data.merchant_order_id)
        assert.are.equal(emu:history("data-1").id, data.id)
        assert.are.equal(5, data.scanned_user_id)
        assert.are.equal(cjson.null, data.backlink)
        assert.is_false(data.failed_on_check)
        -- every field of the emulator's success answer
        assert.are.same({ "amount", "backlink", "checklink", "created_at", "expired_at", "external_filial_id",
            "external_status_id", "failed_on_check", "failed_postlink", "filial_id", "id", "merchant_id",
            "merchant_order_id", "merchant_slug", "postlink", "qr_code_id", "request_from_type",
            "scanned_user_id", "supplementary_data", "type", "updated_at" }, answer.keys)
        assert.are.equal(1, meta.attempts)
        assert.are.equal(200, meta.http_status)
        assert.is_true(meta.duration >= 0)
    end)

    it("reads a 2xx answer that only opens like a success the way the client does", function()
        -- error_code 0 first, then error_code 7: the last one counts (as in the client's decode)
        emu:faults("status", { { kind = "not_json", status = 200,
            body = '{"error_code":0,"data":{"id":1},"error_code":7,"message":"refused later"}' } })
        local status, body = app:request("GET", "/spec/data?order=twice-1")
        assert.are.equal(200, status, body)
        local err = cjson.decode(body)
        assert.are.same({ kind = "api", code = "API_ERROR_7", attempts = 1, http_status = 200, error_code = 7,
            message = "the gateway refused the status: error_code 7 (refused later)" }, err)

        -- a success opening cut short: not JSON at all
        emu:faults("status", { { kind = "not_json", status = 200, body = '{"error_code":0,"data":{"id":' } })
        status, body = app:request("GET", "/spec/data?order=cut-1")
        assert.are.equal(200, status, body)
        err = cjson.decode(body)
        assert.are.equal("decode", err.kind)
        assert.are.equal("BAD_JSON", err.code)
        assert.are.equal(1, err.attempts)
    end)

    it("with keep_data = false checks the answer and hands back true, alone or beside pushes that keep it", function()
        assert.are.equal(200, (app:request("POST", "/orders/warm/state?wait=1", event("new"))))
        local status, body = app:request("GET", "/spec/keep")
        assert.are.equal(200, status, body)
        local lines = {}
        for line in body:gmatch("[^|\n]+") do lines[#lines + 1] = line end
        -- a batch where nobody keeps data: the core only checks the envelope, so
        -- meta has no http_status
        for i = 1, 8 do assert.are.equal(i .. " true 1 false true", lines[i]) end
        assert.are.equal("false push expects a table of options or nil, not string", lines[9])
        assert.are.equal("false push expects keep_data to be a boolean, not string", lines[10])

        for _, which in ipairs { "even", "first" } do
            status, body = app:request("GET", "/spec/keep?keep=" .. which)
            assert.are.equal(200, status, body)
            lines = {}
            for line in body:gmatch("[^|\n]+") do lines[#lines + 1] = line end
            for i = 1, 8 do
                if (which == "even" and i % 2 == 0) or (which == "first" and i == 1) then
                    assert.are.equal(i .. " keep-" .. i .. " 1 true true", lines[i], which)
                else
                    assert.are.equal(i .. " true 1 true true", lines[i], which)
                end
            end
        end
        for i = 1, 8 do assert.are.equal("created", emu:history("keep-" .. i).last) end
    end)

    it("with keep_data = false still reads an answer that is not a success the way the client does", function()
        emu:faults("status", { { kind = "not_json", status = 200,
            body = '{"error_code":0,"data":{"id":1},"error_code":7,"message":"refused later"}' } })
        local status, body = app:request("POST", "/orders/nodata-1/state?wait=1", event("new"))
        assert.are.equal(502, status, body)
        local answer = cjson.decode(body)
        assert.are.equal("api", answer.kind)
        assert.are.equal("API_ERROR_7", answer.code)
    end)

    it("sends a push made while another waits in a thread without waiting for that one", function()
        assert.are.equal(200, (app:request("POST", "/orders/warm/state?wait=1", event("new"))))
        emu:faults("status", { { kind = "delay", ms = 1500 } })
        local status, body = app:request("GET", "/spec/overtake")
        assert.are.equal(200, status, body)
        assert.are.equal("overtake-quick=ok,overtake-slow=ok\n", body)
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
