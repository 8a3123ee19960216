-- Pushes from inside nginx, figures from one run, same wrk load (-t2 -c16)
-- against the same gateway emulator:
--   app     the example app's push endpoint (POST /push with the same status
--           JSON: decode, C validation, worker thread, libcurl, answer)
--   webhook the example app's webhook pushed at once (POST /orders/{id}/state?wait=1:
--           the mapping rules first, then the same push)
--   direct  the emulator itself (the same PUT with a valid token)
--   relay   nginx's own C relay: proxy_pass with a keep-alive upstream to the
--           emulator (the physical limit of any push made from inside nginx)
-- Prints the rates and their ratios to direct (medians of paired rounds).
-- Target: app >= 0.5 x direct.
--   lua5.4 bench/openresty.lua [--seconds N] [--rounds N] [--json]
--       [--app_workers N] [--app_threads N] [--batch N] [--emulator_workers N]
--   (LUA_PATH as `make test` sets it; AO_BENCH_JSON=<file> appends the JSON line)

local emulator = require "spec.support.emulator"
local nginx_app = require "spec.support.nginx_app"
local cjson = require "cjson"
local socket = require "socket"
local lib = require "bench.lib"

local args = { seconds = 3, rounds = 5, threads = 2, connections = 16, json = false,
               app_workers = 1, app_threads = 2, emulator_workers = 1, batch = 0 }
do
    local argv = { ... }
    local i = 1
    while i <= #argv do
        local name = argv[i]:match("^%-%-([%w_]+)$")
        if name == "json" then
            args.json = true
            i = i + 1
        else
            if not name or args[name] == nil then error("unknown argument " .. argv[i]) end
            args[name] = assert(tonumber(argv[i + 1]), argv[i] .. " N")
            i = i + 2
        end
    end
end

local STATUSES = { "created", "cooking", "on_the_way", "delivered", "cancelled" }

local function sh(cmd)
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    p:close()
    return out
end

local function write(path, text)
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
end

local function wrk(dir, name, method, url, body, headers)
    local script = dir .. "/" .. name .. ".lua"
    local lines = { ("wrk.method = %q"):format(method), ("wrk.body = %q"):format(body) }
    for k, v in pairs(headers) do lines[#lines + 1] = ("wrk.headers[%q] = %q"):format(k, v) end
    write(script, table.concat(lines, "\n") .. "\n")
    local out = sh(("env -u LD_PRELOAD wrk -t%d -c%d -d%ds -s %s '%s' 2>&1"):format(
        args.threads, args.connections, args.seconds, script, url))
    local rps = tonumber(out:match("Requests/sec:%s*([%d.]+)"))
    if not rps then error("wrk failed:\n" .. out) end
    local bad = tonumber(out:match("Non%-2xx or 3xx responses:%s*(%d+)")) or 0
    local errors = out:match("Socket errors:[^\n]*")
    if bad > 0 or errors then error(name .. ": " .. bad .. " failed answers " .. tostring(errors) .. "\n" .. out) end
    return rps
end

-- nginx's own relay: proxy_pass to the emulator over kept-alive upstream connections
local function start_relay(dir, upstream_port)
    local port = nginx_app.free_port()
    write(dir .. "/relay.conf", ([[
%s
daemon on;
worker_processes 1;
error_log %s/relay-error.log warn;
pid %s/relay.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %s/tmp;
    proxy_temp_path %s/tmp;
    keepalive_requests 1000000;
    upstream gateway { server 127.0.0.1:%d; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:%d;
        location / {
            proxy_pass http://gateway;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
]]):format(sh("id -u"):match("^0") and "user root;" or "", dir, dir, dir, dir, upstream_port, port))
    os.execute("mkdir -p " .. dir .. "/tmp && env -u LD_PRELOAD /usr/sbin/nginx -p " .. dir .. "/ -c "
        .. dir .. "/relay.conf -e " .. dir .. "/relay-error.log")
    nginx_app.wait_until(function()
        local c = socket.tcp()
        c:settimeout(0.2)
        local ok = c:connect("127.0.0.1", port)
        c:close()
        return ok
    end, 5)
    return "http://127.0.0.1:" .. port, function()
        local pid = sh("cat " .. dir .. "/relay.pid 2>/dev/null"):match("%d+")
        if pid then os.execute("kill -QUIT " .. pid) end
    end
end

local dir = sh("mktemp -d /tmp/ao-bench-openresty.XXXXXX"):match("%S+")
local emu = emulator.start { statuses = STATUSES, workers = args.emulator_workers }
local app, stop_relay
local ok, err = pcall(function()
    app = nginx_app.start { emulator = emu, statuses = STATUSES, workers = args.app_workers,
                            threads = args.app_threads,
                            env = { CHOCO_AO_BATCH_MAX = args.batch > 0 and args.batch or nil } }
    local relay_url
    relay_url, stop_relay = start_relay(dir, emu.port)
    local token = emu:token()
    local put_headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }
    local status = emulator.example()
    status.external_status = "cooking"
    status.external_data.expired_at = os.date("!%Y-%m-%d %H:%M:%S", os.time() + 6 * 3600)
    local put = cjson.encode(status)
    local event = cjson.encode { state = "accepted", user_id = 1234567 }
    local path = "/orders/v2/preorder/external/status"

    -- Paired rounds: each round measures the four back to back (the order
    -- reversed every other round), and a ratio is the median of the rounds'
    -- ratios, so that load from elsewhere, which drifts over seconds, falls on
    -- both sides of each pair. Rates shown are the medians of the rounds.
    local names = { "direct", "relay", "app", "webhook" }
    local runs = {
        direct = function() return wrk(dir, "direct", "PUT", emu.url .. path, put, put_headers) end,
        relay = function() return wrk(dir, "relay", "PUT", relay_url .. path, put, put_headers) end,
        app = function() return wrk(dir, "app", "POST", app.url .. "/push", put,
            { ["Content-Type"] = "application/json" }) end,
        webhook = function() return wrk(dir, "webhook", "POST", app.url .. "/orders/BENCH-1/state?wait=1",
            event, { ["Content-Type"] = "application/json" }) end,
    }
    local rates = { direct = {}, relay = {}, app = {}, webhook = {} }
    local ratios = { relay = {}, app = {}, webhook = {} }
    -- connections the app opened to the gateway per 1000 pushes: 0 when every
    -- one is kept alive (a reopened connection costs both sides a handshake)
    local app_pushes, app_connections = 0, 0
    for r = 1, args.rounds do
        for k = 1, #names do
            local name = names[r % 2 == 1 and k or #names + 1 - k]
            local before = name == "app" and emu:state()
            rates[name][r] = runs[name]()
            if before then
                local after = emu:state()
                app_pushes = app_pushes + after.requests.status - before.requests.status
                -- the control requests reading the state open one connection each
                app_connections = app_connections + after.connections - before.connections - 1
            end
        end
        for name in pairs(ratios) do ratios[name][r] = rates[name][r] / rates.direct[r] end
    end
    local rate, ratio = {}, {}
    for name, list in pairs(rates) do rate[name] = lib.median(list) end
    for name, list in pairs(ratios) do ratio[name] = lib.median(list) end
    local problems = app:problems()
    if #problems > 0 then error("the app logged problems:\n" .. table.concat(problems, "\n")) end

    local app_over_relay = {}
    for r = 1, args.rounds do app_over_relay[r] = rates.app[r] / rates.relay[r] end
    local figures = {
        bench = "openresty",
        direct_rps = math.floor(rate.direct),
        relay_rps = math.floor(rate.relay),
        app_rps = math.floor(rate.app),
        relay_ratio = ratio.relay,
        app_ratio = ratio.app,
        webhook_rps = math.floor(rate.webhook),
        webhook_ratio = ratio.webhook,
        target_app_ratio = 0.5,
        wrk = ("-t%d -c%d -d%ds, median of %d paired rounds"):format(args.threads, args.connections, args.seconds,
            args.rounds),
        per_round = rates,
        app_workers = args.app_workers, app_threads = args.app_threads, emulator_workers = args.emulator_workers,
        app_batch_max = args.batch > 0 and args.batch or 8,
        app_new_connections_per_1000 = app_pushes > 0 and 1000 * app_connections / app_pushes or 0,
    }
    print(("OpenResty push (wrk %s)"):format(figures.wrk))
    print(("  direct  emulator PUT             %9.0f req/s   1.00"):format(rate.direct))
    print(("  relay   nginx proxy_pass         %9.0f req/s   %.2f"):format(rate.relay, figures.relay_ratio))
    print(("  app     example app POST /push   %9.0f req/s   %.2f   (target >= 0.50)")
        :format(rate.app, figures.app_ratio))
    print(("  webhook app webhook ?wait=1      %9.0f req/s   %.2f   (rules + push)")
        :format(rate.webhook, figures.webhook_ratio))
    print(("  app workers %d, thread_pool threads %d, batch_max %d; emulator workers %d;"
        .. " %.1f gateway connections opened per 1000 pushes")
        :format(args.app_workers, args.app_threads, figures.app_batch_max, args.emulator_workers,
            figures.app_new_connections_per_1000))
    local wrk_args = ("wrk -t%d -c%d"):format(args.threads, args.connections)
    figures.bench = nil
    lib.emit("openresty", {
        lib.row("OpenResty example app POST /push", rate.app, "req/s", "emulator direct, " .. wrk_args,
            rate.direct, ">= 0.5", ratio.app),
        lib.row("OpenResty example app POST /push", rate.app, "req/s", "nginx proxy_pass relay", rate.relay, nil,
            lib.median(app_over_relay)),
        lib.row("  nginx proxy_pass relay (the limit)", rate.relay, "req/s", "emulator direct", rate.direct, nil,
            ratio.relay),
        lib.row("  app webhook ?wait=1 (rules + push)", rate.webhook, "req/s", "emulator direct", rate.direct, nil,
            ratio.webhook),
    }, figures, args.json)
end)
if stop_relay then stop_relay() end
if app then app:stop() end
emu:stop()
os.execute("rm -rf " .. dir)
if not ok then
    io.stderr:write(tostring(err), "\n")
    os.exit(1)
end
