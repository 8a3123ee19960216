-- The emulator's memory, kept in nginx shared dictionaries so that every worker
-- sees the same state: counters and fault queues (ao_emulator_meta), tokens
-- (ao_emulator_tokens, expiring by themselves) and order histories
-- (ao_emulator_orders). Every write is one atomic dictionary operation, so a
-- push costs a handful of them and no lock.
-- luacheck: read globals ngx

local cjson = require "cjson.safe"
local array = require("choco.active_order.emulator.reply").array

local find, sub, concat = string.find, string.sub, table.concat

local state = {}

local meta, tokens, orders

function state.init()
    meta = assert(ngx.shared.ao_emulator_meta, "lua_shared_dict ao_emulator_meta is missing")
    tokens = assert(ngx.shared.ao_emulator_tokens, "lua_shared_dict ao_emulator_tokens is missing")
    orders = assert(ngx.shared.ao_emulator_orders, "lua_shared_dict ao_emulator_orders is missing")
end

function state.count(name)
    return meta:incr(name, 1, 0)
end

local function counter(name)
    return meta:get(name) or 0
end

--- Tokens: the dictionary entry expires with the token; the stored deadline makes
--- expiry exact even between the dictionary's own clean-ups.
function state.store_token(token, ttl)
    local ok, err = tokens:set(token, ngx.now() + ttl, ttl)
    if not ok then return nil, err end
    meta:incr("tokens_issued", 1, 0)
    return true
end

function state.token_valid(token)
    local deadline = tokens:get(token)
    return deadline ~= nil and ngx.now() < deadline
end

--- Revoke one token, or every token when `token` is nil. Returns how many.
function state.revoke(token)
    if token then
        local known = tokens:get(token) ~= nil
        tokens:delete(token)
        return known and 1 or 0
    end
    local keys = tokens:get_keys(0)
    tokens:flush_all()
    tokens:flush_expired()
    return #keys
end

-- ngx.now() changes once per event-loop turn, which many requests share under
-- load: format it once per value.
local last_now, last_now_text
local function now_seconds()
    local now = ngx.now()
    if now ~= last_now then last_now, last_now_text = now, string.format("%.3f", now) end
    return last_now_text
end

--- Record one accepted status. Returns the order's {id, created_at, count}.
function state.record(merchant_order_id, external_status, encoding, body, warnings, now_text)
    local okey = "o:" .. merchant_order_id
    local info = orders:get(okey)
    if not info then
        local id = meta:incr("orders", 1, 0)
        info = id .. "\t" .. now_text
        local ok, err = orders:add(okey, info)
        if not ok and err == "exists" then
            meta:incr("orders", -1, 0)  -- another worker saw the order first
            info = orders:get(okey)
        end
    end
    local n = orders:incr("n:" .. merchant_order_id, 1, 0)
    local seq = meta:incr("seq", 1, 0)
    local entry = concat({ now_seconds(), seq, external_status, encoding,
        warnings and concat(warnings, "\30") or "", body }, "\t")
    orders:set("h:" .. merchant_order_id .. ":" .. n, entry)
    local cap = state.history_cap
    if cap and n > cap then orders:delete("h:" .. merchant_order_id .. ":" .. (n - cap)) end
    local tab = find(info, "\t", 1, true)
    return { id = tonumber(sub(info, 1, tab - 1)), created_at = sub(info, tab + 1), count = n }
end

local function split_entry(entry)
    local fields, start = {}, 1
    for _ = 1, 5 do
        local tab = find(entry, "\t", start, true)
        fields[#fields + 1] = sub(entry, start, tab - 1)
        start = tab + 1
    end
    fields[6] = sub(entry, start)
    return fields
end

--- An order's history, oldest first, or nil when the order was never accepted.
--- `decode(encoding, body)` turns a stored body back into a status table.
function state.order(merchant_order_id, decode)
    local info = orders:get("o:" .. merchant_order_id)
    if not info then return nil end
    local tab = find(info, "\t", 1, true)
    local n = orders:get("n:" .. merchant_order_id) or 0
    local history = {}
    local first = 1
    if state.history_cap and n > state.history_cap then first = n - state.history_cap + 1 end
    for i = first, n do
        local entry = orders:get("h:" .. merchant_order_id .. ":" .. i)
        if entry then
            local f = split_entry(entry)
            local warnings = {}
            for w in f[5]:gmatch("[^\30]+") do warnings[#warnings + 1] = w end
            history[#history + 1] = {
                at = tonumber(f[1]), seq = tonumber(f[2]), status = f[3], encoding = f[4],
                warnings = array(warnings), body = decode(f[4], f[6]), raw = f[6],
            }
        end
    end
    local last = history[#history]
    return {
        merchant_order_id = merchant_order_id,
        id = tonumber(sub(info, 1, tab - 1)),
        created_at = sub(info, tab + 1),
        count = n,
        dropped = n - #history,
        last = last and last.status or cjson.null,
        last_body = last and last.body or cjson.null,
        history = array(history),
    }
end

--- Every merchant_order_id seen (for the control API; not for hot paths).
function state.order_ids()
    local ids = {}
    for _, key in ipairs(orders:get_keys(0)) do
        if sub(key, 1, 2) == "o:" then ids[#ids + 1] = sub(key, 3) end
    end
    table.sort(ids)
    return array(ids)
end

--- Fault queues, one per endpoint, consumed in order.
function state.push_fault(endpoint, encoded)
    return meta:rpush("faults:" .. endpoint, encoded)
end

function state.next_fault(endpoint)
    return meta:lpop("faults:" .. endpoint)
end

function state.pending_faults(endpoint)
    return meta:llen("faults:" .. endpoint) or 0
end

function state.summary()
    return {
        requests = {
            token = counter("req:token"), status = counter("req:status"),
            control = counter("req:control"), other = counter("req:other"),
        },
        connections = counter("connections"),
        tokens_issued = counter("tokens_issued"),
        orders = counter("orders"),
        accepted = counter("seq"),   -- every accepted status takes the next arrival number
        rejected = {
            auth = counter("rejected:auth"), validation = counter("rejected:validation"),
            bad_request = counter("rejected:bad_request"),
        },
        faults_applied = counter("faults_applied"),
        faults_pending = { status = state.pending_faults("status"), token = state.pending_faults("token") },
    }
end

function state.reset()
    for _, dict in ipairs { meta, tokens, orders } do
        dict:flush_all()
        dict:flush_expired()
    end
end

return state
