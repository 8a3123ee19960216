-- Spec helper: one real gateway emulator (nginx) per spec file, driven through
-- its control API with LuaSocket (LuaSec with --tls), never with this project's
-- client, so that the client's tests do not lean on the code under test.
--
--   local emulator = require "spec.support.emulator"
--   local emu
--   setup(function() emu = emulator.start{ statuses = {...}, token_ttl = 10800, tls = false } end)
--   teardown(function() emu:stop() end)
--
--   emu.url, emu.port, emu.ca_file (with tls), emu.client_id, emu.client_secret
--   emu:control(method, path, body_table) -> decoded JSON, http status
--        path is "/_emulator/state" or just "state"
--   emu:history(order_id)  -> { merchant_order_id, id, created_at, count, dropped,
--                               last = "<external_status>", last_body = <status table>,
--                               history = { {at, seq, status, encoding, body, raw, warnings}, ... } }
--                             or nil when the emulator never accepted a status for it
--   emu:state()            -> { requests = {token, status, control, other}, connections,
--                               tokens_issued, orders, accepted, rejected = {...},
--                               faults_applied, faults_pending = {status, token} }
--   emu:faults(endpoint, list)   endpoint "status" | "token"; appends to the queue
--   emu:revoke([token])    revokes every token (or one)
--   emu:reset()            clears history, counters, tokens and faults
--   emu:token()            a fresh valid token (POST /auth/token with the configured credentials)
--   emu:request(method, path, body, headers) -> http status, body, response headers (raw HTTP)
--   emu:lua_errors()       error-log lines that show a Lua error in the handler ({} when clean)
--   emu:stop()             idempotent; always call it from teardown
--
--   emulator.use(opts, function(started) emu = started end)   in a describe block: the
--        setup/teardown/reset-before-each above in one call (opts.keep_state: no reset)

local launcher = require "choco.active_order.emulator.launcher"
local cjson = require "cjson"
local http = require "socket.http"
local ltn12 = require "ltn12"

local emulator = {}

local Emulator = {}
Emulator.__index = Emulator

function emulator.start(opts)
    local handle, err = launcher.start(opts)
    if not handle then error("cannot start the gateway emulator: " .. tostring(err), 2) end
    return setmetatable({
        handle = handle,
        url = handle.url,
        port = handle.port,
        ca_file = handle.ca_file,
        prefix = handle.prefix,
        pid = handle.pid,
        error_log = handle.error_log,
        client_id = handle.client_id,
        client_secret = handle.client_secret,
    }, Emulator)
end

--- One raw HTTP request; returns status, body, headers (lower-case names).
function Emulator:request(method, path, body, headers)
    local chunks = {}
    local hdrs = {}
    for k, v in pairs(headers or {}) do hdrs[k] = v end
    if body then hdrs["content-length"] = tostring(#body) end
    local params = {
        url = self.url .. path,
        method = method,
        headers = hdrs,
        source = body and ltn12.source.string(body) or nil,
        sink = ltn12.sink.table(chunks),
        redirect = false,
    }
    local ok, code, response_headers
    if self.ca_file then
        params.cafile = self.ca_file
        params.verify = "peer"
        params.protocol = "tlsv1_2"
        params.redirect = nil
        ok, code, response_headers = require("ssl.https").request(params)
    else
        ok, code, response_headers = http.request(params)
    end
    if not ok then return nil, code end
    return code, table.concat(chunks), response_headers
end

function Emulator:control(method, path, body_table)
    if path:sub(1, 1) ~= "/" then path = "/_emulator/" .. path end
    local body = body_table ~= nil and cjson.encode(body_table) or nil
    local status, text = self:request(method, path, body,
        body and { ["content-type"] = "application/json" } or nil)
    if not status then error("emulator control " .. method .. " " .. path .. ": " .. tostring(text), 2) end
    local ok, value = pcall(cjson.decode, text)
    if not ok then error("emulator control " .. path .. " answered non-JSON: " .. text, 2) end
    return value, status
end

local function escape(s)
    return (tostring(s):gsub("[^%w%-._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

function Emulator:history(order_id)
    local value, status = self:control("GET", "/_emulator/orders/" .. escape(order_id))
    if status == 404 then return nil end
    return value
end

function Emulator:state()
    return (self:control("GET", "/_emulator/state"))
end

function Emulator:faults(endpoint, list)
    local value, status = self:control("POST", "/_emulator/faults", { endpoint = endpoint, faults = list })
    if status ~= 200 then error("emulator refused the faults: " .. tostring(value.error), 2) end
    return value
end

function Emulator:revoke(token)
    return (self:control("POST", "/_emulator/tokens/revoke", token and { token = token } or nil))
end

function Emulator:reset()
    return (self:control("POST", "/_emulator/reset"))
end

function Emulator:token()
    local status, body = self:request("POST", "/auth/token",
        "client_id=" .. escape(self.client_id) .. "&client_secret=" .. escape(self.client_secret)
            .. "&grant_type=client_credentials",
        { ["content-type"] = "application/x-www-form-urlencoded" })
    if status ~= 200 then error("emulator refused a token: " .. tostring(status) .. " " .. tostring(body), 2) end
    return cjson.decode(body).data.token
end

--- PUT a status body (a string) with the given content type and token.
function Emulator:put(body, content_type, token)
    return self:request("PUT", "/orders/v2/preorder/external/status", body, {
        ["content-type"] = content_type or "application/json",
        authorization = token and ("Bearer " .. token) or nil,
    })
end

function Emulator:lua_errors()
    local f = io.open(self.error_log, "rb")
    if not f then return {} end
    local found = {}
    for line in f:lines() do
        if line:find("%[error%]") or line:find("%[crit%]") or line:find("%[alert%]") or line:find("%[emerg%]")
            or line:find("stack traceback", 1, true) then
            found[#found + 1] = line
        end
    end
    f:close()
    return found
end

function Emulator:stop()
    if self.handle then
        self.handle:stop()
        self.handle = nil
    end
end

--- In the describe block that calls it: start an emulator with opts in setup
--- (handing it to started), stop it in teardown and, unless opts.keep_state,
--- reset it before each test. keep_state is not passed on to the launcher.
function emulator.use(opts, started)
    -- required here, not at the top: benches load this module outside busted
    local busted = require "busted"
    local start_opts = {}
    for k, v in pairs(opts) do
        if k ~= "keep_state" then start_opts[k] = v end
    end
    local emu
    busted.setup(function()
        emu = emulator.start(start_opts)
        started(emu)
    end)
    busted.teardown(function()
        if emu then emu:stop() end
    end)
    if not opts.keep_state then
        busted.before_each(function() emu:reset() end)
    end
end

emulator.example = require("spec.support.fixtures").example

emulator.escape = escape

--- A status table in the contract's form notation (deeplinks[0][link]=...):
--- the contract's keys first in its order, then any others sorted; booleans as
--- true/false. Keys that are not the contract's are written as they are, so
--- specs can send unknown or misplaced fields.
local TOP = { "merchant_order_id", "user_id", "external_status", "deeplinks", "external_data" }
local DATA = { "expired_at", "title_active_order_card", "title_call_to_action", "subtitle_active_order_card",
    "need_timer", "countdown_timer" }

local function ordered_keys(t, known)
    local keys, seen = {}, {}
    for _, k in ipairs(known) do
        if t[k] ~= nil then keys[#keys + 1] = k; seen[k] = true end
    end
    local rest = {}
    for k in pairs(t) do if not seen[k] then rest[#rest + 1] = tostring(k) end end
    table.sort(rest)
    for _, k in ipairs(rest) do keys[#keys + 1] = k end
    return keys
end

function emulator.form(status)
    local parts = {}
    local function add(k, v) parts[#parts + 1] = escape(k) .. "=" .. escape(tostring(v)) end
    for _, k in ipairs(ordered_keys(status, TOP)) do
        local v = status[k]
        if k == "deeplinks" and type(v) == "table" then
            for i, link in ipairs(v) do
                if type(link) == "table" then
                    for _, lk in ipairs(ordered_keys(link, { "link", "type" })) do
                        add("deeplinks[" .. (i - 1) .. "][" .. lk .. "]", link[lk])
                    end
                else
                    add("deeplinks[" .. (i - 1) .. "]", link)
                end
            end
        elseif k == "external_data" and type(v) == "table" then
            for _, dk in ipairs(ordered_keys(v, DATA)) do add("external_data[" .. dk .. "]", v[dk]) end
        else
            add(k, v)
        end
    end
    return table.concat(parts, "&")
end

return emulator
