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

-- What a task answers when client_for made no client: NEED_CONFIG alone (the
-- caller sends the configuration and calls again), or false and the error.
local function no_client(err)
    if err == worker.NEED_CONFIG then return err end
    return false, err
end

local function config_batch_max(id, n)
    return math.max(batch_sizes[id] or n, n)
end

-- Fields of meta, in the order push_bodies flattens them (one table per
-- result would cost the event loop a table copy each); a field a status has
-- no value for is left empty.
worker.META_FIELDS = { "attempts", "duration", "http_status", "time_total", "time_connect", "new_connections" }
local META_FIELDS = worker.META_FIELDS
local META_WIDTH = #META_FIELDS

local retry = require "choco.active_order.retry"
local ceil, min, max = math.ceil, math.min, math.max
local STATUS_PATH = require("choco.active_order.client").STATUS_PATH

-- A 2xx answer crosses back as the string it came as, and the event loop
-- decodes it: one decode per push, where decoding it here cost a decode and
-- then a copy of every field into the event loop's VM. Nothing about a 2xx
-- answer calls for a retry, so nothing here needs to read it first; the rare
-- one that is not a success comes back through status_outcome, read by the
-- client. A large one is read here: its decode must not hold the event loop.
local EVENT_LOOP_DECODE_MAX = 65536

local function answer_for_event_loop(res)
    local status, body = res.status, res.body
    return status >= 200 and status < 300 and type(body) == "string" and #body <= EVENT_LOOP_DECODE_MAX
end

-- A status whose data nobody reads (push's keep_data = false): a success
-- envelope is only checked, by the core's scanner where it has one, and the
-- answer goes nowhere.
local envelope_ok = require("choco.active_order.core").envelope_ok

local function checked_success(res)
    local status, body = res.status, res.body
    return envelope_ok ~= nil and status >= 200 and status < 300 and type(body) == "string"
        and envelope_ok(body) == true
end

-- What one finished transfer of a batch came to: data (the 2xx answer as a
-- string for the event loop, or true when nobody keeps it) | nil, err.
local function outcome(client, res, transfer_err, drop)
    if not res then return nil, client:_transport_error(transfer_err, "PUT", STATUS_PATH) end
    if drop then
        if checked_success(res) then return true end
        local data, err = client:_status_outcome(res)
        return data and true, err
    end
    if answer_for_event_loop(res) then return res.body end
    return client:_status_outcome(res)
end

local function store_meta(metas, i, meta)
    local k = (i - 1) * META_WIDTH
    for f = 1, META_WIDTH do metas[k + f] = meta[META_FIELDS[f]] end
end

-- The client's own attempt loop for body i (token, retries, one renewal on a
-- 401), continuing the count and the deadline of the attempts already made
-- for it in this task.
local function send_alone(client, bodies, i, datas, metas, errs, attempts_made, started, dropping)
    local ok, data, meta = pcall(client._send_status, client, bodies[i], attempts_made, started)
    if not ok then
        datas[i], errs[i] = false, raised("push", data)
    elseif data == nil then
        datas[i], errs[i] = false, meta
    else
        datas[i] = dropping and dropping[i] or data
        store_meta(metas, i, meta)
    end
end

-- First attempts of n bodies at once over the client's multi handle (kept
-- across tasks, so its connections stay alive). Returns the indices whose
-- attempt failed in a way the client's attempt loop should go on with, and
-- the pause the retry policy asks before that.
local function first_attempts(client, tok, bodies, n, datas, metas, errs, started, multi, dropping)
    local clock, policy = client.clock, client.policy
    local headers = client.headers_for(tok)
    local timeout = min(client.timeout, policy.deadline)
    local timeout_ms, connect_ms = ceil(timeout * 1000), ceil(min(client.connect_timeout, timeout) * 1000)
    local url = client.status_url
    for i = 1, n do multi:add(i, "PUT", url, headers, bodies[i], timeout_ms, connect_ms) end
    local again, pause, rejected = {}, 0, false
    local left = n
    -- when no status of the batch keeps its data, the core reports a success
    -- envelope as its bare index, without a response table
    local quick = dropping ~= nil
    for i = 1, quick and n or 0 do
        if not dropping[i] then
            quick = false
            break
        end
    end
    while left > 0 do
        local finished = multi:perform(1000, quick)
        for j = 1, #finished do
            local d = finished[j]
            local i, res, data, err
            left = left - 1
            if type(d) == "number" then
                -- a quick success: the core found the success envelope
                i, data = d, true
            else
                i, res = d.id, d.res
                data, err = outcome(client, res, d.err, dropping and dropping[i])
            end
            local now = clock()
            if data then
                datas[i] = data
                local k = (i - 1) * META_WIDTH
                metas[k + 1], metas[k + 2] = 1, now - started
                -- a quick success has no response to tell more: its slots stay
                -- empty, and nothing is copied for them
                if res then
                    metas[k + 3], metas[k + 4] = res.status, res.time_total
                    metas[k + 5], metas[k + 6] = res.time_connect, res.new_connections
                end
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

--- push_bodies(id, config, bodies, dropping) -> datas, metas, errs | NEED_CONFIG | false, err
--- One thread task carries one status or several, already validated and
--- encoded on the event loop (a string crosses into a thread for the price of
--- one copy; a status table costs a walk of every field). Their first attempts
--- go out together over the client's multi handle (the event loop never puts
--- two statuses of one order in a task); a status whose first attempt fails in
--- a way worth retrying then goes through the client's own attempt loop
--- (token renewal, retry policy), after the pause the policy asks for. id names
--- the configuration; config is sent only when this VM asked for it.
--- datas[i] is the gateway's 2xx answer (a string, see answer_for_event_loop), its data
--- (a table, from the client's attempt loop) or false; metas holds META_WIDTH
--- numbers per status, flat; errs[i] is the plain error of a failed one.
--- dropping (nil or dropping[i] = true) names the statuses whose data nobody
--- keeps: their datas[i] is true.
function worker.push_bodies(id, config, bodies, dropping)
    local client, err = client_for(id, config)
    if not client then return no_client(err) end
    local datas, metas, errs = {}, {}, {}
    local n = #bodies
    local started = client.clock()
    local tok = client.tokens:cached(started)
    if not tok then
        -- the token needs renewing: the attempt loop does it
        for i = 1, n do send_alone(client, bodies, i, datas, metas, errs, 0, started, dropping) end
        return datas, metas, errs
    end
    local multi = client:_batch_multi(config_batch_max(id, n))
    local ok, again, pause = pcall(first_attempts, client, tok, bodies, n, datas, metas, errs, started, multi,
        dropping)
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
        for j = 1, #again do send_alone(client, bodies, again[j], datas, metas, errs, 1, started, dropping) end
    end
    return datas, metas, errs
end

--- status_outcome(id, config, http_status, body) -> data | false, err | NEED_CONFIG
--- The client's reading of a 2xx answer the event loop did not find to be a
--- success: the error exactly as the client makes it (redacted with this VM's
--- secrets).
function worker.status_outcome(id, config, http_status, body)
    local client, err = client_for(id, config)
    if not client then return no_client(err) end
    local data
    data, err = client:_status_outcome { status = http_status, body = body }
    if data then return data end
    return false, err
end

--- How many clients this VM holds (for specs: shows that VMs are reused).
function worker.stats()
    local n = 0
    for _ in pairs(clients) do n = n + 1 end
    return n
end

return worker
