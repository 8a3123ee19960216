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

-- The client of configuration `id` in this VM, made on first use.
local function client_for(id, config)
    local client = clients[id]
    if client then return client end
    if type(config) ~= "table" then return nil, worker.NEED_CONFIG end
    local ok, made, err = pcall(build_client, config)
    if not ok then return nil, raised("creating the client", made) end
    if not made then return nil, err end
    clients[id] = made
    return made
end

--- push_batch(id, config, statuses) -> results | NEED_CONFIG | false, err
--- One thread task carries one status or several: they are pushed one after
--- another on this VM's connection, in the order given (so two statuses of one
--- order in a batch keep their order). id names the configuration; config is
--- sent only when this VM asked for it.
--- results[i] = { true, data, meta } or { false, err }.
function worker.push_batch(id, config, statuses)
    local client, err = client_for(id, config)
    if not client then
        if err == worker.NEED_CONFIG then return err end
        return false, err
    end
    local results = {}
    local push = client.push
    for i = 1, #statuses do
        local ok, data, meta = pcall(push, client, statuses[i])
        if not ok then
            results[i] = { false, raised("push", data) }
        elseif data == nil then
            results[i] = { false, meta }
        else
            results[i] = { true, data, meta }
        end
    end
    return results
end

--- How many clients this VM holds (for specs: shows that VMs are reused).
function worker.stats()
    local n = 0
    for _ in pairs(clients) do n = n + 1 end
    return n
end

return worker
