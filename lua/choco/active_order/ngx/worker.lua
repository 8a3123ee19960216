-- The half of choco.active_order.ngx that runs inside nginx worker threads
-- (ngx.run_worker_thread). Each thread VM is kept and reused by lua-nginx-module,
-- and with it this module's state: one client per configuration per VM, hence
-- one kept-alive libcurl connection per VM. Blocking here (libcurl, retry
-- sleeps, waiting for a token renewal) blocks this thread only, never nginx's
-- event loop.
--
-- Values cross the thread boundary by copy: strings, numbers, booleans, nil and
-- tables of those. Errors go back as plain tables and are made into the
-- library's error values again on the event-loop side.

local ffi = require "ffi"

local type, pairs, pcall, tostring = type, pairs, pcall, tostring

local worker = {}

-- The answer when this VM has no client for the configuration yet: the caller
-- sends the configuration once, with the same call.
worker.NEED_CONFIG = "need_config"

-- A clock every process shares (the shared token store keeps deadlines in it)
-- and a sleep that blocks this thread only. ngx.now is no use here: its cached
-- time moves only when the event loop wakes up.
pcall(ffi.cdef, [[
    struct choco_ao_timespec { long tv_sec; long tv_nsec; };
    int clock_gettime(int clock_id, struct choco_ao_timespec *tp);
    int poll(void *fds, unsigned long nfds, int timeout);
]])
local CLOCK_MONOTONIC = 1
local now_buffer = ffi.new("struct choco_ao_timespec")

function worker.clock()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, now_buffer)
    return tonumber(now_buffer.tv_sec) + tonumber(now_buffer.tv_nsec) * 1e-9
end

function worker.sleep(seconds)
    if seconds > 0 then ffi.C.poll(nil, 0, math.ceil(seconds * 1000)) end
end

local clients = {}


local function build_client(config)
    local opts = {}
    for k, v in pairs(config.client) do opts[k] = v end
    opts.clock, opts.sleep = worker.clock, worker.sleep
    if config.shared_dict then
        local dict = ngx.shared[config.shared_dict]
        if not dict then
            return nil, { kind = "config", code = "NO_SHARED_DICT",
                message = "lua_shared_dict " .. config.shared_dict .. " is not declared in nginx.conf" }
        end
        local token_store = require "choco.active_order.ngx.token_store"
        local timeout = opts.timeout or 10
        opts.token_store = token_store.new(dict, token_store.key_for(opts.base_url, opts.client_id), {
            clock = worker.clock, sleep = worker.sleep,
            lock_timeout = timeout + 1, lock_ttl = timeout + (opts.connect_timeout or 3) + 1,
        })
    end
    return require("choco.active_order").new(opts)
end

-- Programmer errors raised inside the thread (a wrong type deep in a status)
-- come back as a config error rather than a Lua error in nginx's log.
local function raised(what, message)
    return { kind = "config", code = "RAISED", message = what .. " raised: " .. tostring(message) }
end

-- statuses one task carries at most, per configuration: the size of its multi handle
local batch_sizes = {}

-- The client of configuration `id` in this VM, made on first use.
local function client_for(id, config)
    local client = clients[id]
    if client then return client end
    if type(config) ~= "table" then return nil, worker.NEED_CONFIG end
    local ok, made, err = pcall(build_client, config)
    if not ok then return nil, raised("creating the client", made) end
    if not made then return nil, err end
    clients[id] = made
    batch_sizes[id] = config.batch_max
    return made
end

local function config_batch_max(id, n)
    return math.max(batch_sizes[id] or n, n)
end

-- Fields of meta, in the order push_bodies flattens them (one table per
-- result would cost the event loop a table copy each).
worker.META_FIELDS = { "attempts", "duration", "http_status", "time_total", "time_connect", "new_connections" }
local META_FIELDS = worker.META_FIELDS
local META_WIDTH = #META_FIELDS

local retry = require "choco.active_order.retry"
local ceil, min, max = math.ceil, math.min, math.max
local STATUS_PATH = require("choco.active_order.client").STATUS_PATH

local function store_meta(metas, i, meta)
    local k = (i - 1) * META_WIDTH
    for f = 1, META_WIDTH do metas[k + f] = meta[META_FIELDS[f]] or false end
end

-- The client's own attempt loop for body i (token, retries, one renewal on a
-- 401), continuing the count and the deadline of the attempts already made
-- for it in this task.
local function send_alone(client, bodies, i, datas, metas, errs, attempts_made, started)
    local ok, data, meta = pcall(client._send_status, client, bodies[i], attempts_made, started)
    if not ok then
        datas[i], errs[i] = false, raised("push", data)
    elseif data == nil then
        datas[i], errs[i] = false, meta
    else
        datas[i] = data
        store_meta(metas, i, meta)
    end
end

-- First attempts of n bodies at once over the client's multi handle (kept
-- across tasks, so its connections stay alive). Returns the indices whose
-- attempt failed in a way the client's attempt loop should go on with, and
-- the pause the retry policy asks before that.
local function first_attempts(client, tok, bodies, n, datas, metas, errs, started, multi)
    local clock, policy = client.clock, client.policy
    local headers = client.headers_for(tok)
    local timeout = min(client.timeout, policy.deadline)
    local timeout_ms, connect_ms = ceil(timeout * 1000), ceil(min(client.connect_timeout, timeout) * 1000)
    local url = client.status_url
    for i = 1, n do multi:add(i, "PUT", url, headers, bodies[i], timeout_ms, connect_ms) end
    local again, pause, rejected = {}, 0, false
    local left = n
    while left > 0 do
        local finished = multi:perform(1000)
        for j = 1, #finished do
            local d = finished[j]
            local i, res = d.id, d.res
            left = left - 1
            local data, err
            if res then
                data, err = client:_status_outcome(res)
            else
                err = client:_transport_error(d.err, "PUT", STATUS_PATH)
            end
            local now = clock()
            if data then
                datas[i] = data
                local k = (i - 1) * META_WIDTH
                metas[k + 1], metas[k + 2], metas[k + 3] = 1, now - started, res.status
                metas[k + 4], metas[k + 5] = res.time_total or false, res.time_connect or false
                metas[k + 6] = res.new_connections or false
            elseif res and res.status == 401 and client.tokens:rejected(tok) then
                -- renewed once by whichever status asks for the token first
                rejected = true
                again[#again + 1] = i
            else
                local delay, reason = retry.next_delay(policy, err, 1, now - started)
                if delay then
                    pause = max(pause, delay)
                    again[#again + 1] = i
                else
                    err.attempts, err.duration = 1, now - started
                    if err.retryable and reason and reason ~= "not_retryable" then err.gave_up = reason end
                    datas[i], errs[i] = false, err
                end
            end
        end
    end
    if rejected then pause = 0 end
    return again, pause
end

--- push_bodies(id, config, bodies) -> datas, metas, errs | NEED_CONFIG | false, err
--- One thread task carries one status or several, already validated and
--- encoded on the event loop (a string crosses into a thread for the price of
--- one copy; a status table costs a walk of every field). Their first attempts
--- go out together over the client's multi handle (the event loop never puts
--- two statuses of one order in a task); a status whose first attempt fails in
--- a way worth retrying then goes through the client's own attempt loop
--- (token renewal, retry policy), after the pause the policy asks for. id names
--- the configuration; config is sent only when this VM asked for it.
--- datas[i] is the gateway's data or false; metas holds META_WIDTH numbers per
--- status, flat; errs[i] is the plain error of a failed one.
function worker.push_bodies(id, config, bodies)
    local client, err = client_for(id, config)
    if not client then
        if err == worker.NEED_CONFIG then return err end
        return false, err
    end
    local datas, metas, errs = {}, {}, {}
    local n = #bodies
    local started = client.clock()
    local tok = n > 1 and client.tokens:cached(started)
    if not tok then
        -- nothing to overlap, or the token needs renewing: the attempt loop does it
        for i = 1, n do send_alone(client, bodies, i, datas, metas, errs, 0, started) end
        return datas, metas, errs
    end
    local multi = client:_batch_multi(config_batch_max(id, n))
    local ok, again, pause = pcall(first_attempts, client, tok, bodies, n, datas, metas, errs, started, multi)
    client:_batch_multi_done(multi, ok)
    if not ok then
        -- a raise inside (a bug, not the gateway): every status not yet settled gets it
        for i = 1, n do
            if datas[i] == nil then datas[i], errs[i] = false, raised("push", again) end
        end
        return datas, metas, errs
    end
    if #again > 0 then
        if pause > 0 then client.sleep(pause) end
        for j = 1, #again do send_alone(client, bodies, again[j], datas, metas, errs, 1, started) end
    end
    return datas, metas, errs
end

--- How many clients this VM holds (for specs: shows that VMs are reused).
function worker.stats()
    local n = 0
    for _ in pairs(clients) do n = n + 1 end
    return n
end

return worker
