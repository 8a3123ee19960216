-- Scripted faults: what the control API accepts (checked here), and how each kind
-- misbehaves when a request consumes it.
--
-- A fault replaces the answer of the request that consumes it; that request is
-- not processed (nothing recorded, no token issued) unless the fault says
-- `commit = true` (processed, then the answer is lost or broken), which lets a
-- test tell "the gateway never saw it" from "the gateway applied it but the
-- answer went missing". `delay` and `trickle` always answer normally, late.

local reply = require "choco.active_order.emulator.reply"

local faults = {}

local REASONS = {
    [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
    [408] = "Request Timeout", [409] = "Conflict", [422] = "Unprocessable Entity", [429] = "Too Many Requests",
    [500] = "Internal Server Error", [502] = "Bad Gateway", [503] = "Service Unavailable",
    [504] = "Gateway Timeout",
}

faults.ENDPOINTS = { status = true, token = true }

local KINDS = {
    http = { status = true, retry_after = true, error_code = true, message = true, commit = true },
    delay = { ms = true },
    close = { commit = true },
    truncate = { commit = true },
    not_json = { status = true, body = true, commit = true },
    html = { status = true, commit = true },
    oversize = { bytes = true, commit = true },
    trickle = { ms = true, chunks = true },
}

local function integer_in(v, lo, hi)
    return type(v) == "number" and v == math.floor(v) and v >= lo and v <= hi
end

--- Check one fault from the control API; returns the normalised fault or nil, message.
function faults.check(f)
    if type(f) ~= "table" then return nil, "a fault must be an object" end
    local allowed = KINDS[f.kind]
    if not allowed then return nil, "unknown fault kind " .. tostring(f.kind) end
    for k in pairs(f) do
        if k ~= "kind" and not allowed[k] then
            return nil, "fault " .. f.kind .. " has no field " .. tostring(k)
        end
    end
    if f.commit ~= nil and type(f.commit) ~= "boolean" then return nil, "commit must be a boolean" end
    local kind = f.kind
    if kind == "http" then
        if not integer_in(f.status, 400, 599) then return nil, "http fault needs a status 400..599" end
        if f.retry_after ~= nil and not (integer_in(f.retry_after, 0, 86400) or type(f.retry_after) == "string") then
            return nil, "retry_after must be seconds (integer) or an HTTP date (string)"
        end
        if f.error_code ~= nil and not integer_in(f.error_code, -2147483648, 2147483647) then
            return nil, "error_code must be an integer"
        end
        if f.message ~= nil and type(f.message) ~= "string" then return nil, "message must be a string" end
    elseif kind == "delay" then
        if not (type(f.ms) == "number" and f.ms >= 0 and f.ms <= 600000) then
            return nil, "delay needs ms between 0 and 600000"
        end
    elseif kind == "not_json" then
        if f.status ~= nil and not integer_in(f.status, 200, 599) then return nil, "status must be 200..599" end
        if f.body ~= nil and type(f.body) ~= "string" then return nil, "body must be a string" end
    elseif kind == "html" then
        if f.status ~= nil and not integer_in(f.status, 200, 599) then return nil, "status must be 200..599" end
    elseif kind == "oversize" then
        if f.bytes ~= nil and not integer_in(f.bytes, 1, 256 * 1048576) then
            return nil, "bytes must be 1..268435456"
        end
    elseif kind == "trickle" then
        if f.ms ~= nil and not (type(f.ms) == "number" and f.ms >= 0 and f.ms <= 60000) then
            return nil, "trickle ms must be 0..60000"
        end
        if f.chunks ~= nil and not integer_in(f.chunks, 1, 10000) then return nil, "chunks must be 1..10000" end
    end
    return f
end

--- Whether the request is processed before the fault answers.
function faults.processes(f)
    return f.commit == true or f.kind == "trickle"
end

local HTML = '<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n<center><h1>%d %s</h1></center>\r\n'
    .. '<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n'

local oversize_cache = {}

local function oversize_body(bytes)
    local body = oversize_cache[bytes]
    if body then return body end
    local head = '{"error_code":0,"status":"success","message":"oversize","data":{"padding":"'
    local tail = '"}}'
    local pad = bytes - #head - #tail
    if pad < 0 then
        body = string.rep(" ", bytes)
    else
        body = head .. string.rep("x", pad) .. tail
    end
    oversize_cache = { [bytes] = body }   -- keep one, not every size ever asked for
    return body
end

--- Answer with the fault (the request may have been processed already).
--- `endpoint` picks the 401 error_code; `normal` is the answer the request would
--- have had: {status, body, headers} (used by truncate and trickle).
function faults.answer(f, endpoint, normal)
    local kind = f.kind
    if kind == "http" then
        local status = f.status
        local headers
        if f.retry_after ~= nil or status == 429 then
            headers = { ["Retry-After"] = tostring(f.retry_after or 1) }
        end
        if status == 401 then
            headers = headers or {}
            headers["WWW-Authenticate"] = 'Bearer realm="choco-gateway-emulator"'
        end
        local code = f.error_code
        if code == nil then
            if status == 401 then
                code = endpoint == "token" and reply.CODES.client_auth or reply.CODES.unauthenticated
            else
                code = reply.CODES.fault
            end
        end
        return reply.envelope(status, code, f.message or REASONS[status] or "Error", nil, headers)
    elseif kind == "close" then
        return ngx.exit(444)
    elseif kind == "truncate" then
        local body = normal and normal.body or reply.envelope_body(0, "truncated", nil)
        ngx.status = normal and normal.status or 200
        ngx.header["Content-Type"] = reply.JSON_TYPE
        ngx.header["Content-Length"] = #body
        ngx.print(body:sub(1, math.floor(#body / 2)))
        ngx.flush(true)
        return ngx.exit(444)
    elseif kind == "not_json" then
        return reply.raw(f.status or 200, f.body or "Service is temporarily unavailable. Please try again.\n",
            reply.JSON_TYPE)
    elseif kind == "html" then
        local status = f.status or 502
        local reason = REASONS[status] or "Error"
        return reply.raw(status, HTML:format(status, reason, status, reason), "text/html")
    elseif kind == "oversize" then
        local body = oversize_body(f.bytes or 5242880)
        ngx.status = 200
        ngx.header["Content-Type"] = reply.JSON_TYPE
        ngx.header["Content-Length"] = #body
        local step = 1048576
        for i = 1, #body, step do
            ngx.print(body:sub(i, i + step - 1))
            local ok = ngx.flush(true)
            if not ok then break end   -- the client gave up reading: fine
        end
        return ngx.exit(ngx.OK)
    elseif kind == "trickle" then
        local body = normal.body
        local chunks = math.min(f.chunks or 10, #body)
        local pause = (f.ms or 50) / 1000
        ngx.status = normal.status
        ngx.header["Content-Type"] = reply.JSON_TYPE
        if normal.headers then
            for k, v in pairs(normal.headers) do ngx.header[k] = v end
        end
        ngx.header["Content-Length"] = #body
        local size = math.ceil(#body / chunks)
        for i = 1, #body, size do
            if i > 1 then ngx.sleep(pause) end
            ngx.print(body:sub(i, i + size - 1))
            local ok = ngx.flush(true)
            if not ok then break end
        end
        return ngx.exit(ngx.OK)
    end
    error("unknown fault kind " .. tostring(kind))
end

return faults
