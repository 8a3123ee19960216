-- Starting and stopping the emulator: a fresh prefix, a free or given port,
-- TLS with a throwaway CA, the `emulator` command's signals, and no server left
-- behind when the process that started it dies.

local launcher = require "choco.active_order.emulator.launcher"
local emulator = require "spec.support.emulator"
local socket = require "socket"
local q = require("spec.support.process").quote

local LUA = os.getenv("AO_LUA") or "lua5.4"
local ROOT = os.getenv("AO_ROOT") or "."
local SCRIPT = ROOT .. "/lua/choco/active_order/emulator/launcher.lua"

-- output and exit status of a shell command (Lua 5.1's close() gives no status)
local function sh(cmd)
    -- no sanitizer runtime in the tools (the ASan pass preloads it into busted)
    local p = assert(io.popen("unset LD_PRELOAD; { " .. cmd .. "; } 2>&1; echo \"<exit $?>\""))
    local out = p:read("*a")
    p:close()
    local text, code = out:match("^(.*)<exit (%d+)>%s*$")
    return text, tonumber(code)
end

local function exists(path)
    local f = io.open(path, "rb")
    if f then f:close() return true end
    return os.rename(path, path) ~= nil
end

local function alive(pid)
    local f = io.open("/proc/" .. pid .. "/stat")
    if not f then return false end
    local stat = f:read("*a")
    f:close()
    -- the process can be reaped between the open and the read, which then fails
    if not stat then return false end
    local state = stat:match("^%d+ %b() (%a)")
    return state ~= "Z" and state ~= "X"
end

local function eventually(check, seconds)
    local deadline = socket.gettime() + (seconds or 5)
    repeat
        if check() then return true end
        socket.sleep(0.05)
    until socket.gettime() > deadline
    return check()
end

local function read_all(path)
    local f = io.open(path, "rb")
    if not f then return "" end
    local s = f:read("*a")
    f:close()
    return s
end

local function accepts(port)
    local c = socket.tcp()
    c:settimeout(0.5)
    local ok = c:connect("127.0.0.1", port)
    c:close()
    return ok ~= nil
end

describe("gateway emulator launcher", function()
    it("starts nginx in a fresh prefix on a free port and removes everything on stop", function()
        local emu = assert(launcher.start {})
        local ok, err = pcall(function()
            assert.matches("^http://127%.0%.0%.1:%d+$", emu.url)
            assert.are.equal("http://127.0.0.1:" .. emu.port, emu.url)
            assert.is_true(emu.port > 0)
            assert.is_true(alive(emu.pid))
            assert.is_true(exists(emu.prefix .. "/conf/nginx.conf"))
            assert.is_nil(emu.ca_file)
            local conf = read_all(emu.prefix .. "/conf/nginx.conf")
            assert.is_truthy(conf:find("listen 127.0.0.1:" .. emu.port .. ";", 1, true))
            assert.is_truthy(conf:find("daemon off;", 1, true))
        end)
        assert.is_true(emu:stop())
        assert(ok, err)
        assert.is_false(alive(emu.pid))
        assert.is_false(exists(emu.prefix))
        assert.is_false(accepts(emu.port))
        assert.is_true(emu:stop())   -- idempotent
    end)

    it("listens on the port it is given, and says so when the port is taken", function()
        local server = assert(socket.bind("127.0.0.1", 0))
        local _, port = server:getsockname()
        server:close()
        local emu = assert(launcher.start { port = tonumber(port) })
        local ok, err = pcall(function()
            assert.are.equal(tonumber(port), emu.port)
            assert.are.equal("http://127.0.0.1:" .. port, emu.url)
            local second, why = launcher.start { port = tonumber(port) }
            assert.is_nil(second)
            assert.is_truthy(why:find("in use", 1, true), why)
        end)
        emu:stop()
        assert(ok, err)
    end)

    it("refuses bad options without starting anything", function()
        for _, opts in ipairs {
            { port = 70000 }, { port = -1 }, { port = 1.5 }, { statuses = {} }, { statuses = { "a", 3 } },
            { token_ttl = 0 }, { token_ttl = "soon" }, { client_id = "" }, { client_secret = 5 },
            { workers = 0 }, { limits = "none" },
        } do
            local emu, err = launcher.start(opts)
            assert.is_nil(emu)
            assert.is_string(err)
        end
    end)

    it("reports nginx's own error when it cannot start", function()
        local emu, err = launcher.start { nginx_modules = "/nonexistent", nginx = "/usr/sbin/nginx" }
        if emu then emu:stop() end
        assert.is_nil(emu)
        assert.is_truthy(err:find("did not start", 1, true), err)
        assert.is_truthy(err:find("content_by_lua_block", 1, true) or err:find("unknown directive", 1, true), err)
    end)

    describe("with TLS", function()
        local emu

        setup(function()
            emu = emulator.start { tls = true }
        end)

        teardown(function()
            if emu then emu:stop() end
        end)

        it("serves HTTPS that verifies against the CA file it made, for 127.0.0.1 and localhost", function()
            assert.matches("^https://127%.0%.0%.1:%d+$", emu.url)
            assert.is_true(exists(emu.ca_file))
            local out, code = sh("curl -sS --max-time 5 --cacert " .. q(emu.ca_file) .. " "
                .. emu.url .. "/_emulator/state")
            assert.are.equal(0, code, out)
            assert.is_truthy(out:find('"tokens_issued"', 1, true))
            out, code = sh("curl -sS --max-time 5 --cacert " .. q(emu.ca_file)
                .. " https://localhost:" .. emu.port .. "/_emulator/state")
            assert.are.equal(0, code, out)
        end)

        it("fails verification without the CA file", function()
            local out, code = sh("curl -sS --max-time 5 --cacert /dev/null " .. emu.url
                .. "/_emulator/state")
            assert.are_not.equal(0, code, out)
            out, code = sh("curl -sS --max-time 5 " .. emu.url .. "/_emulator/state")
            assert.are_not.equal(0, code, out)
            assert.is_truthy(out:lower():find("certificate", 1, true), out)
        end)

        it("refuses plain HTTP on the TLS port", function()
            local out = sh("curl -s --max-time 5 http://127.0.0.1:" .. emu.port
                .. "/_emulator/state")
            assert.is_nil(out:find('"tokens_issued"', 1, true))
        end)

        it("serves the contract over TLS (LuaSec client)", function()
            local token = emu:token()
            local status = emu:put(require("cjson").encode(emulator.example()), "application/json", token)
            assert.are.equal(200, status)
            assert.are.equal(1, emu:state().accepted)
            assert.are.same({}, emu:lua_errors())
        end)
    end)

    describe("the emulator command", function()
        local function run_command(args)
            local out, err, code = os.tmpname(), os.tmpname(), os.tmpname()
            -- setsid: its own process group, so a signal to the group is what Ctrl-C
            -- does; the shell around it (which survives SIGINT) records the exit code
            local inner = "trap true INT; " .. LUA .. " " .. q(SCRIPT) .. " " .. args .. "; echo $? >" .. q(code)
            local pid = sh("setsid sh -c " .. q(inner) .. " >" .. q(out) .. " 2>" .. q(err)
                .. " </dev/null & echo $!"):match("%d+")
            assert.is_truthy(eventually(function() return read_all(out):find("\n", 1, true) end, 8),
                "no URL printed: " .. read_all(err))
            local stderr = read_all(err)
            return {
                pid = pid, out = out, err = err, code = code,
                lines = (function()
                    local l = {}
                    for line in read_all(out):gmatch("[^\n]+") do l[#l + 1] = line end
                    return l
                end)(),
                nginx_pid = stderr:match("nginx pid (%d+)"),
                prefix = stderr:match("files in (%S+)%)"),
            }
        end

        -- After a signal: nginx gone, its prefix removed; then our capture files go too.
        local function assert_stopped_and_removed(run)
            assert.is_true(eventually(function() return not alive(run.nginx_pid) end, 5))
            assert.is_true(eventually(function() return not exists(run.prefix) end, 5))
            os.remove(run.out)
            os.remove(run.err)
            os.remove(run.code)
        end

        it("prints usage for --help and refuses unknown options", function()
            local out, code = sh(LUA .. " " .. q(SCRIPT) .. " --help")
            assert.are.equal(0, code)
            assert.is_truthy(out:find("--token-ttl", 1, true))
            out, code = sh(LUA .. " " .. q(SCRIPT) .. " --bogus")
            assert.are.equal(2, code)
            assert.is_truthy(out:find("unknown option --bogus", 1, true))
            out, code = sh(LUA .. " " .. q(SCRIPT) .. " --port")
            assert.are.equal(2, code)
            assert.is_truthy(out:find("needs a value", 1, true))
        end)

        it("runs until Ctrl-C (SIGINT to its process group), then stops nginx and removes its files", function()
            local run = run_command("--statuses new,done --token-ttl 60 --client-id cli --client-secret cli-s")
            local ok, err = pcall(function()
                assert.matches("^http://127%.0%.0%.1:%d+$", run.lines[1])
                assert.is_truthy(alive(run.nginx_pid))
                assert.is_true(exists(run.prefix))
                local out = sh("curl -s --max-time 5 " .. run.lines[1] .. "/_emulator/config")
                assert.is_truthy(out:find('"statuses":["new","done"]', 1, true), out)
                assert.is_truthy(out:find('"token_ttl":60', 1, true), out)
                assert.is_truthy(out:find('"client_id":"cli"', 1, true), out)
            end)
            sh("/bin/kill -INT -- -" .. run.pid)
            assert.is_true(eventually(function() return read_all(run.code):find("%d") end, 8))
            assert.are.equal("0", read_all(run.code):match("%d+"))
            assert_stopped_and_removed(run)
            assert(ok, err)
        end)

        it("with --tls prints the CA file on the second line", function()
            local run = run_command("--tls")
            local ok, err = pcall(function()
                assert.matches("^https://127%.0%.0%.1:%d+$", run.lines[1])
                assert.is_true(exists(run.lines[2]))
                local out, code = sh("curl -sS --max-time 5 --cacert " .. q(run.lines[2]) .. " "
                    .. run.lines[1] .. "/_emulator/state")
                assert.are.equal(0, code, out)
            end)
            sh("/bin/kill -TERM -- -" .. run.pid)
            assert_stopped_and_removed(run)
            assert(ok, err)
        end)

        it("exits 1 when nginx stops on its own", function()
            local run = run_command("")
            sh("kill -TERM " .. run.nginx_pid)
            assert.is_true(eventually(function() return read_all(run.code):find("%d") end, 8))
            assert.are.equal("1", read_all(run.code):match("%d+"))
            assert.is_truthy(read_all(run.err):find("stopped on its own", 1, true))
            assert.is_true(eventually(function() return not exists(run.prefix) end, 5))
            os.remove(run.out)
            os.remove(run.err)
            os.remove(run.code)
        end)
    end)

    it("stops nginx and removes the prefix when the process that started it dies", function()
        local code = "package.path = " .. string.format("%q", package.path) .. "\n"
            .. "local emu = assert(require('choco.active_order.emulator.launcher').start{})\n"
            .. "io.write(emu.pid, ' ', emu.prefix, '\\n') io.flush()\n"
            .. "os.exit(0)\n"
        local out = sh(LUA .. " -e " .. q(code))
        local pid, prefix = out:match("^(%d+) (%S+)")
        assert.is_truthy(pid, out)
        assert.is_true(eventually(function() return not alive(pid) end, 5), "nginx " .. pid .. " still running")
        assert.is_true(eventually(function() return not exists(prefix) end, 5), prefix .. " still there")
    end)
end)
