-- Errors are values: a table with a stable `kind` and `code`, a plain-English
-- `message`, and a one-line __tostring. Every error of the library is made here,
-- so that the shape (and the promise that no secret is ever carried) holds in
-- one place.

local setmetatable, tostring, type, pairs = setmetatable, tostring, type, pairs
local concat = table.concat

local errors = {}

-- The kinds a caller can branch on; documented in the README.
errors.KINDS = {
    validation = true, -- the status breaks a rule of the contract (problems lists them)
    auth = true,       -- the gateway refused the credentials or the token
    transport = true,  -- no HTTP answer: connection, TLS, timeout (code is libcurl's name)
    http = true,       -- an HTTP status that is not a success and has no usable envelope
    api = true,        -- the gateway's envelope says error_code ~= 0
    decode = true,     -- the answer is not the JSON envelope the contract promises
    too_large = true,  -- the answer is over the configured size cap
    config = true,     -- the client or a call was configured wrongly
    rules = true,      -- a mapping script or a template could not be loaded or rendered
}

local Error = {}
Error.__index = Error

local function one_line(s)
    return (tostring(s):gsub("[\r\n]+", " "))
end

function Error.__tostring(e)
    local parts = { e.kind, "/", e.code, ": ", one_line(e.message) }
    if e.http_status then parts[#parts + 1] = " (HTTP " .. e.http_status .. ")" end
    if e.attempts and e.attempts > 1 then
        parts[#parts + 1] = " after " .. e.attempts .. " attempts"
    end
    return concat(parts)
end

--- Make an error. `fields` (optional) is copied into the error: http_status,
--- error_code, gateway_message, body_excerpt, problems, retryable, attempts, ...
function errors.new(kind, code, message, fields)
    local e = { kind = kind, code = code, message = message, retryable = false, attempts = 0 }
    if fields then
        for k, v in pairs(fields) do e[k] = v end
    end
    return setmetatable(e, Error)
end

function errors.is_error(value)
    return type(value) == "table" and getmetatable(value) == Error
end

--- A short, printable excerpt of a response body: at most `limit` bytes, cut on a
--- UTF-8 boundary, control characters shown as spaces.
function errors.excerpt(body, limit)
    if type(body) ~= "string" then return nil end
    limit = limit or 200
    local s = body
    if #s > limit then
        local cut = limit
        -- back off continuation bytes so the excerpt stays valid UTF-8
        while cut > 0 and s:byte(cut + 1) and s:byte(cut + 1) >= 0x80 and s:byte(cut + 1) < 0xC0 do
            cut = cut - 1
        end
        s = s:sub(1, cut) .. "..."
    end
    return (s:gsub("[%c]", " "))
end

--- Remove every occurrence of each secret from a string (for messages that
--- quote something a server or libcurl said).
function errors.redact(s, secrets)
    if type(s) ~= "string" or not secrets then return s end
    for i = 1, #secrets do
        local secret = secrets[i]
        if type(secret) == "string" and #secret > 0 then
            local start = 1
            while true do
                local a, b = s:find(secret, start, true)
                if not a then break end
                s = s:sub(1, a - 1) .. "[REDACTED]" .. s:sub(b + 1)
                start = a + #"[REDACTED]"
            end
        end
    end
    return s
end

return errors
