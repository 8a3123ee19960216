-- The Choco gateway emulator: an OpenResty content handler that serves the
-- contract (POST /auth/token, PUT /orders/v2/preorder/external/status), keeps
-- what it accepted, misbehaves on request (scripted faults) and answers a control
-- API under /_emulator/. Started by choco.active_order.emulator.launcher, which
-- writes the nginx configuration that loads this module.

local cjson = require "cjson.safe"
local rules = require "choco.active_order.emulator.rules"
local state = require "choco.active_order.emulator.state"
local faults = require "choco.active_order.emulator.faults"
local reply = require "choco.active_order.emulator.reply"

local byte, find, match, lower, format = string.byte, string.find, string.match, string.lower, string.format
local ngx = ngx

local emulator = {}

local STATUS_PATH = "/orders/v2/preorder/external/status"
local TOKEN_PATH = "/auth/token"
local CONTROL_PREFIX = "/_emulator/"

local config

--- Read the configuration the launcher wrote (runs in init_by_lua, once).
function emulator.init(path)
    local f = assert(io.open(path, "rb"))
    local text = f:read("*a")
    f:close()
    local c = assert(cjson.decode(text))
    local hours, minutes = match(c.utc_offset or "+05:00", "^[+-](%d%d):(%d%d)$")
    assert(hours, "utc_offset must look like +05:00")
    local offset = (tonumber(hours) * 3600 + tonumber(minutes) * 60) * (c.utc_offset:sub(1, 1) == "-" and -1 or 1)
    config = {
        client_id = c.client_id,
        client_secret = c.client_secret,
        statuses = c.statuses,
        status_index = rules.index_statuses(c.statuses),
        token_ttl = c.token_ttl,
        utc_offset = c.utc_offset or "+05:00",
        offset_seconds = offset,
        limits = rules.limits(c.limits ~= cjson.null and c.limits or nil),
    }
    state.history_cap = config.limits.history_per_order
end

local urandom

function emulator.init_worker()
    state.init()
    -- tokens come from the kernel's generator; if it cannot be opened, from
    -- math.random seeded with the clock and the worker's pid (said in the log)
    urandom = io.open("/dev/urandom", "rb")
    if not urandom then
        ngx.log(ngx.WARN, "emulator: /dev/urandom unavailable, tokens come from math.random")
        math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
    end
end

local function random_token()
    local bytes
    if urandom then bytes = urandom:read(24) end
    if not bytes or #bytes ~= 24 then
        local t = {}
        for i = 1, 24 do t[i] = string.char(math.random(0, 255)) end
        bytes = table.concat(t)
    end
    -- base64url without padding, so the token looks like the gateway's
    return "emu." .. ngx.encode_base64(bytes, true):gsub("[+/]", { ["+"] = "-", ["/"] = "_" })
end

-- "YYYY-MM-DD HH:MM:SS" in the gateway's zone, formatted at most once a second.
local last_second, last_text
local function now_text()
    local t = ngx.time()
    if t ~= last_second then
        last_second, last_text = t, os.date("!%Y-%m-%d %H:%M:%S", t + config.offset_seconds)
    end
    return last_text
end

local function read_body()
    ngx.req.read_body()
    local body = ngx.req.get_body_data()
    if body == nil then
        if ngx.req.get_body_file() then return nil, "too_large" end
        body = ""
    end
    if #body > config.limits.body_bytes then return nil, "too_large" end
    return body
end

local function media_type()
    local ct = ngx.var.content_type
    return ct and lower(match(ct, "^%s*([^;%s]+)") or "") or ""
end

-- A handler returns {status =, body =, headers =} so that a fault can still
-- break or slow the answer it would have given.
local function answer(http_status, code_name, message, data, headers)
    return { status = http_status, body = reply.envelope_body(reply.CODES[code_name], message, data),
        headers = headers }
end

local function too_large()
    state.count("rejected:bad_request")
    return answer(413, "too_large", "The request body is larger than " .. config.limits.body_bytes .. " bytes")
end

local function issue_token()
    if ngx.req.get_method() ~= "POST" then
        return answer(405, "method", "Use POST for /auth/token", nil, { Allow = "POST" })
    end
    local body, err = read_body()
    if not body then return too_large(err) end
    if media_type() ~= "application/x-www-form-urlencoded" then
        state.count("rejected:bad_request")
        return answer(400, "bad_request", "Content-Type must be application/x-www-form-urlencoded")
    end
    local args = ngx.decode_args(body, 0)
    if args.client_id ~= config.client_id or args.client_secret ~= config.client_secret then
        state.count("rejected:auth")
        return answer(401, "client_auth", "Client authentication failed", nil,
            { ["WWW-Authenticate"] = 'Basic realm="choco-gateway-emulator"' })
    end
    if args.grant_type ~= "client_credentials" then
        state.count("rejected:bad_request")
        return answer(400, "bad_request", "grant_type must be client_credentials")
    end
    local token = random_token()
    local ok, serr = state.store_token(token, config.token_ttl)
    if not ok then
        ngx.log(ngx.ERR, "emulator: cannot store a token: ", serr)
        return answer(500, "fault", "The emulator could not store the token")
    end
    return answer(200, "ok", "Токен успешно создан",
        { token_type = "Bearer", token = token, expire_in = config.token_ttl })
end

local function unauthenticated(message)
    state.count("rejected:auth")
    return answer(401, "unauthenticated", message, nil,
        { ["WWW-Authenticate"] = 'Bearer realm="choco-gateway-emulator"' })
end

-- Stored bodies come back as status tables for the control API.
local function decode_stored(encoding, body)
    if encoding == "form" then
        return (rules.from_form(ngx.decode_args(body, 0)))
    end
    return cjson.decode(body) or cjson.null
end

-- The success answer, written by hand: the hot path of every benchmark, and
-- cjson would write user_id (up to 16 digits) with only 14. The keys are the
-- contract example's, in its order; the values the request did not give are
-- fixed. merchant_order_id is the only text that needs escaping: the dates were
-- checked (expired_at) or made here.
local SUCCESS_HEAD = '{"error_code":0,"status":"success","message":"Статус успешно обновлён","data":{"id":'
local AFTER_ID = ',"merchant_order_id":'
local AFTER_ORDER_ID = ',"filial_id":1,"amount":"1","qr_code_id":1,"postlink":"http://postlink/","backlink":null,'
    .. '"created_at":"'
local AFTER_CREATED = '","updated_at":"'
local AFTER_UPDATED = '","merchant_id":1234,"failed_postlink":"http://failed_post/","expired_at":"'
local AFTER_EXPIRED = '","type":0,"scanned_user_id":'
local AFTER_USER = ',"merchant_slug":null,"supplementary_data":null,"external_filial_id":null,'
    .. '"external_status_id":'
local SUCCESS_TAIL = ',"checklink":"http://checklink/","failed_on_check":false,"request_from_type":"miniapp"}}'

local function success_body(status, order)
    return table.concat {
        SUCCESS_HEAD, order.id, AFTER_ID, reply.encode(status.merchant_order_id), AFTER_ORDER_ID,
        order.created_at, AFTER_CREATED, now_text(), AFTER_UPDATED, status.external_data.expired_at,
        AFTER_EXPIRED, format("%.0f", status.user_id), AFTER_USER, config.status_index[status.external_status],
        SUCCESS_TAIL,
    }
end

-- form fields arrive in hash order: sort so that the message names the same
-- problem every time
local function by_field(a, b)
    if a.field ~= b.field then return a.field < b.field end
    return a.code < b.code
end

local function put_status()
    if ngx.req.get_method() ~= "PUT" then
        return answer(405, "method", "Use PUT for " .. STATUS_PATH, nil, { Allow = "PUT" })
    end
    local authorization = ngx.var.http_authorization
    if not authorization then return unauthenticated("Unauthenticated: the Authorization header is missing") end
    local token = match(authorization, "^[Bb][Ee][Aa][Rr][Ee][Rr] +([^%s]+) *$")
    if not token then return unauthenticated("Unauthenticated: expected Authorization: Bearer <token>") end
    if not state.token_valid(token) then
        return unauthenticated("Unauthenticated: the token is unknown, expired or revoked")
    end

    local body, err = read_body()
    if not body then return too_large(err) end
    local media = media_type()
    local status, problems, warnings, encoding
    if media == "application/json" then
        encoding = "json"
        local parsed, extra = rules.parse_json(body)
        if not parsed then
            state.count("rejected:bad_request")
            return answer(400, "bad_request", extra)
        end
        status = parsed
        problems, warnings = rules.check(status, config, "json")
        for i = 1, #extra do problems[#problems + 1] = extra[i] end
    elseif media == "application/x-www-form-urlencoded" then
        encoding = "form"
        local parsed, found, reported = rules.from_form(ngx.decode_args(body, 0))
        status = parsed
        problems, warnings = rules.check(status, config, "form", reported)
        for i = 1, #found do problems[#problems + 1] = found[i] end
    else
        state.count("rejected:bad_request")
        return answer(415, "bad_request",
            "Content-Type must be application/json or application/x-www-form-urlencoded")
    end
    if #problems > 0 then
        state.count("rejected:validation")
        table.sort(problems, by_field)
        local message = problems[1].message
        if #problems > 1 then message = format("%s (and %d more)", message, #problems - 1) end
        return answer(422, "validation", message, { errors = problems })
    end
    local order = state.record(status.merchant_order_id, status.external_status, encoding, body,
        #warnings > 0 and warnings or nil, now_text())
    return { status = 200, body = success_body(status, order) }
end

local function control_body()
    local body = read_body()
    if not body or body == "" then return {} end
    local value = cjson.decode(body)
    if type(value) ~= "table" then return nil end
    return value
end

local function control(path, method)
    local route = path:sub(#CONTROL_PREFIX + 1)
    if route == "state" and method == "GET" then
        return reply.json(200, state.summary())
    elseif route == "orders" and method == "GET" then
        return reply.json(200, { orders = state.order_ids() })
    elseif route:sub(1, 7) == "orders/" and method == "GET" then
        -- from the raw request line: $uri is decoded already, and an id may hold "%2F"
        local raw = match(ngx.var.request_uri, "^[^?]*")
        local id = ngx.unescape_uri(match(raw, "/orders/(.*)$") or "")
        local order = state.order(id, decode_stored)
        if not order then return reply.json(404, { error = "no status was accepted for this order" }) end
        return reply.json(200, order)
    elseif route == "faults" and method == "POST" then
        local req = control_body()
        if not req then return reply.json(400, { error = "the body must be a JSON object" }) end
        if not faults.ENDPOINTS[req.endpoint] then
            return reply.json(400, { error = "endpoint must be \"status\" or \"token\"" })
        end
        local list = req.faults or (req.fault and { req.fault })
        if type(list) ~= "table" then return reply.json(400, { error = "faults must be a list" }) end
        local encoded = {}
        for i = 1, #list do
            local f, ferr = faults.check(list[i])
            if not f then return reply.json(400, { error = "faults[" .. i .. "]: " .. ferr }) end
            encoded[i] = cjson.encode(f)
        end
        local pending = state.pending_faults(req.endpoint)
        for i = 1, #encoded do
            local n, perr = state.push_fault(req.endpoint, encoded[i])
            if not n then return reply.json(500, { error = "cannot queue the fault: " .. tostring(perr) }) end
            pending = n
        end
        return reply.json(200, { endpoint = req.endpoint, pending = pending })
    elseif route == "faults" and method == "GET" then
        return reply.json(200, { status = state.pending_faults("status"), token = state.pending_faults("token") })
    elseif route == "tokens/revoke" and method == "POST" then
        local req = control_body() or {}
        local token = type(req.token) == "string" and req.token or nil
        return reply.json(200, { revoked = state.revoke(token) })
    elseif route == "reset" and method == "POST" then
        state.reset()
        return reply.json(200, { reset = true })
    elseif route == "config" and method == "GET" then
        return reply.json(200, {
            client_id = config.client_id, statuses = config.statuses, token_ttl = config.token_ttl,
            utc_offset = config.utc_offset, limits = config.limits,
        })
    elseif route == "nginx-error" then
        -- nginx's own errors (error_page) get the envelope too
        local status = tonumber(ngx.var.status) or 400
        if status < 400 then status = 400 end
        return reply.error(status, "bad_request", "nginx refused the request (HTTP " .. status .. ")")
    end
    return reply.json(404, { error = "no control endpoint " .. method .. " " .. path })
end

local function send(res)
    return reply.raw(res.status, res.body, reply.JSON_TYPE, res.headers)
end

-- The gateway's two endpoints, with the fault queue in front of them.
local function gateway(endpoint, handler)
    local encoded = state.next_fault(endpoint)
    if not encoded then return send(handler()) end
    state.count("faults_applied")
    local f = cjson.decode(encoded)
    if f.kind == "delay" then
        ngx.sleep(f.ms / 1000)
        return send(handler())
    end
    local normal
    if faults.processes(f) then normal = handler() end
    return faults.answer(f, endpoint, normal)
end

function emulator.handle()
    local path = ngx.var.uri
    -- the contract writes the path as //orders/... ; nginx merges slashes by
    -- default, but not when merge_slashes is off
    if byte(path, 2) == 47 then path = "/" .. path:gsub("^/+", "") end
    if path == STATUS_PATH then
        state.count("req:status")
        if ngx.var.connection_requests == "1" then state.count("connections") end
        return gateway("status", put_status)
    elseif path == TOKEN_PATH then
        state.count("req:token")
        if ngx.var.connection_requests == "1" then state.count("connections") end
        return gateway("token", issue_token)
    elseif find(path, CONTROL_PREFIX, 1, true) == 1 then
        state.count("req:control")
        return control(path, ngx.req.get_method())
    end
    state.count("req:other")
    if ngx.var.connection_requests == "1" then state.count("connections") end
    return reply.error(404, "not_found", "No route for " .. ngx.req.get_method() .. " " .. path)
end

return emulator
