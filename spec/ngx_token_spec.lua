-- One token for every worker process and thread: under load, a token that
-- expires (or that the gateway revokes) is renewed once, not once per request.

local emulator = require "spec.support.emulator"
local nginx_app = require "spec.support.nginx_app"
local socket = require "socket"

local STATUSES = { "created", "cooking", "on_the_way", "delivered", "cancelled" }
local WORKERS = 2
local TOKEN_TTL = 3

-- wrk against the synchronous push endpoint, in the background; returns a
-- function that waits for it and gives the request count and the non-2xx count.
local function load(app, seconds)
    local script = app.prefix .. "/tmp/push.lua"
    local f = assert(io.open(script, "wb"))
    f:write('wrk.method = "POST"\n',
        'wrk.body = \'{"state":"accepted","user_id":42}\'\n',
        'wrk.headers["Content-Type"] = "application/json"\n')
    f:close()
    local out = app.prefix .. "/tmp/wrk.out"
    os.execute("env -u LD_PRELOAD wrk -t2 -c8 -d" .. seconds .. "s -s " .. script .. " '"
        .. app.url .. "/orders/T-1/state?wait=1' >" .. out .. " 2>&1 &")
    return function()
        local text
        nginx_app.wait_until(function()
            local r = io.open(out, "rb")
            text = r and r:read("*a") or ""
            if r then r:close() end
            return text:find("Requests/sec", 1, true) ~= nil
        end, seconds + 10)
        local requests = tonumber(text:match("(%d+) requests in"))
        local non_2xx = tonumber(text:match("Non%-2xx or 3xx responses: (%d+)")) or 0
        assert(requests, "wrk gave no figures:\n" .. text)
        return requests, non_2xx
    end
end

describe("choco.active_order.ngx shared token", function()
    local emu, app

    setup(function()
        emu = emulator.start { statuses = STATUSES, token_ttl = TOKEN_TTL, workers = 1 }
        app = nginx_app.start { emulator = emu, statuses = STATUSES, workers = WORKERS, threads = 4 }
    end)

    teardown(function()
        if app then app:stop() end
        if emu then emu:stop() end
    end)

    it("renews an expiring token once for all processes, not once per request", function()
        assert.are.equal(200, (app:request("POST", "/orders/T-0/state?wait=1", '{"state":"new","user_id":42}')))
        local before = emu:state().tokens_issued
        assert.are.equal(1, before)
        -- the token expires (is renewed ahead of expiry) once in the middle of this load
        local finish = load(app, 4)
        local requests, non_2xx = finish()
        local renewals = emu:state().tokens_issued - before
        assert.are.equal(0, non_2xx)
        assert.is_true(requests > 100, "only " .. requests .. " pushes")
        assert.is_true(renewals >= 1, "no renewal in " .. 4 .. " s with a " .. TOKEN_TTL .. " s token")
        -- at most one per process for the one expiry (shared: in practice exactly one)
        assert.is_true(renewals <= WORKERS, renewals .. " renewals for " .. requests .. " pushes")
    end)

    it("renews a revoked token once for all processes, not once per request", function()
        -- a fresh token, so that no expiry falls inside this test
        emu:revoke()
        assert.are.equal(200, (app:request("POST", "/orders/T-0/state?wait=1", '{"state":"new","user_id":42}')))
        local before = emu:state().tokens_issued
        local finish = load(app, 2)
        socket.sleep(1)
        emu:revoke()
        local requests, non_2xx = finish()
        local renewals = emu:state().tokens_issued - before
        assert.are.equal(0, non_2xx)
        assert.is_true(requests > 50, "only " .. requests .. " pushes")
        assert.is_true(renewals >= 1 and renewals <= WORKERS, renewals .. " renewals for " .. requests .. " pushes")
    end)

    it("logs no Lua error, alert or secret", function()
        assert.are.same({}, app:problems())
        assert.are.same({}, emu:lua_errors())
        local log = app:log()
        assert.is_nil(log:find(emu.client_secret, 1, true))
        assert.is_nil(log:find("Bearer", 1, true))
    end)
end)
