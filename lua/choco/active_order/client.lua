-- The client: ao.new(opts) checks every option once, then client:push(status)
-- validates and encodes the status in the C core, holds a valid token, sends the
-- PUT over one kept-alive libcurl session, retries what is safe to retry, and
-- turns every outcome into data or a typed error. Policy lives in retry.lua and
-- token.lua; this file wires them to the session and reads the gateway's answers.

local core = require "choco.active_order.core"
local payload = require "choco.active_order.payload"
local errors = require "choco.active_order.errors"
local retry = require "choco.active_order.retry"
local token = require "choco.active_order.token"
local url = require "choco.active_order.url"
local json = require "choco.active_order.json"
local decode = json.decode_answer

local type, pairs, ipairs, tostring, setmetatable, pcall = type, pairs, ipairs, tostring, setmetatable, pcall
local ceil, min, floor, format = math.ceil, math.min, math.floor, string.format
local encode = payload.encode

local STATUS_PATH = "/orders/v2/preorder/external/status"

local client = {}

client.STATUS_PATH = STATUS_PATH
client.TOKEN_PATH = "/auth/token"

client.DEFAULTS = {
    timeout = 10,                  -- seconds for one HTTP exchange
    connect_timeout = 3,           -- seconds to establish the connection (TLS included)
    max_response_bytes = 1048576,  -- a larger answer is a too_large error
}

-- Short on purpose: libcurl formats the header byte by byte on every request
-- (about 150 instructions a byte), and the version is what the gateway's
-- operators need to tell clients apart.
local function default_user_agent()
    return "choco-active-order/" .. require("choco.active_order").VERSION
end

local KNOWN = {
    base_url = true, allow_insecure_http = true, client_id = true, client_secret = true,
    token = true, statuses = true, utc_offset = true, limits = true, timeout = true,
    connect_timeout = true, retry = true, on_request = true, on_response = true,
    ca_file = true, proxy = true, user_agent = true, max_response_bytes = true,
    sleep = true, clock = true, token_store = true,
}

local function config_error(message)
    return nil, errors.new("config", "BAD_OPTION", message)
end

-- Something that ends up in a header or a request line: no control characters
-- (CR, LF and NUL would let a value forge headers).
local function header_text(v)
    return type(v) == "string" and v ~= "" and not v:find("%c")
end

local function positive(v)
    return type(v) == "number" and v > 0 and v < math.huge
end


local Client = {}
Client.__index = Client

function Client.__tostring(c)
    return "choco.active_order client (base_url=" .. c.base_url ..
        (c.client_id and (", client_id=" .. c.client_id) or ", fixed token") .. ")"
end

--- Create a client. Raises only when `opts` is not a table (a programmer
--- error); every bad option is reported as nil, err with kind "config".
function client.new(opts)
    if type(opts) ~= "table" then
        error("ao.new expects a table of options, not " .. type(opts), 2)
    end
    for k in pairs(opts) do
        if not KNOWN[k] then return config_error("unknown option: " .. tostring(k)) end
    end

    if opts.allow_insecure_http ~= nil and type(opts.allow_insecure_http) ~= "boolean" then
        return config_error("allow_insecure_http must be a boolean")
    end
    local base, why = url.parse_base(opts.base_url, opts.allow_insecure_http)
    if not base then return config_error(why) end

    local c = setmetatable({ base_url = base.base }, Client)

    -- credentials: either client_id + client_secret, or a fixed token
    if opts.token ~= nil then
        if opts.client_id ~= nil or opts.client_secret ~= nil then
            return config_error("pass either token or client_id + client_secret, not both")
        end
        if not token.header_safe(opts.token) then
            return config_error("token must be a non-empty string of visible ASCII characters")
        end
    else
        if not header_text(opts.client_id) then
            return config_error("client_id is required (a non-empty string without control characters)")
        end
        if type(opts.client_secret) ~= "string" or opts.client_secret == "" then
            return config_error("client_secret is required (a non-empty string)")
        end
        if opts.client_secret:find("%c") then
            return config_error("client_secret must not contain control characters")
        end
        c.client_id = opts.client_id
    end

    for _, k in ipairs { "timeout", "connect_timeout" } do
        local v = opts[k]
        if v == nil then v = client.DEFAULTS[k] end
        if not positive(v) then return config_error(k .. " must be a number of seconds above 0") end
        c[k] = v
    end
    -- what every exchange passes to libcurl unless the deadline cuts it shorter
    c.timeout_ms = ceil(c.timeout * 1000)
    c.connect_timeout_ms = ceil(min(c.connect_timeout, c.timeout) * 1000)

    local policy, perr = retry.policy(opts.retry)
    if not policy then return config_error(perr) end
    c.policy = policy

    for _, k in ipairs { "on_request", "on_response", "sleep", "clock" } do
        if opts[k] ~= nil and type(opts[k]) ~= "function" then
            return config_error(k .. " must be a function")
        end
    end
    c.on_request, c.on_response = opts.on_request, opts.on_response
    -- the C core's monotonic clock and sleep; OpenResty passes ngx.now and ngx.sleep
    c.clock, c.sleep = opts.clock or core.monotonic, opts.sleep or core.sleep

    local ua = opts.user_agent
    if ua == nil then ua = default_user_agent() end
    if not header_text(ua) then
        return config_error("user_agent must be a non-empty string without control characters")
    end
    if opts.ca_file ~= nil then
        if type(opts.ca_file) ~= "string" then return config_error("ca_file must be a path") end
        local f = io.open(opts.ca_file, "rb")
        if not f then return config_error("ca_file cannot be read: " .. opts.ca_file) end
        f:close()
    end
    if opts.proxy ~= nil and not header_text(opts.proxy) then
        return config_error("proxy must be a URL without control characters")
    end
    local max_bytes = opts.max_response_bytes
    if max_bytes == nil then max_bytes = client.DEFAULTS.max_response_bytes end
    if not positive(max_bytes) or max_bytes ~= floor(max_bytes) then
        return config_error("max_response_bytes must be a whole number above 0")
    end
    if opts.token_store ~= nil and type(opts.token_store) ~= "table" then
        return config_error("token_store must be a table with get, set, clear, lock and unlock")
    end

    -- payload.compile raises on a wrong type inside the options; here every bad
    -- option is an error value, so the raise is caught and reported the same way
    local compiled_ok, compiled, cerr = pcall(payload.compile, {
        statuses = opts.statuses, utc_offset = opts.utc_offset, limits = opts.limits,
    })
    if not compiled_ok then cerr, compiled = compiled, nil end
    if not compiled then
        return config_error(errors.is_error(cerr) and cerr.message or tostring(cerr))
    end
    c.compiled = compiled

    local made, session = pcall(core.session, {
        ca_file = opts.ca_file, proxy = opts.proxy, user_agent = ua, max_response_bytes = max_bytes,
    })
    local proxy_password = opts.proxy and opts.proxy:match("^%a[%w+.-]*://[^:@/]*:([^@/]+)@")
    if not made then
        return config_error("cannot make the HTTP session: " ..
            errors.redact(tostring(session), { opts.client_secret, opts.token, proxy_password }))
    end
    c.session = session
    -- push_many's multi handle, made with the same options (kept in a closure:
    -- a proxy URL may carry a password)
    local ca_file, proxy = opts.ca_file, opts.proxy
    c.new_multi = function(max_in_flight)
        return core.multi {
            max_in_flight = max_in_flight, ca_file = ca_file, proxy = proxy,
            user_agent = ua, max_response_bytes = max_bytes,
        }
    end
    c.status_url = url.join(base, client.STATUS_PATH)
    c.token_url = url.join(base, client.TOKEN_PATH)

    -- Secrets are kept in closures only: table fields would show in any dump of
    -- the client (a test framework's failure report, inspect, a debugger).
    local client_secret, client_id = opts.client_secret, opts.client_id
    local tokens = token.new {
        fixed = opts.token,
        clock = c.clock,
        store = opts.token_store,
        fetch = function(ctx) return c:_fetch_token(ctx, client_id, client_secret) end,
    }
    c.tokens = tokens
    local fixed = opts.token
    -- a secret of a few bytes would blank those bytes out of every message while
    -- protecting nothing (it can be guessed), so only longer ones are scrubbed
    local function worth(secret)
        if type(secret) == "string" and #secret >= 4 then return secret end
        return false
    end
    local fixed_secrets = { worth(client_secret), worth(fixed), worth(proxy_password) }
    c.redact = function(text)
        return errors.redact(text, { fixed_secrets[1], fixed_secrets[2], fixed_secrets[3],
                                     worth((tokens.store:get())) })
    end
    c.headers_for = client.header_cache()
    return c
end

--- The PUT's headers for a token, rebuilt only when the token changes.
function client.header_cache()
    local for_token, headers
    return function(tok)
        if tok ~= for_token then
            headers = {
                "Content-Type: application/json",
                "Accept: application/json",
                "Authorization: Bearer " .. tok,
            }
            for_token = tok
        end
        return headers
    end
end

-- Anything a server or libcurl said, before it goes into an error.
function Client:_redact(s)
    if type(s) ~= "string" then return s end
    return self.redact(s)
end

local function call_hook(hook, info)
    -- a failing hook (a logger, a metrics client) must not break the push
    pcall(hook, info)
end

-- One HTTP exchange within the call's deadline (deadline_at, in the client's
-- clock; now: that clock's reading, when the caller has just taken it).
-- Returns res | nil, err (typed). Hook tables are made only when a hook is set.
function Client:_exchange(method, path, target, headers, body, deadline_at, attempt, now)
    now = now or self.clock()
    local remaining = deadline_at - now
    if remaining <= 0 then
        return nil, errors.new("transport", "OPERATION_TIMEDOUT",
            "the call's deadline of " .. self.policy.deadline .. " s passed before " .. method .. " " .. path)
    end
    local timeout_ms, connect_timeout_ms = self.timeout_ms, self.connect_timeout_ms
    if remaining < self.timeout then
        timeout_ms = ceil(remaining * 1000)
        connect_timeout_ms = min(connect_timeout_ms, timeout_ms)
    end
    local on_request, on_response = self.on_request, self.on_response
    if on_request then
        call_hook(on_request, { method = method, path = path, attempt = attempt })
    end
    local res, serr = self.session:request(method, target, headers, body, timeout_ms, connect_timeout_ms)
    if on_response then
        call_hook(on_response, {
            method = method, path = path, attempt = attempt,
            status = res and res.status or nil, error = serr and serr.code or nil,
            duration = self.clock() - now,
        })
    end
    if res then return res end
    return nil, self:_transport_error(serr, method, path)
end

function Client:_transport_error(serr, method, path)
    local code = serr.code or "UNKNOWN"
    local message = self:_redact(serr.message or code)
    if code == "TOO_LARGE" then
        return errors.new("too_large", "TOO_LARGE", method .. " " .. path .. ": " .. message)
    end
    return errors.new("transport", code, method .. " " .. path .. ": " .. message, {
        retryable = retry.transport_retryable(code), curl_code = serr.curl_code,
    })
end

-- The decoded envelope of a response, or nil when it is not one: a JSON object
-- with a numeric error_code.
local function envelope_of(body)
    if type(body) ~= "string" or body == "" then return nil, nil end
    local value = decode(body)
    if type(value) == "table" and type(value.error_code) == "number" then return value, value end
    return nil, value
end

local function code_text(n)
    if n == floor(n) and n > -1e15 and n < 1e15 then return format("%d", n) end
    return tostring(n)
end

-- Fields every error built from a response carries.
function Client:_response_fields(res, env)
    local fields = {
        http_status = res.status,
        body_excerpt = errors.excerpt(self:_redact(res.body), 200),
    }
    if env then
        fields.error_code = env.error_code
        if type(env.message) == "string" then
            fields.gateway_message = errors.excerpt(self:_redact(env.message), 300)
        end
    end
    return fields
end

local function is_success(status) return status >= 200 and status < 300 end

local null = json.null

-- The data of a decoded success envelope (error_code 0): {} when it has none.
local function data_of(env)
    local data = env.data
    if data == nil or data == null then return {} end
    return data
end

--- The gateway's data when `body` is its success envelope, else nil. (Also
--- used by ngx.lua, which reads a worker thread's 2xx answers on the event loop.)
function client.success_data(body)
    local env = decode(body)
    if type(env) == "table" and env.error_code == 0 then return data_of(env) end
    return nil
end

--- Read the answer to the status PUT: data | nil, err. (Also used by batch.lua.)
function Client:_status_outcome(res)
    local status = res.status
    local body = res.body
    -- the usual answer first: a 2xx envelope with error_code 0
    if status >= 200 and status < 300 and type(body) == "string" then
        local data = client.success_data(body)
        if data then return data end
    end
    return self:_status_failure(res)
end

-- Every other answer to the status PUT: nil, err.
function Client:_status_failure(res)
    local status = res.status
    local env, value = envelope_of(res.body)
    if status == 401 then
        local fields = self:_response_fields(res, env)
        return nil, errors.new("auth", "TOKEN_REJECTED", "the gateway rejected the token", fields)
    end
    if is_success(status) then
        if env and env.error_code == 0 then return data_of(env) end
        local fields = self:_response_fields(res, env)
        if env then
            local message = "the gateway refused the status: error_code " .. code_text(env.error_code)
            if fields.gateway_message then message = message .. " (" .. fields.gateway_message .. ")" end
            return nil, errors.new("api", "API_ERROR_" .. code_text(env.error_code), message, fields)
        end
        if value == nil then
            return nil, errors.new("decode", "BAD_JSON", "the answer to the status update is not JSON", fields)
        end
        return nil, errors.new("decode", "BAD_ENVELOPE",
            "the answer to the status update is JSON but not the gateway's envelope", fields)
    end
    return nil, self:_failure_status(res, env, "the status update")
end

-- A non-success, non-401 HTTP status: api when the gateway explained itself
-- with an envelope, http otherwise. Retryable per the policy's status list.
function Client:_failure_status(res, env, what)
    local status = res.status
    local fields = self:_response_fields(res, env)
    fields.retryable = retry.http_retryable(status)
    fields.retry_after = retry.parse_retry_after(res.retry_after)
    if env and env.error_code ~= 0 then
        local message = what .. " failed: error_code " .. code_text(env.error_code)
        if fields.gateway_message then message = message .. " (" .. fields.gateway_message .. ")" end
        return errors.new("api", "API_ERROR_" .. code_text(env.error_code), message, fields)
    end
    return errors.new("http", "HTTP_" .. status, what .. " failed", fields)
end

local function form_escape(s)
    return (s:gsub("[^%w%-%._~]", function(ch) return format("%%%02X", ch:byte()) end))
end

local TOKEN_HEADERS = { "Content-Type: application/x-www-form-urlencoded", "Accept: application/json" }

-- POST /auth/token once: token, expire_in | nil, err. Called by the token
-- manager (under its lock) inside an attempt of a push.
function Client:_fetch_token(ctx, client_id, client_secret)
    local body = "grant_type=client_credentials&client_id=" .. form_escape(client_id) ..
        "&client_secret=" .. form_escape(client_secret)
    local res, err = self:_exchange("POST", client.TOKEN_PATH, self.token_url, TOKEN_HEADERS, body,
        ctx.deadline_at, ctx.attempt)
    if not res then return nil, err end
    local status = res.status
    local env, value = envelope_of(res.body)
    if is_success(status) or status == 400 or status == 401 or status == 403 then
        local fields = self:_response_fields(res, env)
        -- a 2xx token answer may carry a token this client has not cached yet,
        -- which redaction would not know: quote none of it
        if is_success(status) then fields.body_excerpt = nil end
        if env and env.error_code ~= 0 then
            fields.error_code = env.error_code
            local message = "the gateway refused the credentials: error_code " .. code_text(env.error_code)
            if fields.gateway_message then message = message .. " (" .. fields.gateway_message .. ")" end
            return nil, errors.new("auth", "AUTH_FAILED", message, fields)
        end
        if not is_success(status) then
            return nil, errors.new("auth", "AUTH_FAILED",
                "the gateway refused the credentials", fields)
        end
        if not env then
            if value == nil then
                return nil, errors.new("decode", "BAD_JSON", "the token answer is not JSON", fields)
            end
            return nil, errors.new("decode", "BAD_ENVELOPE", "the token answer is not the gateway's envelope", fields)
        end
        local data = env.data
        local tok = type(data) == "table" and data.token or nil
        local expire_in = type(data) == "table" and data.expire_in or nil
        if type(tok) ~= "string" or type(expire_in) ~= "number" or expire_in <= 0 then
            return nil, errors.new("decode", "BAD_ENVELOPE",
                "the token answer lacks data.token or a positive data.expire_in", fields)
        end
        if not token.header_safe(tok) then
            return nil, errors.new("auth", "BAD_TOKEN",
                "the gateway sent a token with characters not allowed in a header", fields)
        end
        return tok, expire_in
    end
    return nil, self:_failure_status(res, env, "the token request")
end

local function validation_error(problems)
    local first = type(problems) == "table" and problems[1]
    local message = "the status is invalid"
    if type(first) == "table" then
        message = message .. ": " .. tostring(first.field or "?") .. ": " .. tostring(first.message or first.code)
        if #problems > 1 then message = message .. " (and " .. (#problems - 1) .. " more)" end
    elseif type(problems) == "string" then
        message = message .. ": " .. problems
        problems = { { field = "", code = "invalid", message = problems } }
    end
    return errors.new("validation", "INVALID_STATUS", message, { problems = problems })
end
client.validation_error = validation_error

--- Encode a status with the client's compiled options: body | nil, err.
function Client:encode(status)
    local body, problems = encode(status, self.compiled)
    if not body then return nil, validation_error(problems) end
    return body
end

-- Stop and report: the error says how many attempts were made and how long it took.
local function give_up(err, attempt, started, now, reason)
    err.attempts = attempt
    err.duration = now - started
    if err.retryable and reason and reason ~= "not_retryable" then err.gave_up = reason end
    return nil, err
end

--- Send `status`: data, meta | nil, err.
function Client:push(status)
    if type(status) ~= "table" then
        error("push expects a status table, not " .. type(status), 2)
    end
    if not self.session then
        return nil, errors.new("config", "CLOSED", "this client has been closed")
    end
    local body, problems = encode(status, self.compiled)
    if not body then return nil, validation_error(problems) end
    return self:_send_status(body)
end

-- The attempt loop of one status PUT (also the OpenResty worker's entry point).
-- The usual case, a cached token and one exchange, takes two clock readings and
-- makes no table but the meta it returns.
-- attempts_made and started (optional) continue a call whose first attempts
-- were made elsewhere (the OpenResty worker sends a task's first attempts
-- together over a multi handle), so that the attempt count and the deadline
-- stay those of the whole call.
function Client:_send_status(body, attempts_made, started)
    local clock, policy, tokens = self.clock, self.policy, self.tokens
    local now = clock()
    started = started or now
    local deadline_at = started + policy.deadline
    local attempt, renewed = attempts_made or 0, false
    while true do
        attempt = attempt + 1
        local tok, err = tokens:cached(now)
        if not tok then
            tok, err = tokens:get { deadline_at = deadline_at, attempt = attempt }
            now = nil -- the token request took time: read the clock again
        end
        if tok then
            local res
            res, err = self:_exchange("PUT", STATUS_PATH, self.status_url, self.headers_for(tok), body,
                deadline_at, attempt, now)
            if res then
                local data
                data, err = self:_status_outcome(res)
                if data then
                    return data, {
                        attempts = attempt,
                        duration = clock() - started,
                        http_status = res.status,
                        time_total = res.time_total,
                        time_connect = res.time_connect,
                        new_connections = res.new_connections,
                    }
                end
                -- a 401 for the token we hold: renew it and go again at once, once
                if res.status == 401 and not renewed and tokens:rejected(tok) then
                    renewed = true
                    err = nil
                end
            end
        end
        now = clock()
        if err then
            local delay, reason = retry.next_delay(policy, err, attempt, now - started)
            if not delay then return give_up(err, attempt, started, now, reason) end
            self.sleep(delay)
            now = clock()
        end
    end
end

--- Send many statuses concurrently; see choco.active_order.batch.
function Client:push_many(statuses, opts)
    return require("choco.active_order.batch").push_many(self, statuses, opts)
end

-- push_many's multi handle: one per client, kept across batches so that its
-- connections stay alive from one batch to the next; closed by close(). A batch
-- started from inside another (a callback) gets a handle of its own.
function Client:_batch_multi(max_in_flight)
    local m = self.multi
    if m and not self.multi_busy and self.multi_in_flight == max_in_flight then
        self.multi_busy = true
        return m
    end
    if self.multi_busy then return self.new_multi(max_in_flight) end
    if m then m:close() end
    m = self.new_multi(max_in_flight)
    self.multi, self.multi_in_flight, self.multi_busy = m, max_in_flight, true
    return m
end

-- A batch is over with `m`: keep the client's handle only when the batch ended
-- cleanly with nothing left in it (a raised error may leave transfers queued).
function Client:_batch_multi_done(m, clean)
    if m ~= self.multi then
        m:close()
        return
    end
    self.multi_busy = false
    if not (clean and self.session and m:in_flight() == 0) then
        m:close()
        self.multi, self.multi_in_flight = nil, nil
    end
end

--- Release the connections. Idempotent; the client cannot push afterwards.
function Client:close()
    if self.session then
        self.session:close()
        self.session = nil
    end
    if self.multi then
        self.multi:close()
        self.multi, self.multi_in_flight = nil, nil
    end
end

client.Client = Client

return client
