-- The bearer token: fetched from POST /auth/token, cached, renewed shortly before
-- it expires, and renewed once more when the gateway rejects it (but only if the
-- rejected token is still the one cached: another caller may have renewed it
-- already). The cache and the lock are a pluggable "store", so that several
-- processes (OpenResty workers) can share one token and one renewal at a time:
--
--   store:get()                   -> token, renew_at, expires_at   (nil when empty)
--   store:set(token, renew_at, expires_at, ttl)    (ttl: seconds, for stores that expire keys)
--   store:clear(token)            forget `token` if it is still the one stored
--   store:lock()                  -> true | nil, reason   (waits for another renewal to finish;
--                                                         only one holder at a time)
--   store:unlock()
--
-- renew_at and expires_at are in the manager's clock (the `clock` passed to token.new), so a
-- store shared across processes must go with a clock they share (ngx.now).
-- The default store lives in this process: plain Lua runs one push at a time,
-- so its lock only guards against re-entry.

local errors = require "choco.active_order.errors"

local token = {}

-- Secrets live in closures, never in table fields: pretty-printers (a test
-- framework's failure report, inspect, a debug dump) walk tables, not upvalues.
local StoreMeta = { __tostring = function() return "choco.active_order token store" end }

--- The default store: this process only.
function token.memory_store()
    local value, renew_at, expires_at, locked = nil, nil, nil, false
    return setmetatable({
        get = function() return value, renew_at, expires_at end,
        set = function(_, v, r, e) value, renew_at, expires_at = v, r, e end,
        clear = function(_, v)
            if value == v then value, renew_at, expires_at = nil, nil, nil end
        end,
        lock = function()
            if locked then return nil, "a token renewal is already under way" end
            locked = true
            return true
        end,
        unlock = function() locked = false end,
    }, StoreMeta)
end

-- A fixed token: always there, never renewed.
local function fixed_store(value)
    local function nothing() end
    return setmetatable({
        get = function() return value, math.huge, math.huge end,
        set = nothing, clear = nothing, unlock = nothing,
        lock = function() return true end,
    }, StoreMeta)
end

--- A value can go into an Authorization header: visible ASCII only, so no
--- CR, LF or NUL can split the header.
function token.header_safe(value)
    return type(value) == "string" and value ~= "" and not value:find("[^\33-\126]")
end

--- Renew this long before expiry: min(60 s, 10% of the lifetime).
function token.renew_margin(ttl)
    return math.min(60, ttl * 0.1)
end

local Manager = {}
Manager.__index = Manager

-- No secret in tostring: the manager holds the cached token.
function Manager.__tostring() return "choco.active_order token manager" end

--- opts: fetch = function(ctx) -> token, expire_in | nil, err (does the HTTP);
---       clock = function() -> seconds; store = (optional) see above;
---       fixed = a token to use as is (no fetch, no renewal).
function token.new(opts)
    return setmetatable({
        fetch = opts.fetch,
        clock = opts.clock,
        fixed = opts.fixed ~= nil,
        store = opts.fixed and fixed_store(opts.fixed) or opts.store or token.memory_store(),
        renewals = 0,
    }, Manager)
end

--- The cached token when it needs no renewal at `now` (the manager's clock),
--- else nil: the hot path's check, with no lock and no table. Then get() renews.
function Manager:cached(now)
    local cached, renew_at = self.store:get()
    if cached and renew_at and now < renew_at then return cached end
    return nil
end

--- A token to send. `ctx` is passed through to fetch (deadline, attempt).
--- Returns token | nil, err.
function Manager:get(ctx)
    local store = self.store
    local now = self.clock()
    local cached, renew_at = store:get()
    if cached and renew_at and now < renew_at then return cached end
    local expires_at

    local locked, why = store:lock()
    if not locked then
        -- someone else is renewing: the token they replace, or theirs if it has
        -- landed, will do as long as it is inside its lifetime
        local current, _, current_expiry = store:get()
        if current and current_expiry and self.clock() < current_expiry then return current end
        return nil, errors.new("auth", "TOKEN_BUSY",
            "could not renew the token: " .. tostring(why), { retryable = true })
    end
    -- another holder of the lock may have renewed while we waited for it
    cached, renew_at, expires_at = store:get()
    now = self.clock()
    if cached and renew_at and now < renew_at then
        store:unlock()
        return cached
    end
    local started = now
    local ok, fresh, expire_in = pcall(self.fetch, ctx)
    if not ok then
        store:unlock()
        error(fresh, 0)
    end
    if not fresh then
        store:unlock()
        -- renewal failed, but a token still inside its lifetime is still good
        if cached and expires_at and self.clock() < expires_at then return cached end
        return nil, expire_in
    end
    self.renewals = self.renewals + 1
    store:set(fresh, started + expire_in - token.renew_margin(expire_in), started + expire_in, expire_in)
    store:unlock()
    return fresh
end

--- The gateway answered 401 to `rejected`. Returns true when a renewal is worth
--- trying (the rejected token is gone from the cache, or another caller has
--- already replaced it); false for a fixed token, which cannot be renewed.
function Manager:rejected(rejected)
    if self.fixed then return false end
    self.store:clear(rejected)
    return true
end

--- Forget the cached token (for example after the credentials changed).
function Manager:reset()
    local cached = self.store:get()
    if cached then self.store:clear(cached) end
end

return token
