-- Writing answers: the contract's envelope on every gateway response, plain
-- JSON on the control API. Runs inside nginx only.
-- luacheck: globals ngx

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

--- Plain JSON for the control API.
function reply.json(http_status, value)
    return reply.raw(http_status, encoder.encode(value), JSON_TYPE)
end

return reply
