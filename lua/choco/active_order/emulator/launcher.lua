-- Starts and stops the gateway emulator: a real nginx (Debian's, with the Lua
-- module) in a fresh temporary prefix, listening on 127.0.0.1 only. Shared by the
-- command line (`choco-active-order emulator`), the spec helper and the benches.
--
-- nginx runs in the foreground (`daemon off`) under a small shell wrapper that
-- stays its parent: the wrapper reaps it, removes the prefix when it exits, and
-- keeps a watchdog that stops nginx if the Lua process that started it dies, so
-- a crashed test run never leaves a server behind.

local cjson = require "cjson"
local socket = require "socket"

local launcher = {}

local NGINX = "/usr/sbin/nginx"
local NGINX_MODULES = "/usr/lib/nginx/modules"
local SYSTEM_LUA_PATH = "/usr/local/share/lua/5.1/?.lua;/usr/local/share/lua/5.1/?/init.lua;"
    .. "/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua"
local SYSTEM_LUA_CPATH = "/usr/local/lib/lua/5.1/?.so;/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;/usr/lib/lua/5.1/?.so"
local READY_TIMEOUT = 5
local STOP_TIMEOUT = 5

launcher.DEFAULTS = {
    client_id = "test-client",
    client_secret = "test-secret",
    statuses = { "created", "paid", "cooking", "delivering", "delivered", "cancelled" },
    token_ttl = 10800,
    utc_offset = "+05:00",
    workers = 1,
}

local function shell_quote(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function file_exists(path)
    local f = io.open(path, "rb")
    if f then f:close() return true end
    return false
end

local function read_file(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
end

local function write_file(path, content)
    local f, err = io.open(path, "wb")
    if not f then return nil, err end
    f:write(content)
    f:close()
    return true
end

-- Commands run without LD_PRELOAD: the sanitizer pass preloads its runtime into
-- the interpreter, and tools run under it can stall or fail at exit.
local CLEAN_ENV = "unset LD_PRELOAD; "

-- os.execute returns true/0 depending on the Lua version.
local function run(cmd)
    local a, _, c = os.execute(CLEAN_ENV .. cmd)
    return a == true or a == 0 or (a == nil and c == 0)
end

local function capture(cmd)
    local p = io.popen(CLEAN_ENV .. cmd, "r")
    if not p then return nil end
    local out = p:read("*a")
    p:close()
    return out
end

local function tail(path, lines)
    local s = read_file(path)
    if not s or s == "" then return "(empty)" end
    local all = {}
    for line in s:gmatch("[^\n]+") do all[#all + 1] = line end
    local from = math.max(1, #all - (lines or 15) + 1)
    local out = {}
    for i = from, #all do out[#out + 1] = all[i] end
    return table.concat(out, "\n")
end

-- The directory that holds `choco/active_order/...` (the checkout's lua/ or a
-- LuaRocks tree), found from this file's own location so that nginx loads the
-- same emulator code that started it.
local function lua_root()
    local source = debug.getinfo(1, "S").source
    if source:sub(1, 1) == "@" then
        local path = source:sub(2)
        local root = path:match("^(.*)choco[/\\]active_order[/\\]emulator[/\\]launcher%.lua$")
        if root then
            if root == "" then root = "./" end
            if root:sub(1, 1) ~= "/" then
                local cwd = os.getenv("PWD") or (capture("pwd") or ""):gsub("%s+$", "")
                root = cwd .. "/" .. root
            end
            return (root:gsub("/+$", ""))
        end
    end
    for template in package.path:gmatch("[^;]+") do
        local candidate = template:gsub("%?", "choco/active_order/emulator")
        if file_exists(candidate) then
            local root = candidate:match("^(.*)/choco/active_order/emulator")
            if root then return root end
        end
    end
    return nil
end

local function process_alive(pid)
    local stat = read_file("/proc/" .. pid .. "/stat")
    if stat then
        -- a zombie has exited; only its parent's wait is missing
        local state = stat:match("^%d+ %b() (%a)")
        return state ~= "Z" and state ~= "X"
    end
    if file_exists("/proc/self/stat") then return false end
    return run("kill -0 " .. pid .. " 2>/dev/null")
end

local function free_port()
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    server:close()
    return tonumber(port)
end

local function accepts(port)
    local c = socket.tcp()
    c:settimeout(0.25)
    local ok = c:connect("127.0.0.1", port)
    c:close()
    return ok ~= nil
end

local function check_options(opts)
    local o = {}
    for k, v in pairs(launcher.DEFAULTS) do o[k] = v end
    for k, v in pairs(opts or {}) do o[k] = v end
    o.port = tonumber(o.port or 0)
    if not o.port or o.port < 0 or o.port > 65535 or o.port % 1 ~= 0 then
        return nil, "port must be an integer between 0 and 65535"
    end
    if type(o.statuses) ~= "table" or #o.statuses == 0 then
        return nil, "statuses must be a non-empty list of strings"
    end
    for _, s in ipairs(o.statuses) do
        if type(s) ~= "string" or s == "" then return nil, "statuses must be a non-empty list of strings" end
    end
    o.token_ttl = tonumber(o.token_ttl)
    if not o.token_ttl or o.token_ttl <= 0 then return nil, "token_ttl must be a positive number of seconds" end
    if type(o.client_id) ~= "string" or o.client_id == "" then return nil, "client_id must be a non-empty string" end
    if type(o.client_secret) ~= "string" or o.client_secret == "" then
        return nil, "client_secret must be a non-empty string"
    end
    o.workers = tonumber(o.workers)
    if not o.workers or o.workers < 1 or o.workers % 1 ~= 0 then return nil, "workers must be a positive integer" end
    if o.limits ~= nil and type(o.limits) ~= "table" then return nil, "limits must be a table" end
    return o
end

local function make_prefix()
    local base = os.getenv("TMPDIR")
    if not base or base == "" then base = "/tmp" end
    local out = capture("mktemp -d " .. shell_quote(base .. "/choco-ao-emulator.XXXXXXXX") .. " 2>/dev/null")
    local prefix = out and out:match("^(%S+)")
    if not prefix then return nil, "cannot create a temporary directory under " .. base end
    for _, sub in ipairs { "conf", "logs", "tmp", "tls" } do
        if not run("mkdir -p " .. shell_quote(prefix .. "/" .. sub)) then
            return nil, "cannot create " .. prefix .. "/" .. sub
        end
    end
    -- nginx workers may run as nobody when we are not root: let them read it
    run("chmod 755 " .. shell_quote(prefix))
    return prefix
end

-- A throwaway CA and a server certificate for 127.0.0.1 and localhost, made with
-- the openssl command (EC P-256 keys: fast to generate).
local function make_certificates(dir)
    local q = shell_quote
    local ext = dir .. "/server.ext"
    local ok = write_file(ext, table.concat({
        "basicConstraints = critical, CA:FALSE",
        "keyUsage = critical, digitalSignature, keyEncipherment",
        "extendedKeyUsage = serverAuth",
        "subjectAltName = IP:127.0.0.1, DNS:localhost",
        "",
    }, "\n"))
    if not ok then return nil, "cannot write " .. ext end
    local log = q(dir .. "/openssl.log")
    local cmds = {
        "openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
            .. " -subj '/CN=choco-active-order emulator CA'"
            .. " -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign'"
            .. " -keyout " .. q(dir .. "/ca.key") .. " -out " .. q(dir .. "/ca.pem"),
        "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj '/CN=localhost'"
            .. " -keyout " .. q(dir .. "/server.key") .. " -out " .. q(dir .. "/server.csr"),
        "openssl x509 -req -days 2 -in " .. q(dir .. "/server.csr") .. " -CA " .. q(dir .. "/ca.pem")
            .. " -CAkey " .. q(dir .. "/ca.key") .. " -CAcreateserial -extfile " .. q(ext)
            .. " -out " .. q(dir .. "/server.pem"),
    }
    for _, cmd in ipairs(cmds) do
        if not run(cmd .. " >>" .. log .. " 2>&1") then
            return nil, "openssl failed: " .. tail(dir .. "/openssl.log", 5)
        end
    end
    return { ca = dir .. "/ca.pem", cert = dir .. "/server.pem", key = dir .. "/server.key" }
end

local function nginx_conf(o, prefix, port, root, tls)
    local lines = {}
    local function add(s) lines[#lines + 1] = s end
    local modules = o.nginx_modules or NGINX_MODULES
    for _, m in ipairs { "ndk_http_module.so", "ngx_http_lua_module.so" } do
        if file_exists(modules .. "/" .. m) then add("load_module " .. modules .. "/" .. m .. ";") end
    end
    local euid = (capture("id -u 2>/dev/null") or ""):match("%d+")
    if euid == "0" then add("user root;") end
    add("daemon off;")
    add("master_process on;")
    add("worker_processes " .. o.workers .. ";")
    add("error_log " .. prefix .. "/logs/error.log warn;")
    add("pid " .. prefix .. "/logs/nginx.pid;")
    add("events { worker_connections 4096; }")
    add("http {")
    add("    access_log off;")
    for _, t in ipairs { "client_body", "proxy", "fastcgi", "uwsgi", "scgi" } do
        add("    " .. t .. "_temp_path " .. prefix .. "/tmp/" .. t .. ";")
    end
    -- the handler answers oversized bodies itself (with an envelope), so nginx's
    -- own cap sits above the emulator's limit and the whole body stays in memory
    add("    client_max_body_size 16m;")
    add("    client_body_buffer_size 16m;")
    add("    keepalive_requests 1000000;")
    add("    keepalive_timeout 75s;")
    add("    server_tokens off;")
    add("    lua_package_path '" .. root .. "/?.lua;" .. root .. "/?/init.lua;"
        .. (o.lua_path and (o.lua_path .. ";") or "") .. SYSTEM_LUA_PATH .. ";;';")
    add("    lua_package_cpath '" .. (o.lua_cpath and (o.lua_cpath .. ";") or "") .. SYSTEM_LUA_CPATH .. ";;';")
    add("    lua_shared_dict ao_emulator_meta 4m;")
    add("    lua_shared_dict ao_emulator_tokens 16m;")
    add("    lua_shared_dict ao_emulator_orders " .. (o.state_mb or 128) .. "m;")
    add("    init_by_lua_block { require('choco.active_order.emulator').init('" .. prefix .. "/conf/emulator.json') }")
    add("    init_worker_by_lua_block { require('choco.active_order.emulator').init_worker() }")
    add("    server {")
    if tls then
        add("        listen 127.0.0.1:" .. port .. " ssl;")
        add("        ssl_certificate " .. tls.cert .. ";")
        add("        ssl_certificate_key " .. tls.key .. ";")
        add("        ssl_protocols TLSv1.2 TLSv1.3;")
    else
        add("        listen 127.0.0.1:" .. port .. ";")
    end
    add("        server_name localhost;")
    -- errors nginx makes itself (a malformed request, a body over its cap) still
    -- get the contract's envelope
    add("        error_page 400 404 405 411 413 414 494 500 502 503 504 = /_emulator/nginx-error;")
    add("        location / {")
    add("            content_by_lua_block { require('choco.active_order.emulator').handle() }")
    add("        }")
    add("    }")
    add("}")
    add("")
    return table.concat(lines, "\n")
end

-- Run by io.popen itself (no nested sh), so that $PPID is the Lua process the
-- watchdog watches. Its stderr must not hold the caller's stderr open: a caller
-- that reads our output through a pipe would otherwise wait for nginx to end.
local WRAPPER = [[
exec 2>/dev/null </dev/null
unset LD_PRELOAD
PARENT=$PPID
P=%s
%s -p "$P/" -c conf/nginx.conf -e logs/error.log </dev/null >>"$P/logs/nginx.stdio.log" 2>&1 &
NPID=$!
echo "$NPID"
exec >/dev/null 2>&1 </dev/null
trap 'kill -TERM $NPID 2>/dev/null' INT TERM HUP
( while kill -0 $PARENT 2>/dev/null && kill -0 $NPID 2>/dev/null; do sleep 0.2; done
  kill -TERM $NPID 2>/dev/null ) &
WPID=$!
wait $NPID
while kill -0 $NPID 2>/dev/null; do wait $NPID; done
wait $WPID
%s
]]

local Emulator = {}
Emulator.__index = Emulator

--- Stop nginx (TERM, then KILL if it lingers), reap the wrapper, remove the prefix.
--- Idempotent.
function Emulator:stop()
    if self.stopped then return true end
    self.stopped = true
    run("kill -TERM " .. self.pid .. " 2>/dev/null")
    local deadline = socket.gettime() + STOP_TIMEOUT
    while process_alive(self.pid) and socket.gettime() < deadline do socket.sleep(0.02) end
    if process_alive(self.pid) then run("kill -KILL " .. self.pid .. " 2>/dev/null") end
    if self.wrapper then
        self.wrapper:close()
        self.wrapper = nil
    end
    if not self.keep_prefix then run("rm -rf " .. shell_quote(self.prefix)) end
    return true
end

--- The last lines of nginx's error log (for diagnostics).
function Emulator:error_log_tail(lines)
    return tail(self.error_log, lines)
end

local function spawn(o, prefix, port, tls, root)
    local conf = nginx_conf(o, prefix, port, root, tls)
    assert(write_file(prefix .. "/conf/nginx.conf", conf))
    local script = WRAPPER:format(shell_quote(prefix), shell_quote(o.nginx or os.getenv("AO_NGINX") or NGINX),
        o.keep_prefix and ":" or 'if [ -e "$P/logs/started" ]; then rm -rf "$P"; fi')
    local wrapper = io.popen(script, "r")
    if not wrapper then return nil, "cannot run sh" end
    local pid = tonumber((wrapper:read("*l") or ""):match("%d+"))
    if not pid then
        wrapper:close()
        return nil, "nginx did not start"
    end
    -- nginx writes its pid file only once it holds its listening socket, so a
    -- connection that succeeds before that goes to someone else on the port
    local pid_file = prefix .. "/logs/nginx.pid"
    local deadline = socket.gettime() + READY_TIMEOUT
    while socket.gettime() < deadline do
        if not process_alive(pid) then break end
        if tonumber((read_file(pid_file) or ""):match("%d+")) == pid and accepts(port) then
            -- from now on the wrapper removes the prefix when nginx ends; before,
            -- the logs stay for the error message below
            write_file(prefix .. "/logs/started", "")
            return setmetatable({ pid = pid, wrapper = wrapper }, Emulator)
        end
        socket.sleep(0.02)
    end
    if process_alive(pid) then run("kill -KILL " .. pid .. " 2>/dev/null") end
    wrapper:close()
    os.remove(pid_file)
    -- nginx reports what stops it early on stderr, later in its error log
    local log = tail(prefix .. "/logs/error.log", 15)
    local stdio = read_file(prefix .. "/logs/nginx.stdio.log")
    if stdio and stdio:find("%S") then log = log .. "\n" .. tail(prefix .. "/logs/nginx.stdio.log", 10) end
    return nil, "nginx did not start on 127.0.0.1:" .. port .. "; error log:\n" .. log
end

--- Start an emulator. opts: port (0 = a free one), statuses, token_ttl, tls,
--- client_id, client_secret, utc_offset, limits, workers, state_mb, nginx,
--- nginx_modules, lua_path, lua_cpath, keep_prefix.
--- Returns a handle { url, port, ca_file, prefix, pid, error_log, stop = function }
--- or nil, message.
function launcher.start(opts)
    local o, err = check_options(opts)
    if not o then return nil, err end
    local root = lua_root()
    if not root then return nil, "cannot find the emulator's Lua modules" end
    local prefix
    prefix, err = make_prefix()
    if not prefix then return nil, err end
    local tls
    if o.tls then
        tls, err = make_certificates(prefix .. "/tls")
        if not tls then
            run("rm -rf " .. shell_quote(prefix))
            return nil, err
        end
    end
    local config = {
        client_id = o.client_id,
        client_secret = o.client_secret,
        statuses = o.statuses,
        token_ttl = o.token_ttl,
        utc_offset = o.utc_offset,
        limits = o.limits,
    }
    assert(write_file(prefix .. "/conf/emulator.json", cjson.encode(config)))

    -- a port picked as free can be taken by someone else before nginx binds it
    local attempts = o.port == 0 and 3 or 1
    local emu, port
    for _ = 1, attempts do
        port = o.port ~= 0 and o.port or free_port()
        emu, err = spawn(o, prefix, port, tls, root)
        if emu or not tostring(err):find("in use", 1, true) then break end
    end
    if not emu then
        run("rm -rf " .. shell_quote(prefix))
        return nil, err
    end
    emu.port = port
    emu.prefix = prefix
    emu.keep_prefix = o.keep_prefix
    emu.error_log = prefix .. "/logs/error.log"
    emu.url = (tls and "https" or "http") .. "://127.0.0.1:" .. port
    emu.ca_file = tls and tls.ca or nil
    emu.client_id, emu.client_secret = o.client_id, o.client_secret
    return emu
end

local USAGE = [[
Usage: choco-active-order emulator [options]

Runs the Choco gateway emulator (nginx + Lua) on 127.0.0.1 until Ctrl-C.
Prints the base URL on the first line of stdout (and, with --tls, the CA
file to trust on the second).

Options:
  --port N               port to listen on (default 0: a free port)
  --statuses a,b,c       registered external statuses
                         (default created,paid,cooking,delivering,delivered,cancelled)
  --token-ttl SECONDS    token lifetime (default 10800)
  --tls                  serve HTTPS with a throwaway CA made at start-up
  --client-id ID         accepted client_id (default test-client)
  --client-secret SECRET accepted client_secret (default test-secret)
  --workers N            nginx worker processes (default 1)
  --help                 this text

Control API: GET <url>/_emulator/state, GET <url>/_emulator/orders/<id>,
POST <url>/_emulator/faults, POST <url>/_emulator/tokens/revoke,
POST <url>/_emulator/reset (see the README).
]]

local function parse_args(argv)
    local opts = {}
    local i = 1
    local function value(name)
        i = i + 1
        local v = argv[i]
        if v == nil then error(name .. " needs a value", 0) end
        return v
    end
    while argv[i] ~= nil do
        local a = argv[i]
        local name, inline = a:match("^(%-%-[%w-]+)=(.*)$")
        if name then
            a = name
            table.insert(argv, i + 1, inline)
        end
        if a == "--help" or a == "-h" then
            opts.help = true
        elseif a == "--port" then
            local v = value(a)
            opts.port = tonumber(v)
            if not opts.port or opts.port % 1 ~= 0 or opts.port < 0 or opts.port > 65535 then
                error("--port must be an integer between 0 and 65535", 0)
            end
        elseif a == "--statuses" then
            local list = {}
            for s in value(a):gmatch("[^,]+") do
                s = s:match("^%s*(.-)%s*$")
                if s ~= "" then list[#list + 1] = s end
            end
            if #list == 0 then error("--statuses needs at least one status", 0) end
            opts.statuses = list
        elseif a == "--token-ttl" then
            opts.token_ttl = tonumber(value(a))
            if not opts.token_ttl or opts.token_ttl <= 0 then error("--token-ttl must be a positive number", 0) end
        elseif a == "--tls" then
            opts.tls = true
        elseif a == "--client-id" then
            opts.client_id = value(a)
        elseif a == "--client-secret" then
            opts.client_secret = value(a)
        elseif a == "--workers" then
            opts.workers = tonumber(value(a))
            if not opts.workers or opts.workers < 1 or opts.workers % 1 ~= 0 then
                error("--workers must be a positive integer", 0)
            end
        else
            error("unknown option " .. a, 0)
        end
        i = i + 1
    end
    return opts
end

--- The `emulator` command: start, print the URL, wait for Ctrl-C/SIGTERM, clean up.
--- Returns the process exit code.
function launcher.main(argv)
    local args = {}
    for i = 1, #(argv or {}) do args[i] = argv[i] end
    local ok, opts = pcall(parse_args, args)
    if not ok then
        io.stderr:write("choco-active-order emulator: ", tostring(opts), "\n", USAGE)
        return 2
    end
    if opts.help then
        io.stdout:write(USAGE)
        return 0
    end
    local emu, err = launcher.start(opts)
    if not emu then
        io.stderr:write("choco-active-order emulator: ", err, "\n")
        return 1
    end
    io.stderr:write("gateway emulator on ", emu.url, " (nginx pid ", emu.pid, ", files in ", emu.prefix,
        "); state at ", emu.url, "/_emulator/state; Ctrl-C stops it\n")
    io.stderr:flush()
    -- os.execute ignores SIGINT in this process while the shell runs: the shell
    -- (and nginx, in the same process group) receive it and we clean up after.
    -- The shell prints the URL once its trap is set, so a Ctrl-C that follows
    -- the URL can never land in this process before the shell exists.
    io.stdout:flush()
    local wait = "trap 'exit 0' INT TERM HUP; printf '%s\\n' " .. shell_quote(emu.url)
        .. (emu.ca_file and (" " .. shell_quote(emu.ca_file)) or "")
        .. "; while kill -0 " .. emu.pid .. " 2>/dev/null; do sleep 1 & wait $!; done; exit 3"
    local signalled = run(wait)
    emu:stop()
    if not signalled then
        io.stderr:write("choco-active-order emulator: nginx stopped on its own\n")
        return 1
    end
    return 0
end

-- Runnable as a script: lua path/to/launcher.lua --port 0
if select("#", ...) == 0 or (...) ~= "choco.active_order.emulator.launcher" then
    if type(arg) == "table" and type(arg[0]) == "string" and arg[0]:find("launcher%.lua$") then
        os.exit(launcher.main(arg))
    end
end

return launcher
