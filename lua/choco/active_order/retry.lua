-- The retry policy, in one place: which failures are worth another attempt, how
-- long to wait before it (capped exponential backoff with full jitter, or the
-- server's Retry-After), and when to stop (attempts, overall deadline).
-- PUT of a status is idempotent, so a retry can never apply a status twice.

local time = require "choco.active_order.time"
local floor, min = math.floor, math.min

local retry = {}

retry.DEFAULTS = {
    max_attempts = 4,     -- attempts in all, the first included
    base_delay = 0.2,     -- seconds; the backoff ceiling before attempt n+1 is base_delay * 2^(n-1)
    max_delay = 5,        -- seconds; the backoff ceiling never grows past this
    retry_after_cap = 30, -- seconds; a longer Retry-After ends the retries (err.retry_after says how long)
    deadline = 30,        -- seconds for the whole call, waits and attempts included
}

-- libcurl failures where nothing (or nothing complete) came back and another
-- attempt may well succeed. TLS certificate problems (PEER_FAILED_VERIFICATION,
-- SSL_*) are deliberately absent: they do not heal by trying again.
retry.TRANSPORT_RETRYABLE = {
    COULDNT_CONNECT = true,
    COULDNT_RESOLVE_HOST = true,
    COULDNT_RESOLVE_PROXY = true,
    OPERATION_TIMEDOUT = true,
    GOT_NOTHING = true,
    RECV_ERROR = true,
    SEND_ERROR = true,
    PARTIAL_FILE = true,
    HTTP2 = true,
    HTTP2_STREAM = true,
}

-- HTTP statuses that say "not now" rather than "not this request".
retry.HTTP_RETRYABLE = { [429] = true, [500] = true, [502] = true, [503] = true, [504] = true }

function retry.transport_retryable(code)
    return retry.TRANSPORT_RETRYABLE[code] == true
end

function retry.http_retryable(status)
    return retry.HTTP_RETRYABLE[status] == true
end

local function positive_number(v)
    return type(v) == "number" and v == v and v >= 0 and v < math.huge
end

--- Build a policy from the caller's `retry` option (nil = defaults).
--- Returns the policy or nil, message.
function retry.policy(opts)
    if opts ~= nil and type(opts) ~= "table" then
        return nil, "retry must be a table, not a " .. type(opts)
    end
    opts = opts or {}
    local p = {}
    for k, default in pairs(retry.DEFAULTS) do
        local v = opts[k]
        if v == nil then v = default end
        if not positive_number(v) then
            return nil, "retry." .. k .. " must be a non-negative number"
        end
        p[k] = v
    end
    for k in pairs(opts) do
        if retry.DEFAULTS[k] == nil and k ~= "random" then
            return nil, "unknown retry option: " .. tostring(k)
        end
    end
    if p.max_attempts < 1 or p.max_attempts ~= floor(p.max_attempts) then
        return nil, "retry.max_attempts must be a whole number of at least 1"
    end
    if p.deadline <= 0 then
        return nil, "retry.deadline must be more than 0 seconds"
    end
    if p.max_delay < p.base_delay then
        return nil, "retry.max_delay must be at least retry.base_delay"
    end
    if opts.random ~= nil and type(opts.random) ~= "function" then
        return nil, "retry.random must be a function returning a number in [0, 1)"
    end
    p.random = opts.random or retry.random
    return p
end

-- A small generator of our own for the jitter: seeding math.random would change
-- the host application's sequence, and unseeded 5.1 processes would all jitter
-- in step, which is what jitter is there to prevent.
local state
local function seed()
    local address = tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0
    state = (os.time() + floor(os.clock() * 1e6) + address) % 4294967296
end

--- A number in [0, 1).
function retry.random()
    if not state then seed() end
    state = (1664525 * state + 1013904223) % 4294967296
    return state / 4294967296
end

--- Full jitter: a uniform wait between 0 and the capped exponential ceiling.
function retry.backoff(policy, attempt)
    local ceiling = min(policy.max_delay, policy.base_delay * 2 ^ (attempt - 1))
    return ceiling * policy.random()
end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6,
                 Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

--- Seconds to wait from a Retry-After value: delay-seconds or an HTTP-date
--- (IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT"). `now` is the wall clock
--- in seconds since the epoch (os.time() by default). nil when unreadable.
function retry.parse_retry_after(value, now)
    if type(value) ~= "string" then return nil end
    value = value:match("^%s*(.-)%s*$")
    if value:match("^%d+$") then
        return tonumber(value)
    end
    local d, mon, y, hh, mm, ss =
        value:match("^%a%a%a, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
    if not d or not MONTHS[mon] then return nil end
    local at = time.days_from_civil(tonumber(y), MONTHS[mon], tonumber(d)) * 86400
        + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
    local wait = at - (now or os.time())
    return wait > 0 and wait or 0
end

-- An attempt started with less time than this left before the deadline would
-- mostly end in a timeout of our own making, hiding the gateway's real answer
-- (the error the caller gets is the last attempt's).
retry.MIN_ATTEMPT_WINDOW = 0.1

--- How long to wait before the next attempt after `err` ended attempt number
--- `attempt`, `elapsed` seconds into the call; nil, reason when there is to be
--- no next attempt ("not_retryable", "attempts", "retry_after", "deadline").
function retry.next_delay(policy, err, attempt, elapsed)
    if not err.retryable then return nil, "not_retryable" end
    if attempt >= policy.max_attempts then return nil, "attempts" end
    local delay
    if err.retry_after then
        if err.retry_after > policy.retry_after_cap then return nil, "retry_after" end
        delay = err.retry_after
    else
        delay = retry.backoff(policy, attempt)
    end
    if elapsed + delay + retry.MIN_ATTEMPT_WINDOW >= policy.deadline then return nil, "deadline" end
    return delay
end

return retry
