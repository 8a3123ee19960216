-- Writing answers: the contract's envelope on every gateway response, plain
-- JSON on the control API. Runs inside nginx only.

local cjson = require "cjson.safe"

local reply = {}

local JSON_TYPE = "application/json; charset=utf-8"
reply.JSON_TYPE = JSON_TYPE

-- error_code values the emulator uses (the contract documents only 0 and 4)
reply.CODES = {
    ok = 0,
    bad_request = 2,        -- the body cannot be parsed, or the media type is not accepted
    validation = 3,         -- a contract rule is broken (422)
    client_auth = 4,        -- POST /auth/token with wrong credentials (the contract's code)
    unauthenticated = 5,    -- missing, unknown, expired or revoked Bearer token (401)
    not_found = 6,          -- no such path
    method = 7,             -- wrong HTTP method
    too_large = 8,          -- request body over the emulator's limit (413)
    fault = 9,              -- a scripted http fault without an explicit error_code
}

local encoder = cjson.new()
-- OpenResty's cjson can leave "/" alone; Debian's lua-cjson always writes "\/"
if encoder.encode_escape_forward_slash then encoder.encode_escape_forward_slash(false) end
encoder.encode_sparse_array(true)
reply.encode = encoder.encode

--- Send `body` (a string) with a status and content type, and finish the request.
function reply.raw(status, body, content_type, headers)
    ngx.status = status
    ngx.header["Content-Type"] = content_type or JSON_TYPE
    if headers then
        for k, v in pairs(headers) do ngx.header[k] = v end
    end
    ngx.header["Content-Length"] = #body
    ngx.print(body)
    return ngx.exit(ngx.OK)
end

function reply.envelope_body(error_code, message, data)
    return encoder.encode {
        error_code = error_code,
        status = error_code == 0 and "success" or "error",
        message = message,
        data = data == nil and cjson.null or data,
    }
end

--- The contract's envelope: {error_code, status, message, data}.
function reply.envelope(http_status, error_code, message, data, headers)
    return reply.raw(http_status, reply.envelope_body(error_code, message, data), JSON_TYPE, headers)
end

function reply.error(http_status, code_name, message, data, headers)
    return reply.envelope(http_status, reply.CODES[code_name], message, data, headers)
end

-- The control API's own encoder: cjson writes at most 14 significant digits,
-- and a test compares user_id values of up to 16 with what it sent. Not on the
-- hot path, so plain Lua is fast enough.
local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function escape_char(c)
    return ESCAPES[c] or string.format("\\u%04x", c:byte())
end

local function is_array(t)
    local n = 0
    for k in pairs(t) do
        if type(k) ~= "number" then return false end
        n = n + 1
    end
    return n == #t and n > 0
end

local function encode_value(v, out)
    local t = type(v)
    if t == "string" then
        out[#out + 1] = '"' .. v:gsub('[%c"\\]', escape_char) .. '"'
    elseif t == "number" then
        if v ~= v or v == math.huge or v == -math.huge then
            out[#out + 1] = "null"
        elseif v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
            out[#out + 1] = string.format("%.0f", v)
        else
            out[#out + 1] = string.format("%.14g", v)
        end
    elseif t == "boolean" then
        out[#out + 1] = v and "true" or "false"
    elseif t == "table" then
        if is_array(v) then
            out[#out + 1] = "["
            for i = 1, #v do
                if i > 1 then out[#out + 1] = "," end
                encode_value(v[i], out)
            end
            out[#out + 1] = "]"
        elseif next(v) == nil and getmetatable(v) == reply.ARRAY then
            out[#out + 1] = "[]"
        else
            local keys = {}
            for k in pairs(v) do keys[#keys + 1] = tostring(k) end
            table.sort(keys)
            out[#out + 1] = "{"
            for i, k in ipairs(keys) do
                if i > 1 then out[#out + 1] = "," end
                encode_value(k, out)
                out[#out + 1] = ":"
                local x = v[k]
                if x == nil then x = v[tonumber(k)] end
                encode_value(x, out)
            end
            out[#out + 1] = "}"
        end
    else
        out[#out + 1] = "null"   -- cjson.null and anything else
    end
end

--- Mark a table so that, empty, it is written as [] rather than {}.
reply.ARRAY = {}
function reply.array(t)
    return setmetatable(t or {}, reply.ARRAY)
end

function reply.encode_exact(value)
    local out = {}
    encode_value(value, out)
    return table.concat(out)
end

--- Plain JSON for the control API (keys sorted, numbers exact).
function reply.json(http_status, value)
    return reply.raw(http_status, reply.encode_exact(value), JSON_TYPE)
end

return reply
