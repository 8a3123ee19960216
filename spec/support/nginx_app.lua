-- Spec helper: starts examples/openresty (real nginx, LuaJIT inside, the C core
-- from build/luajit) on a free 127.0.0.1 port, pointed at a running gateway
-- emulator, and drives it with LuaSocket and curl.
--
--   local nginx_app = require "spec.support.nginx_app"
--   local app = nginx_app.start{ emulator = emu, statuses = {...}, workers = 1, threads = 4,
--                                extra = "location /x { ... }",   -- spec-only locations
--                                env = { CHOCO_AO_BATCH_MAX = 8 } }  -- more of the app's settings
--   app:request(method, path, body) -> http status, body, seconds
--   app:problems()      error-log lines at error level or worse, and Lua tracebacks
--   app:log()           the whole error log
--   app:stop()          always called from teardown

local socket = require "socket"
local process = require "spec.support.process"
local run, read, write = process.run, process.read, process.write

local nginx_app = {}

local NGINX = os.getenv("AO_NGINX") or "/usr/sbin/nginx"
local MODULES = "/usr/lib/nginx/modules"

local q = process.quote




nginx_app.ROOT = os.getenv("AO_ROOT") or "."

--- Make sure the C core is built against LuaJIT (nginx's Lua); `make test` does it
--- already, this covers a spec run by hand.
function nginx_app.ensure_luajit_build()
    local root = nginx_app.ROOT
    if read(root .. "/build/luajit/choco/active_order/core.so") then return true end
    assert(run("make -C " .. q(root) .. " --no-print-directory LUA=luajit VARIANT=luajit SAN= all >/dev/null"),
        "cannot build the LuaJIT C module (make LUA=luajit)")
    return true
end

function nginx_app.free_port()
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    server:close()
    return tonumber(port)
end

--- The example's nginx.conf with its ${NAME} placeholders filled in.
function nginx_app.render_conf(values)
    local template = assert(read(nginx_app.ROOT .. "/examples/openresty/nginx.conf"))
    return (template:gsub("%${([%w_]+)}", function(name)
        local v = values[name]
        if v == nil then error("no value for ${" .. name .. "} in examples/openresty/nginx.conf") end
        return tostring(v)
    end))
end

local App = {}
App.__index = App

local function wait_until(check, seconds)
    local deadline = socket.gettime() + seconds
    while socket.gettime() < deadline do
        if check() then return true end
        socket.sleep(0.02)
    end
    return check()
end

local function accepts(port)
    local c = socket.tcp()
    c:settimeout(0.25)
    local ok = c:connect("127.0.0.1", port)
    c:close()
    return ok ~= nil
end

--- opts: emulator (from spec.support.emulator), statuses, rules (path; default
--- examples/rules/delivery.lua), workers, threads, extra (server-level config).
function nginx_app.start(opts)
    nginx_app.ensure_luajit_build()
    local root = nginx_app.ROOT
    local prefix = assert(io.popen("mktemp -d /tmp/choco-ao-app.XXXXXXXX")):read("*l")
    for _, d in ipairs { "conf", "logs", "tmp" } do assert(run("mkdir -p " .. q(prefix .. "/" .. d))) end
    local port = nginx_app.free_port()
    local conf = nginx_app.render_conf {
        NGINX_MODULES = MODULES,
        USER_DIRECTIVE = (io.popen("id -u"):read("*l") == "0") and "user root;" or "",
        DAEMON = "on",
        WORKERS = opts.workers or 1,
        THREADS = opts.threads or 4,
        PREFIX = prefix,
        LOG_LEVEL = "notice",
        ROOT = root,
        PORT = port,
    }
    -- spec-only locations go in the server block, after the app's own
    conf = conf:gsub("(location = /health)", function(s) return (opts.extra or "") .. "\n        " .. s end, 1)
    write(prefix .. "/conf/nginx.conf", conf)
    local emu = opts.emulator
    local env = table.concat({
        "CHOCO_AO_BASE_URL=" .. q(emu.url),
        "CHOCO_AO_CLIENT_ID=" .. q(emu.client_id),
        "CHOCO_AO_CLIENT_SECRET=" .. q(emu.client_secret),
        "CHOCO_AO_STATUSES=" .. q(table.concat(opts.statuses, ",")),
        "CHOCO_AO_RULES=" .. q(opts.rules or (root .. "/examples/rules/delivery.lua")),
        "CHOCO_AO_THREADS=" .. q(opts.threads or 4),
    }, " ")
    -- LD_PRELOAD (the sanitizer runs) belongs to the Lua under test, not to nginx
    for k, v in pairs(opts.env or {}) do env = env .. " " .. k .. "=" .. q(v) end
    local started = run("env -u LD_PRELOAD " .. env .. " " .. q(NGINX) .. " -p " .. q(prefix .. "/")
        .. " -c conf/nginx.conf -e logs/error.log >" .. q(prefix .. "/logs/stdio.log") .. " 2>&1")
    local app = setmetatable({ prefix = prefix, port = port, url = "http://127.0.0.1:" .. port,
        error_log = prefix .. "/logs/error.log" }, App)
    if not started or not wait_until(function() return accepts(port) end, 5) then
        local log = (read(app.error_log) or "") .. (read(prefix .. "/logs/stdio.log") or "")
        app:stop()
        error("the example app did not start:\n" .. log, 2)
    end
    return app
end

function App:pid()
    return tonumber((read(self.prefix .. "/logs/nginx.pid") or ""):match("%d+"))
end

function App:stop()
    if self.stopped then return end
    self.stopped = true
    local pid = self:pid()
    if pid then
        run("kill -QUIT " .. pid .. " 2>/dev/null")
        if not wait_until(function() return not run("kill -0 " .. pid .. " 2>/dev/null") end, 5) then
            run("kill -KILL " .. pid .. " 2>/dev/null")
        end
    end
    if not os.getenv("AO_KEEP_PREFIX") then run("rm -rf " .. q(self.prefix)) end
end

function App:log()
    return read(self.error_log) or ""
end

--- Lines that show something went wrong inside nginx: error level and worse,
--- Lua tracebacks, aborted Lua threads.
function App:problems()
    local found = {}
    for line in self:log():gmatch("[^\n]+") do
        if line:find("%[error%]") or line:find("%[crit%]") or line:find("%[alert%]") or line:find("%[emerg%]")
            or line:find("stack traceback", 1, true) or line:find("lua entry thread aborted", 1, true) then
            found[#found + 1] = line
        end
    end
    return found
end

--- One HTTP/1.1 request on a fresh connection: status, body, seconds taken.
function App:request(method, path, body, timeout)
    local c = socket.tcp()
    c:settimeout(timeout or 10)
    local t0 = socket.gettime()
    local ok, err = c:connect("127.0.0.1", self.port)
    if not ok then return nil, err end
    c:send(nginx_app.request_text(method, path, body))
    local response = {}
    while true do
        local chunk, rerr, partial = c:receive(8192)
        local piece = chunk or partial
        if piece and piece ~= "" then response[#response + 1] = piece end
        if not chunk then
            if rerr ~= "closed" then c:close() return nil, rerr end
            break
        end
    end
    c:close()
    return nginx_app.parse_response(table.concat(response), socket.gettime() - t0)
end

function nginx_app.request_text(method, path, body)
    local lines = { method .. " " .. path .. " HTTP/1.1", "Host: 127.0.0.1", "Connection: close" }
    if body then
        lines[#lines + 1] = "Content-Type: application/json"
        lines[#lines + 1] = "Content-Length: " .. #body
    end
    return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end

-- Connection: close responses only (no chunked decoding needed for the
-- checks made here: the app answers with a Content-Length or closes).
function nginx_app.parse_response(text, seconds)
    local status = tonumber(text:match("^HTTP/1%.%d (%d%d%d)"))
    local head, body = text:match("^(.-)\r\n\r\n(.*)$")
    if head and head:lower():find("transfer%-encoding: chunked") then
        local out, pos = {}, 1
        while true do
            local size_hex, after = body:match("^(%x+)[^\r\n]*\r\n()", pos)
            local size = size_hex and tonumber(size_hex, 16)
            if not size or size == 0 then break end
            out[#out + 1] = body:sub(after, after + size - 1)
            pos = after + size + 2
        end
        body = table.concat(out)
    end
    return status, body, seconds
end

--- Run request lists concurrently, one curl process per list; each list's
--- requests go one after another (each on a new connection, so that with
--- several worker processes they land on any of them). `requests` items are
--- { path = , body = }. Returns the HTTP codes, list by list.
function App:curl_lists(lists)
    local dir = self.prefix .. "/tmp"
    local cmds = {}
    for i, list in ipairs(lists) do
        local cfg = {}
        for j, r in ipairs(list) do
            if j > 1 then cfg[#cfg + 1] = "next" end
            cfg[#cfg + 1] = 'url = "' .. self.url .. r.path .. '"'
            cfg[#cfg + 1] = 'data-binary = "' .. r.body:gsub("\\", "\\\\"):gsub('"', '\\"') .. '"'
            cfg[#cfg + 1] = 'header = "Content-Type: application/json"'
            cfg[#cfg + 1] = 'header = "Connection: close"'
            cfg[#cfg + 1] = 'write-out = "%{http_code}\\n"'
            cfg[#cfg + 1] = 'output = "/dev/null"'
            cfg[#cfg + 1] = 'max-time = 30'
        end
        write(dir .. "/list" .. i .. ".cfg", table.concat(cfg, "\n") .. "\n")
        cmds[#cmds + 1] = "curl -s -K " .. q(dir .. "/list" .. i .. ".cfg") .. " >" .. q(dir .. "/list" .. i .. ".out")
            .. " 2>&1 &"
    end
    run("env -u LD_PRELOAD sh -c " .. q(table.concat(cmds, " ") .. " wait"))
    local codes = {}
    for i = 1, #lists do
        codes[i] = {}
        for code in (read(dir .. "/list" .. i .. ".out") or ""):gmatch("%d+") do
            codes[i][#codes[i] + 1] = tonumber(code)
        end
    end
    return codes
end

nginx_app.wait_until = wait_until

return nginx_app
