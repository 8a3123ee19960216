-- A token store (see choco.active_order.token) kept in an ngx.shared dictionary,
-- so that every nginx worker process and every worker-thread VM reads the same
-- token and only one of them renews it at a time. The lock is an `add` with an
-- expiry: a holder that dies (a killed worker) cannot keep the others waiting
-- longer than lock_ttl.
--
-- One dictionary entry holds "renew_at expires_at token", so a reader never sees
-- the token of one renewal with the deadlines of another. renew_at and expires_at
-- are in the clock of the token manager: it must be one clock for every process
-- sharing the dictionary (CLOCK_MONOTONIC is; the worker threads use it).

local tonumber, format, setmetatable = tonumber, string.format, setmetatable

local token_store = {}

local Meta = { __tostring = function() return "choco.active_order shared token store" end }

--- dict: an ngx.shared.DICT; key: the entry's name (one per base URL and client
--- id); opts: sleep(seconds) and clock() (blocking sleep is fine inside a worker
--- thread), lock_timeout (seconds to wait for another renewal), lock_ttl
--- (seconds after which an abandoned lock frees itself).
function token_store.new(dict, key, opts)
    local sleep, clock = opts.sleep, opts.clock
    local lock_timeout, lock_ttl = opts.lock_timeout or 10, opts.lock_ttl or 30
    local lock_key = key .. ":renewing"

    local function get()
        local packed = dict:get(key)
        if not packed then return nil end
        local renew_at, expires_at, value = packed:match("^(%S+) (%S+) (.+)$")
        if not value then return nil end
        return value, tonumber(renew_at), tonumber(expires_at)
    end

    return setmetatable({
        get = get,
        set = function(_, value, renew_at, expires_at, ttl)
            -- the entry outlives nobody's clock: the dictionary drops it with the token
            dict:set(key, format("%.6f %.6f %s", renew_at, expires_at, value), ttl or 0)
        end,
        clear = function(_, value)
            if get() == value then dict:delete(key) end
        end,
        lock = function()
            local deadline = clock() + lock_timeout
            local pause = 0.002
            while true do
                local ok, err = dict:add(lock_key, true, lock_ttl)
                if ok then return true end
                if err ~= "exists" then return nil, "the shared dictionary refused the lock: " .. tostring(err) end
                if clock() >= deadline then return nil, "another renewal did not finish in time" end
                sleep(pause)
                if pause < 0.02 then pause = pause * 2 end
            end
        end,
        unlock = function()
            dict:delete(lock_key)
        end,
    }, Meta)
end

--- The dictionary entry for a base URL and client id (no secret in it: keys can
--- be listed with get_keys).
function token_store.key_for(base_url, client_id)
    return "choco.active_order.token " .. tostring(base_url) .. " " .. tostring(client_id)
end

return token_store
