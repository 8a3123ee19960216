-- Order per order id under concurrency: 500 webhooks through the example app
-- (two worker processes, so one order's events reach both) all land in the
-- gateway emulator, each order's in the order they were acknowledged; and
-- push_async keeps the order of one order's statuses inside a worker.

local emulator = require "spec.support.emulator"
local nginx_app = require "spec.support.nginx_app"
local cjson = require "cjson"

local STATUSES = { "created", "cooking", "on_the_way", "delivered", "cancelled" }
local ETA = os.date("!%Y-%m-%d %H:%M:%S", os.time() + 5 * 3600)

-- Five events of one order and the card each must leave in the history.
local LIFE = {
    { event = { state = "new" }, status = "created", title = "Заказ оформлен" },
    { event = { state = "accepted" }, status = "cooking", title = "Готовим ваш заказ" },
    { event = { state = "courier_picked_up", eta = ETA, courier = { id = 1, name = "Асель" } },
      status = "on_the_way", title = "Асель в пути" },
    { event = { state = "on_the_way", eta = ETA, courier = { id = 2, name = "Диас" } },
      status = "on_the_way", title = "Диас в пути" },
    { event = { state = "delivered" }, status = "delivered", title = "Заказ доставлен" },
}

local function body_of(step, user_id)
    local e = {}
    for k, v in pairs(step.event) do e[k] = v end
    e.user_id = user_id
    return cjson.encode(e)
end

local function landed(emu, order_id)
    local h = emu:history(order_id)
    local seen = {}
    for i, entry in ipairs(h and h.history or {}) do
        local body = type(entry.body) == "table" and entry.body or cjson.decode(entry.raw or "{}")
        seen[i] = entry.status .. " / " .. tostring(body.external_data and body.external_data.title_active_order_card)
    end
    return seen
end

local function expected()
    local list = {}
    for i, step in ipairs(LIFE) do list[i] = step.status .. " / " .. step.title end
    return list
end

local ASYNC_LOCATION = [[
        location = /spec/push_async {
            content_by_lua_block {
                local app = require "app"
                local dict = ngx.shared.app_queue
                local args = ngx.req.get_uri_args()
                local events = require("cjson").decode(args.events)
                for i, e in ipairs(events) do
                    local status = assert(app.render(e))
                    local ok, err = app.pusher():push_async(status, function(data, perr, meta)
                        local k = dict:incr("async count " .. e.order_id, 1, 0)
                        dict:set("async " .. e.order_id .. " " .. k, (data and "ok " or ("failed " .. tostring(perr)
                            .. " ")) .. i .. (meta and meta.attempts and "" or " no meta"))
                    end)
                    if not ok then ngx.say("refused ", i, ": ", tostring(err)) end
                end
                local bad = assert(app.render(events[1]))
                bad.user_id = 0
                local ok, err = app.pusher():push_async(bad)
                ngx.say("invalid: ", tostring(ok), " ", err and err.kind or "accepted")
                ngx.say("queued")
            }
        }
        location = /spec/async_results {
            content_by_lua_block {
                local dict = ngx.shared.app_queue
                local id = ngx.var.arg_id
                local out = {}
                for k = 1, dict:get("async count " .. id) or 0 do out[k] = dict:get("async " .. id .. " " .. k) end
                ngx.print(table.concat(out, ","))
            }
        }
        location = /spec/wrong_phase {
            content_by_lua_block { ngx.say("body") }
            header_filter_by_lua_block {
                local app = require "app"
                local status = assert(app.render({ state = "new", order_id = "phase-1", user_id = 5 }))
                local data, err = app.pusher():push(status)
                ngx.header["X-Push"] = data and "pushed" or (err.kind .. "/" .. err.code)
            }
        }
]]

describe("choco.active_order.ngx ordering", function()
    local emu, app

    setup(function()
        emu = emulator.start { statuses = STATUSES, workers = 2 }
        app = nginx_app.start { emulator = emu, statuses = STATUSES, workers = 2, threads = 4,
                                extra = ASYNC_LOCATION }
    end)

    teardown(function()
        if app then app:stop() end
        if emu then emu:stop() end
    end)

    it("lands 500 concurrent webhooks, each order's in the order acknowledged", function()
        local ORDERS, LISTS = 100, 20
        local lists = {}
        for i = 1, LISTS do lists[i] = {} end
        for n = 1, ORDERS do
            local list = lists[(n - 1) % LISTS + 1]
            -- one order's events back to back: each is acknowledged while the
            -- previous one is still queued or being pushed
            for _, step in ipairs(LIFE) do
                list[#list + 1] = { path = "/orders/P-" .. n .. "/state", body = body_of(step, 1000 + n) }
            end
        end
        local codes = app:curl_lists(lists)
        local accepted = 0
        for i = 1, LISTS do
            for _, code in ipairs(codes[i]) do
                assert.are.equal(202, code)
                accepted = accepted + 1
            end
        end
        assert.are.equal(ORDERS * #LIFE, accepted)

        local stats
        assert.is_true(nginx_app.wait_until(function()
            local _, body = app:request("GET", "/stats")
            stats = cjson.decode(body)
            return stats.pushed + stats.failed >= accepted
        end, 60), "the app did not finish pushing")
        assert.are.same({ pushed = accepted, failed = 0 }, stats)

        local want = expected()
        for n = 1, ORDERS do
            assert.are.same(want, landed(emu, "P-" .. n), "order P-" .. n)
        end
    end)

    it("push_async keeps each order's statuses in order while orders go in parallel", function()
        -- the first pushes are slow: later statuses of the same order must wait for them
        emu:faults("status", { { kind = "delay", ms = 300 }, { kind = "delay", ms = 200 } })
        local events = {}
        for n = 1, 3 do
            for _, step in ipairs(LIFE) do
                local e = cjson.decode(body_of(step, 2000 + n))
                e.order_id = "A-" .. n
                events[#events + 1] = e
            end
        end
        local status, body = app:request("GET", "/spec/push_async?events=" .. emulator.escape(cjson.encode(events)))
        assert.are.equal(200, status)
        assert.are.equal("invalid: nil validation\nqueued\n", body)
        local want = expected()
        for n = 1, 3 do
            local id = "A-" .. n
            assert.is_true(nginx_app.wait_until(function() return #landed(emu, id) >= #LIFE end, 10), id)
            assert.are.same(want, landed(emu, id), id)
        end
        -- every callback ran, in order, with data and meta
        for n = 1, 3 do
            local first = (n - 1) * #LIFE
            local list = {}
            for i = 1, #LIFE do list[i] = "ok " .. (first + i) end
            local results
            nginx_app.wait_until(function()
                results = select(2, app:request("GET", "/spec/async_results?id=A-" .. n))
                return results == table.concat(list, ",")
            end, 5)
            assert.are.equal(table.concat(list, ","), results)
        end
    end)

    it("refuses to wait in a phase that cannot yield", function()
        local status, _, _ = app:request("GET", "/spec/wrong_phase")
        assert.are.equal(200, status)
        local c = require("socket").tcp()
        c:settimeout(5)
        assert(c:connect("127.0.0.1", app.port))
        c:send(nginx_app.request_text("GET", "/spec/wrong_phase"))
        local head = {}
        while true do
            local line = c:receive("*l")
            if not line or line == "" then break end
            head[#head + 1] = line
        end
        c:close()
        assert.matches("X%-Push: config/WRONG_PHASE", table.concat(head, "\n"))
    end)

    it("logs no Lua error, alert or secret", function()
        assert.are.same({}, app:problems())
        assert.are.same({}, emu:lua_errors())
        local log = app:log()
        assert.is_nil(log:find(emu.client_secret, 1, true))
        assert.is_nil(log:find("Bearer", 1, true))
    end)
end)
