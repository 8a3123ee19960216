-- The base URL of the gateway: checked once when a client is made, then joined
-- with each endpoint's path. Plain http is a way to leak the token to anyone on
-- the path, so it is allowed only to this machine unless the caller says so.

local url = {}

local function is_loopback(host)
    host = host:lower()
    if host == "localhost" or host == "[::1]" then return true end
    local a, b, c, d = host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    if not a then return false end
    a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
    return a == 127 and b <= 255 and c <= 255 and d <= 255
end
url.is_loopback = is_loopback

--- Parse and check a base URL. Returns { scheme, host, port, prefix, base } or
--- nil, message. `base` has no trailing "/", so join() adds exactly one.
function url.parse_base(s, allow_insecure_http)
    if type(s) ~= "string" or s == "" then
        return nil, "base_url is required (for example ao.TEST or ao.PRODUCTION)"
    end
    if s:find("[%c%s]") then
        return nil, "base_url must not contain spaces or control characters"
    end
    local scheme, rest = s:match("^(%a[%w+.-]*)://(.*)$")
    if not scheme then
        return nil, "base_url must start with https:// (got no scheme)"
    end
    scheme = scheme:lower()
    if scheme ~= "https" and scheme ~= "http" then
        return nil, "base_url scheme must be https or http, not " .. scheme
    end
    local authority, path = rest:match("^([^/?#]*)(.*)$")
    if authority:find("@", 1, true) then
        -- credentials in a URL end up in logs and error messages
        return nil, "base_url must not carry user:password@; pass client_id and client_secret instead"
    end
    if path:find("[?#]") then
        return nil, "base_url must not have a query or a fragment"
    end
    local host, port = authority:match("^(%[[%x:.]+%]):?(%d*)$")
    if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
    if not host or host == "" then
        return nil, "base_url has no host"
    end
    if port ~= "" and (tonumber(port) < 1 or tonumber(port) > 65535) then
        return nil, "base_url port must be between 1 and 65535"
    end
    if scheme == "http" and not allow_insecure_http and not is_loopback(host) then
        return nil, "base_url uses plain http:// to " .. host ..
            ", which would send the token unencrypted; use https:// (or set allow_insecure_http = true)"
    end
    local prefix = path:gsub("/+$", "")
    return {
        scheme = scheme,
        host = host,
        port = port ~= "" and tonumber(port) or nil,
        prefix = prefix,
        base = scheme .. "://" .. authority .. prefix,
    }
end

--- Join a parsed base and an endpoint path with exactly one "/".
function url.join(parsed, path)
    return parsed.base .. "/" .. (path:gsub("^/+", ""))
end

return url
