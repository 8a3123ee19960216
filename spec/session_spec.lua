-- The C session (core.session): one libcurl easy handle per userdata, against a
-- real nginx on 127.0.0.1 (plain and TLS with a throwaway self-signed certificate)
-- whose Lua handlers echo what they received or misbehave on purpose.

local core = require "choco.active_order.core"
local emulator = require "spec.support.emulator"
local socket = require "socket"
local process = require "spec.support.process"
local sh, read_file, write_file, free_port = process.run, process.read, process.write, process.free_port

local NGINX = "/usr/sbin/nginx"
-- A request's whole-transfer limit: under valgrind a TLS handshake alone can take seconds.
local TIMEOUT_MS = os.getenv("AO_SANITIZED") and 30000 or 5000
-- A TLS handshake (the system CA bundle read and parsed included) counts as
-- connecting, and takes seconds under valgrind.
local TLS_CONNECT_MS = os.getenv("AO_SANITIZED") and 30000 or 1000
local MODULES = "/usr/lib/nginx/modules"





local HANDLERS = [[
        location = /echo {
            client_max_body_size 4m;
            client_body_buffer_size 4m;
            content_by_lua_block {
                ngx.req.read_body()
                local body = ngx.req.get_body_data() or ""
                local h = ngx.req.get_headers()
                ngx.header["Content-Type"] = "text/plain; charset=utf-8"
                ngx.print("method=", ngx.req.get_method(), "\nexpect=", tostring(h["expect"]),
                          "\nlength=", #body, "\nconnection=", ngx.var.connection,
                          "\nx-test=", tostring(h["x-test"]), "\nuser-agent=", type(h["user-agent"]) == "table"
                              and table.concat(h["user-agent"], "|") or tostring(h["user-agent"]),
                          "\nbody=", body:sub(1, 64), "\n")
            }
        }
        location = /slow {
            content_by_lua_block { ngx.sleep(tonumber(ngx.var.arg_ms) / 1000) ngx.print("late") }
        }
        location = /big {
            content_by_lua_block {
                if ngx.var.arg_length then ngx.header["Content-Length"] = ngx.var.arg_bytes end
                ngx.print(string.rep("x", tonumber(ngx.var.arg_bytes)))
            }
        }
        location = /busy-twice {
            content_by_lua_block {
                ngx.status = 429
                ngx.header["Retry-After"] = { "5", "  Sun, 06 Nov 1994 08:49:37 GMT  " }
                ngx.print("slow down")
            }
        }
        location = /busy-long {
            content_by_lua_block {
                ngx.status = 503
                ngx.header["Retry-After"] = string.rep("9", 200)
                ngx.print("later")
            }
        }
        location = /busy {
            content_by_lua_block {
                ngx.status = 503
                ngx.header["Retry-After"] = "3"
                ngx.header["Content-Type"] = "application/json"
                ngx.print('{"busy":true}')
            }
        }
        location = /close { return 444; }
        location = /redirect { return 302 /echo; }
]]

-- A throwaway nginx in a temporary prefix; stopped by its pid.
local function start_nginx()
    local prefix = assert(io.popen("mktemp -d /tmp/ao-session-spec.XXXXXX")):read("*l")
    local port, tls_port = free_port(), free_port()
    assert(sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1"
        .. " -addext subjectAltName=IP:127.0.0.1 -keyout " .. prefix .. "/key.pem -out "
        .. prefix .. "/cert.pem >/dev/null 2>&1"))
    sh("chmod 755 " .. prefix)
    local is_root = (assert(io.popen("id -u")):read("*l")) == "0"
    write_file(prefix .. "/nginx.conf", table.concat({
        is_root and "user root;" or "",
        "load_module " .. MODULES .. "/ndk_http_module.so;",
        "load_module " .. MODULES .. "/ngx_http_lua_module.so;",
        "worker_processes 1;",
        "pid " .. prefix .. "/nginx.pid;",
        "error_log " .. prefix .. "/error.log warn;",
        "events { worker_connections 256; }",
        "http {",
        "    access_log off;",
        "    lua_package_path '/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua;;';",
        "    keepalive_requests 100000;",
        "    keepalive_timeout 60s;",
        "    server {",
        "        listen 127.0.0.1:" .. port .. ";",
        "        listen 127.0.0.1:" .. tls_port .. " ssl;",
        "        ssl_certificate " .. prefix .. "/cert.pem;",
        "        ssl_certificate_key " .. prefix .. "/key.pem;",
        HANDLERS,
        "    }",
        "}",
    }, "\n"))
    assert(sh(NGINX .. " -p " .. prefix .. " -c " .. prefix .. "/nginx.conf -g 'daemon off;' >"
        .. prefix .. "/stdout.log 2>&1 &"))
    local server = { prefix = prefix, port = port, tls_port = tls_port, ca_file = prefix .. "/cert.pem",
                     url = "http://127.0.0.1:" .. port, tls_url = "https://127.0.0.1:" .. tls_port }
    for _ = 1, 100 do
        server.pid = (read_file(prefix .. "/nginx.pid") or ""):match("%d+")
        local c = socket.tcp()
        c:settimeout(0.1)
        local up = c:connect("127.0.0.1", port)
        c:close()
        if server.pid and up then return server end
        socket.sleep(0.05)
    end
    error("nginx did not start: " .. tostring(read_file(prefix .. "/error.log"))
        .. tostring(read_file(prefix .. "/stdout.log")))
end

local function stop_nginx(server)
    if server.pid then
        sh("kill -QUIT " .. server.pid .. " 2>/dev/null")
        for _ = 1, 100 do
            if not read_file("/proc/" .. server.pid .. "/stat") then break end
            socket.sleep(0.05)
        end
        sh("kill -KILL " .. server.pid .. " 2>/dev/null")
    end
    sh("rm -rf " .. server.prefix)
end

local function echoed(res)
    local fields = {}
    for k, v in res.body:gmatch("([%w%-]+)=([^\n]*)") do fields[k] = v end
    return fields
end

describe("core.session", function()
    local server

    setup(function()
        server = start_nginx()
    end)

    teardown(function()
        if server then stop_nginx(server) end
    end)

    it("sends a PUT with its body and headers and returns the response", function()
        local s = core.session { user_agent = "ao-spec/1" }
        local res, err = s:request("PUT", server.url .. "/echo", { "X-Test: yes", "Content-Type: application/json" },
                                   '{"a":1}', TIMEOUT_MS, 1000)
        assert.is_nil(err)
        assert.equal(200, res.status)
        assert.equal("text/plain; charset=utf-8", res.content_type)
        assert.is_nil(res.retry_after)
        assert.equal(1, res.new_connections)
        local seen = echoed(res)
        assert.equal("PUT", seen.method)
        assert.equal("7", seen.length)
        assert.equal("yes", seen["x-test"])
        assert.equal("ao-spec/1", seen["user-agent"])
        -- the caller's own User-Agent replaces the session's, and only for that request
        res = assert(s:request("GET", server.url .. "/echo", { "user-agent: mine/1" }, nil, TIMEOUT_MS, 1000))
        assert.equal("mine/1", echoed(res)["user-agent"])
        res = assert(s:request("GET", server.url .. "/echo", {}, nil, TIMEOUT_MS, 1000))
        assert.equal("ao-spec/1", echoed(res)["user-agent"])
        for _, name in ipairs { "time_namelookup", "time_connect", "time_appconnect", "time_pretransfer",
                                "time_starttransfer", "time_total" } do
            assert.is_number(res[name])
            assert.is_true(res[name] >= 0 and res[name] < 5, name)
        end
        assert.is_true(res.time_total >= res.time_connect)
        s:close()
    end)

    describe("proxy from the environment", function()
        local PROXY_VARS = { "http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                             "no_proxy", "NO_PROXY" }
        -- A fresh interpreter (the environment is read when a session is made)
        -- asks for a port nothing listens on; through a proxy (the spec's nginx,
        -- which serves an absolute-form request like any other) it is answered.
        local function fetch_through(env, session_opts)
            local script = process.tmpname()
            write_file(script, ([[
local core = require "choco.active_order.core"
local s = core.session(%s)
local res, err = s:request("GET", "http://127.0.0.1:%d/echo", {}, nil, %d, 1000)
io.write(res and ("status=" .. res.status .. "\n" .. res.body) or ("error=" .. err.code))
]]):format(session_opts, free_port(), TIMEOUT_MS))
            local unset = {}
            for _, name in ipairs(PROXY_VARS) do unset[#unset + 1] = "-u " .. name end
            local p = assert(io.popen("env " .. table.concat(unset, " ") .. " " .. env .. " "
                .. process.quote(os.getenv("AO_LUA") or "lua5.4") .. " " .. process.quote(script) .. " 2>&1"))
            local out = p:read("*a")
            p:close()
            os.remove(script)
            return out
        end

        it("goes through http_proxy or all_proxy when one is set", function()
            for _, name in ipairs { "http_proxy", "all_proxy", "ALL_PROXY" } do
                local out = fetch_through(name .. "=" .. process.quote(server.url), "{}")
                assert.matches("^status=200\n", out, name)
                assert.matches("method=GET", out, name)
            end
        end)

        it("sends the User-Agent once through a plain proxy", function()
            local out = fetch_through("http_proxy=" .. process.quote(server.url), '{ user_agent = "ao-spec/2" }')
            assert.matches("^status=200\n", out)
            assert.matches("\nuser%-agent=ao%-spec/2\n", out)
        end)

        it("tells a tunnelling proxy the User-Agent, and none of the request's own headers", function()
            local listener = assert(socket.bind("127.0.0.1", 0))
            local _, port = listener:getsockname()
            listener:settimeout(TIMEOUT_MS / 1000)
            local script = process.tmpname()
            write_file(script, ([[
local core = require "choco.active_order.core"
local s = core.session { proxy = "http://127.0.0.1:%d", user_agent = "ao-spec/3" }
local res, err = s:request("GET", "https://127.0.0.1:1/", { "Authorization: Bearer not-for-the-proxy" }, nil, %d, 1000)
io.write(res and ("status=" .. res.status) or ("error=" .. err.code))
]]):format(port, TIMEOUT_MS))
            local p = assert(io.popen(process.quote(os.getenv("AO_LUA") or "lua5.4") .. " " .. process.quote(script)
                .. " 2>&1"))
            local conn = assert(listener:accept())
            conn:settimeout(TIMEOUT_MS / 1000)
            local lines = {}
            repeat
                local line = assert(conn:receive("*l"))
                lines[#lines + 1] = line
            until line == ""
            conn:send("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            conn:close()
            listener:close()
            local out = p:read("*a")
            p:close()
            os.remove(script)
            assert.matches("^error=", out)
            assert.equal("CONNECT 127.0.0.1:1 HTTP/1.1", lines[1])
            local agents = {}
            for _, line in ipairs(lines) do
                assert.is_nil(line:lower():find("^authorization"), line)
                if line:lower():find("^user%-agent:") then agents[#agents + 1] = line end
            end
            assert.same({ "User-Agent: ao-spec/3" }, agents)
        end)

        it("goes straight to the server when no proxy variable is set", function()
            assert.equal("error=COULDNT_CONNECT", fetch_through("", "{}"))
        end)

        it("ignores HTTP_PROXY, as libcurl does, and the environment when proxy = \"\"", function()
            assert.equal("error=COULDNT_CONNECT", fetch_through("HTTP_PROXY=" .. process.quote(server.url), "{}"))
            assert.equal("error=COULDNT_CONNECT",
                fetch_through("http_proxy=" .. process.quote(server.url), '{ proxy = "" }'))
        end)
    end)

    it("switches methods on the same handle: GET, POST, HEAD, DELETE, PUT", function()
        local s = core.session()
        local function method_of(method, body)
            local res = assert(s:request(method, server.url .. "/echo", nil, body, TIMEOUT_MS, 1000))
            assert.equal(200, res.status)
            return method == "HEAD" and res.body or echoed(res).method, res
        end
        assert.equal("GET", method_of("GET"))
        assert.equal("POST", method_of("POST", "x=1"))
        local head_body = method_of("HEAD")
        assert.equal("", head_body)
        assert.equal("DELETE", method_of("DELETE"))
        assert.equal("PUT", method_of("PUT", ""))
        assert.equal("GET", method_of("GET"))
        s:close()
    end)

    it("keeps one connection alive across many requests", function()
        local s = core.session()
        local opened, connection = 0, nil
        for i = 1, 200 do
            local res = assert(s:request("PUT", server.url .. "/echo", { "X-Test: " .. i }, "body " .. i,
                                         TIMEOUT_MS, 1000))
            assert.equal(200, res.status)
            opened = opened + res.new_connections
            local seen = echoed(res)
            assert.equal(tostring(i), seen["x-test"])
            assert.equal("body " .. i, seen.body)
            connection = connection or seen.connection
            assert.equal(connection, seen.connection)
        end
        assert.equal(1, opened)
        s:close()
    end)

    it("never sends Expect: 100-continue, even with a body over 1 MiB", function()
        local s = core.session()
        local body = string.rep("b", 1536 * 1024)
        local res = assert(s:request("PUT", server.url .. "/echo", { "Content-Type: application/json" }, body,
                                     5000, 1000))
        local seen = echoed(res)
        assert.equal("nil", seen.expect)
        assert.equal(tostring(#body), seen.length)
        assert.is_true(res.time_total < 0.9, "a 1 s stall means curl waited for 100 Continue")
        s:close()
    end)

    it("returns the raw Retry-After and the status of an error response", function()
        local s = core.session()
        local res = assert(s:request("PUT", server.url .. "/busy", nil, "{}", TIMEOUT_MS, 1000))
        assert.equal(503, res.status)
        assert.equal("3", res.retry_after)
        assert.equal("application/json", res.content_type)
        assert.equal('{"busy":true}', res.body)
        s:close()
    end)

    it("keeps the last of several Retry-After headers, trimmed, and none that is too long", function()
        local s = core.session()
        local res = assert(s:request("GET", server.url .. "/busy-twice", nil, nil, TIMEOUT_MS, 1000))
        assert.equal(429, res.status)
        assert.equal("Sun, 06 Nov 1994 08:49:37 GMT", res.retry_after)
        res = assert(s:request("GET", server.url .. "/echo", nil, nil, TIMEOUT_MS, 1000))
        assert.is_nil(res.retry_after, "a previous response's Retry-After must not leak")
        res = assert(s:request("GET", server.url .. "/busy-long", nil, nil, TIMEOUT_MS, 1000))
        assert.equal(503, res.status)
        assert.is_nil(res.retry_after)
        s:close()
    end)

    it("sends each request to its own URL on a reused handle, the repeated URL remembered", function()
        local s = core.session()
        -- Same length as /echo but another path: a length-only comparison would resend /echo.
        local plan = { "/echo", "/echo", "/ech0", "/busy", "/echo?a=1", "/echo?a=2", "/echo", "/busy" }
        -- nginx answers a PUT to a path it has no handler for with 404 or 405
        local expected = { [ "/echo" ] = 200, [ "/ech0" ] = 400, [ "/busy" ] = 503 }
        for i, path in ipairs(plan) do
            -- a fresh string each time, so only the contents can match the previous URL
            local url = table.concat { server.url, path }
            local res = assert(s:request("PUT", url, nil, "{}", TIMEOUT_MS, 1000))
            local want = expected[path:match("^[^?]+")]
            assert.equal(want, want == 400 and res.status - res.status % 100 or res.status,
                         "request " .. i .. " to " .. path)
            if res.status == 503 then
                assert.equal("3", res.retry_after)
            else
                assert.is_nil(res.retry_after, "a previous response's Retry-After must not leak")
            end
            if res.status == 200 then assert.equal("PUT", echoed(res).method) end
        end
        s:close()
    end)

    it("does not follow redirects", function()
        local s = core.session()
        local res = assert(s:request("GET", server.url .. "/redirect", nil, nil, TIMEOUT_MS, 1000))
        assert.equal(302, res.status)
        s:close()
    end)

    it("reports COULDNT_CONNECT for a closed port", function()
        local s = core.session()
        local res, err = s:request("PUT", "http://127.0.0.1:" .. free_port() .. "/", nil, "{}", TIMEOUT_MS, 1000)
        assert.is_nil(res)
        assert.equal("COULDNT_CONNECT", err.code)
        assert.equal(7, err.curl_code)
        assert.is_string(err.message)
        assert.is_true(#err.message > 0)
        s:close()
    end)

    it("reports OPERATION_TIMEDOUT for a slow server, then works again", function()
        local s = core.session()
        local res, err = s:request("GET", server.url .. "/slow?ms=3000", nil, nil, 200, 1000)
        assert.is_nil(res)
        assert.equal("OPERATION_TIMEDOUT", err.code)
        assert.equal(28, err.curl_code)
        res = assert(s:request("GET", server.url .. "/echo", nil, nil, TIMEOUT_MS, 1000))
        assert.equal(200, res.status)
        s:close()
    end)

    it("reports GOT_NOTHING when the server closes without answering", function()
        local s = core.session()
        local res, err = s:request("PUT", server.url .. "/close", nil, "{}", TIMEOUT_MS, 1000)
        assert.is_nil(res)
        assert.equal("GOT_NOTHING", err.code)
        assert.equal(52, err.curl_code)
        s:close()
    end)

    describe("response cap", function()
        it("is 1 MiB by default", function()
            local s = core.session()
            local res = assert(s:request("GET", server.url .. "/big?bytes=1048576", nil, nil, TIMEOUT_MS, 1000))
            assert.equal(1048576, #res.body)
            local err
            res, err = s:request("GET", server.url .. "/big?bytes=1048577", nil, nil, TIMEOUT_MS, 1000)
            assert.is_nil(res)
            assert.equal("TOO_LARGE", err.code)
            s:close()
        end)

        it("is configurable, and applies with or without a Content-Length", function()
            local s = core.session { max_response_bytes = 1000 }
            for _, query in ipairs { "bytes=5000", "bytes=5000&length=1", "bytes=5000000" } do
                local res, err = s:request("GET", server.url .. "/big?" .. query, nil, nil, TIMEOUT_MS, 1000)
                assert.is_nil(res, query)
                assert.equal("TOO_LARGE", err.code, query)
                assert.equal("response larger than 1000 bytes", err.message)
                assert.is_number(err.curl_code)
            end
            local res = assert(s:request("GET", server.url .. "/big?bytes=1000", nil, nil, TIMEOUT_MS, 1000))
            assert.equal(1000, #res.body)
            s:close()
        end)
    end)

    it("only speaks HTTP and HTTPS", function()
        local s = core.session()
        local res, err = s:request("GET", "file:///etc/hostname", nil, nil, TIMEOUT_MS, 1000)
        assert.is_nil(res)
        assert.equal("UNSUPPORTED_PROTOCOL", err.code)
        assert.equal(1, err.curl_code)
        s:close()
    end)

    it("refuses a malformed URL as libcurl does, and goes on with the next ones", function()
        local s = core.session()
        local res, err = s:request("GET", "http://exa mple.invalid/", nil, nil, TIMEOUT_MS, 1000)
        assert.is_nil(res)
        assert.equal("URL_MALFORMAT", err.code)
        -- one handle, the URL changing between requests (and back)
        for _, path in ipairs { "/big?bytes=3", "/echo", "/big?bytes=3", "/big?bytes=5" } do
            res = assert(s:request("GET", server.url .. path, nil, nil, TIMEOUT_MS, 1000))
            if path == "/echo" then
                assert.matches("^method=GET\n", res.body)
            else
                assert.equal(("x"):rep(tonumber(path:match("%d+$"))), res.body)
            end
        end
        assert.equal(0, res.new_connections)
        s:close()
    end)

    describe("TLS", function()
        it("refuses a self-signed certificate by default", function()
            local s = core.session()
            local res, err = s:request("GET", server.tls_url .. "/echo", nil, nil, TIMEOUT_MS, TLS_CONNECT_MS)
            assert.is_nil(res)
            assert.equal("PEER_FAILED_VERIFICATION", err.code)
            assert.equal(60, err.curl_code)
            s:close()
        end)

        it("accepts it with ca_file, over one kept-alive connection", function()
            local s = core.session { ca_file = server.ca_file }
            local opened = 0
            for _ = 1, 20 do
                local res = assert(s:request("PUT", server.tls_url .. "/echo", nil, "{}", TIMEOUT_MS, TLS_CONNECT_MS))
                assert.equal(200, res.status)
                opened = opened + res.new_connections
            end
            assert.equal(1, opened)
            s:close()
        end)

        it("accepts it with allow_insecure_tls", function()
            local s = core.session { allow_insecure_tls = true }
            local res = assert(s:request("GET", server.tls_url .. "/echo", nil, nil, TIMEOUT_MS, TLS_CONNECT_MS))
            assert.equal(200, res.status)
            s:close()
        end)

        it("reports a missing ca_file", function()
            local s = core.session { ca_file = server.prefix .. "/missing.pem" }
            local res, err = s:request("GET", server.tls_url .. "/echo", nil, nil, TIMEOUT_MS, TLS_CONNECT_MS)
            assert.is_nil(res)
            assert.equal("SSL_CACERT_BADFILE", err.code)
            s:close()
        end)
    end)

    describe("lifetime", function()
        it("closes idempotently and refuses use after close", function()
            local s = core.session()
            assert.is_false(s:is_closed())
            s:close()
            s:close()
            assert.is_true(s:is_closed())
            assert.matches("closed", tostring(s))
            assert.has_error(function() s:request("GET", server.url .. "/echo", nil, nil, TIMEOUT_MS, 1000) end,
                             "session is closed")
        end)

        it("is freed by the garbage collector, open or closed", function()
            for i = 1, 50 do
                local s = core.session { ca_file = server.ca_file, proxy = "", user_agent = "gc" }
                if i % 2 == 0 then assert(s:request("GET", server.url .. "/echo", nil, nil, TIMEOUT_MS, 1000)) end
                if i % 3 == 0 then s:close() end
            end
            collectgarbage()
            collectgarbage()
        end)

        it("lets a finalizer close it while a response is being built, and closes it afterwards", function()
            -- Every allocation while the response is pushed can run finalizers. One that closes
            -- the session there must not free the handle and the buffer being read (ASan and
            -- valgrind see it if it does): the close waits until the result is built.
            local function finalizable(f)
                if newproxy then   -- Lua 5.1 and LuaJIT: tables have no __gc
                    local p = newproxy(true)
                    getmetatable(p).__gc = f
                    return p
                end
                return setmetatable({}, { __gc = f })
            end
            local url = server.url .. "/echo"
            local expected = echoed(assert(core.session():request("GET", url, nil, nil, TIMEOUT_MS, 1000)))
            collectgarbage("setpause", 0)
            collectgarbage("setstepmul", 1000)
            for _ = 1, 10 do
                local s = core.session()
                local inside, closed_here = false, false
                local doomed = {}
                for i = 1, 200 do
                    doomed[i] = finalizable(function()
                        if inside and not s:is_closed() then
                            s:close()
                            closed_here = true
                        end
                    end)
                end
                for i = 1, #doomed do doomed[i] = false end   -- garbage from here on, finalized meanwhile
                inside = true
                local ok, res = pcall(s.request, s, "GET", url, nil, nil, TIMEOUT_MS, 1000)
                inside = false
                if ok then
                    assert.equal(200, res.status)
                    assert.same(expected.method, echoed(res).method)
                else
                    -- Closed before the transfer started (Lua 5.1 and LuaJIT allocate there too).
                    assert.matches("session is closed", res)
                end
                assert.is_true(s:is_closed() or not closed_here)
            end
            collectgarbage("setpause", 200)
            collectgarbage("setstepmul", 200)
            collectgarbage()
            -- How often the close lands inside the request depends on the collector (nearly
            -- always on 5.3, rarely elsewhere); what must hold every time is asserted above.
        end)

        if _VERSION == "Lua 5.4" then
            it("is closed by a to-be-closed variable", function()
                local escaped
                local use = assert(load([[
                    local core, escape = ...
                    local s <close> = core.session()
                    escape(s)
                ]]))
                use(core, function(s) escaped = s end)
                assert.is_true(escaped:is_closed())
            end)
        end
    end)

    describe("programmer errors raise", function()
        local s

        before_each(function() s = core.session() end)
        after_each(function() s:close() end)

        local url = "http://127.0.0.1:1/"
        local cases = {
            { "non-string method", function() s:request(1, url, nil, nil, 1000, 1000) end },
            { "bad method", function() s:request("P T", url, nil, nil, 1000, 1000) end },
            { "missing url", function() s:request("GET", nil, nil, nil, 1000, 1000) end },
            { "headers not a table", function() s:request("GET", url, "X: y", nil, 1000, 1000) end },
            { "header not a string", function() s:request("GET", url, { 1 }, nil, 1000, 1000) end },
            { "header with CR LF", function() s:request("GET", url, { "X: a\r\nY: b" }, nil, 1000, 1000) end },
            { "header with NUL", function() s:request("GET", url, { "X: a\0b" }, nil, 1000, 1000) end },
            { "header without colon", function() s:request("GET", url, { "X" }, nil, 1000, 1000) end },
            { "body not a string", function() s:request("PUT", url, nil, {}, 1000, 1000) end },
            { "no timeout", function() s:request("GET", url, nil, nil) end },
            { "zero timeout", function() s:request("GET", url, nil, nil, 0, 1000) end },
            { "fractional timeout", function() s:request("GET", url, nil, nil, 1.5, 1000) end },
            { "zero connect timeout", function() s:request("GET", url, nil, nil, 1000, 0) end },
        }
        for _, case in ipairs(cases) do
            it(case[1], function() assert.has_error(case[2]) end)
        end

        it("too many headers", function()
            local headers = {}
            for i = 1, 65 do headers[i] = "X-" .. i .. ": v" end
            assert.has_error(function() s:request("GET", url, headers, nil, 1000, 1000) end)
        end)

        it("bad options", function()
            assert.has_error(function() core.session { unknown = 1 } end, "options: unknown option 'unknown'")
            assert.has_error(function() core.session { ca_file = 1 } end)
            assert.has_error(function() core.session { max_response_bytes = 0 } end)
            assert.has_error(function() core.session { max_response_bytes = 1.5 } end)
            assert.has_error(function() core.session { allow_insecure_tls = "yes" } end)
            assert.has_error(function() core.session "x" end)
            -- it becomes a header line: a line break would smuggle in another header
            assert.has_error(function() core.session { user_agent = "ua\r\nX-Smuggled: 1" } end,
                "options: 'user_agent' contains CR or LF")
            assert.has_error(function() core.multi { user_agent = "ua\nX: 1" } end,
                "options: 'user_agent' contains CR or LF")
        end)

        it("an option name with a NUL byte is unknown, not taken for the name before the NUL", function()
            -- A typo'd or hostile key must never pass as ca_file (it would then be silently ignored).
            assert.has_error(function() core.session { ["ca_file\0x"] = "/nonexistent" } end,
                "options: unknown option 'ca_file'")
            assert.has_error(function() core.multi { ["max_in_flight\0"] = 4 } end)
        end)

        it("and the session stays usable afterwards", function()
            pcall(s.request, s, "GET", url, { "X: \n" }, nil, 1000, 1000)
            local res = assert(s:request("GET", server.url .. "/echo", nil, nil, TIMEOUT_MS, 1000))
            assert.equal(200, res.status)
        end)
    end)
end)

describe("core.session against the gateway emulator", function()
    local STATUSES = { "created", "paid", "cooking", "delivering", "delivered", "cancelled" }
    local BODY = '{"merchant_order_id":"SESSION-1","user_id":1234567,"external_status":"created",'
        .. '"deeplinks":[{"link":"https://rahmetapp.kz/100/orders?tab=5","type":"active_order_card"}],'
        .. '"external_data":{"expired_at":"2030-10-20 16:49:36","title_active_order_card":"Ожидает оплаты",'
        .. '"title_call_to_action":"К заказу","need_timer":false,"countdown_timer":false}}'
    local emu, url, headers

    setup(function()
        emu = emulator.start { statuses = STATUSES }
        url = emu.url .. "/orders/v2/preorder/external/status"
        headers = { "Content-Type: application/json", "Accept: application/json",
                    "Authorization: Bearer " .. emu:token() }
    end)

    teardown(function()
        if emu then emu:stop() end
    end)

    it("pushes 300 statuses over one connection, as the emulator counts them", function()
        local s = core.session()
        local before = emu:state().connections
        local opened = 0
        for _ = 1, 300 do
            local res = assert(s:request("PUT", url, headers, BODY, TIMEOUT_MS, 1000))
            assert.equal(200, res.status, res.body)
            assert.matches("^application/json", res.content_type)
            opened = opened + res.new_connections
        end
        assert.equal(1, opened)
        -- the control request that reads the state opens its own connection
        assert.is_true(emu:state().connections - before <= 2)
        assert.equal("created", emu:history("SESSION-1").last)
        s:close()
    end)

    local function with_fault(fault, timeout_ms, options)
        emu:faults("status", { fault })
        local s = core.session(options)
        local res, err = s:request("PUT", url, headers, BODY, timeout_ms or 5000, 1000)
        -- the session recovers from every fault on its next request
        local after = assert(s:request("PUT", url, headers, BODY, TIMEOUT_MS, 1000))
        assert.equal(200, after.status)
        s:close()
        return res, err
    end

    it("close: GOT_NOTHING", function()
        local res, err = with_fault { kind = "close" }
        assert.is_nil(res)
        assert.equal("GOT_NOTHING", err.code)
    end)

    it("close on a kept-alive connection: libcurl resends once by itself on a new connection", function()
        local s = core.session()
        assert(s:request("PUT", url, headers, BODY, TIMEOUT_MS, 1000))
        local accepted = emu:state().accepted
        emu:faults("status", { { kind = "close" } })
        local res = assert(s:request("PUT", url, headers, BODY, TIMEOUT_MS, 1000))
        assert.equal(200, res.status)
        assert.equal(1, res.new_connections)
        assert.equal(accepted + 1, emu:state().accepted)
        -- twice in a row is not hidden
        emu:faults("status", { { kind = "close" }, { kind = "close" } })
        local err
        res, err = s:request("PUT", url, headers, BODY, TIMEOUT_MS, 1000)
        assert.is_nil(res)
        assert.equal("GOT_NOTHING", err.code)
        s:close()
    end)

    it("truncate: PARTIAL_FILE", function()
        local res, err = with_fault { kind = "truncate" }
        assert.is_nil(res)
        assert.equal("PARTIAL_FILE", err.code)
        assert.equal(18, err.curl_code)
    end)

    it("delay beyond the timeout: OPERATION_TIMEDOUT", function()
        local res, err = with_fault({ kind = "delay", ms = 2000 }, 300)
        assert.is_nil(res)
        assert.equal("OPERATION_TIMEDOUT", err.code)
    end)

    it("oversize: TOO_LARGE at the default cap, accepted under a larger one", function()
        local res, err = with_fault { kind = "oversize", bytes = 2 * 1048576 }
        assert.is_nil(res)
        assert.equal("TOO_LARGE", err.code)
        res = with_fault({ kind = "oversize", bytes = 2 * 1048576 }, 5000, { max_response_bytes = 4 * 1048576 })
        assert.equal(200, res.status)
        assert.equal(2 * 1048576, #res.body)
    end)

    it("503 and 429: the status and the raw Retry-After", function()
        local res = with_fault { kind = "http", status = 503, retry_after = 7 }
        assert.equal(503, res.status)
        assert.equal("7", res.retry_after)
        res = with_fault { kind = "http", status = 429, retry_after = "Wed, 21 Oct 2015 07:28:00 GMT" }
        assert.equal(429, res.status)
        assert.equal("Wed, 21 Oct 2015 07:28:00 GMT", res.retry_after)
    end)

    it("html and trickle: the whole body and its content type", function()
        local res = with_fault { kind = "html", status = 502 }
        assert.equal(502, res.status)
        assert.equal("text/html", res.content_type)
        assert.matches("<html>", res.body)
        res = with_fault { kind = "trickle", ms = 20 }
        assert.equal(200, res.status)
        assert.matches('"status":"success"', res.body)
    end)

    describe("over TLS", function()
        local tls_emu

        setup(function() tls_emu = emulator.start { statuses = STATUSES, tls = true } end)
        teardown(function() if tls_emu then tls_emu:stop() end end)

        it("refuses the emulator's certificate by default and accepts it with its CA", function()
            local tls_url = tls_emu.url .. "/orders/v2/preorder/external/status"
            local s = core.session()
            local res, err = s:request("PUT", tls_url, headers, BODY, TIMEOUT_MS, TLS_CONNECT_MS)
            assert.is_nil(res)
            assert.equal("PEER_FAILED_VERIFICATION", err.code)
            s:close()
            s = core.session { ca_file = tls_emu.ca_file }
            res = assert(s:request("PUT", tls_url, headers, BODY, TIMEOUT_MS, TLS_CONNECT_MS))
            -- the token belongs to the other emulator: the TLS handshake is what this checks
            assert.equal(401, res.status)
            s:close()
        end)
    end)
end)
