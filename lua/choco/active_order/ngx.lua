-- OpenResty adapter: pushes run the C core's libcurl request inside
-- ngx.run_worker_thread (a thread_pool of nginx.conf), so nginx's event loop
-- only hands the status over and is woken up with the answer; a slow gateway
-- holds a pool thread, never the worker's other connections.
--
--   init_by_lua:   pusher = require("choco.active_order.ngx").new{ thread_pool = "choco",
--                      shared_dict = "choco_tokens", client = { base_url =, client_id =, ... } }
--   a handler:     local data, meta_or_err = pusher:push(status)
--                  (pusher:push(status, { keep_data = false }): true instead of data)
--   any phase:     pusher:push_async(status, function(data, err, meta) ... end)
--
-- The worker-thread half is choco.active_order.ngx.worker.

local errors = require "choco.active_order.errors"
local semaphore = require "ngx.semaphore"
local payload = require "choco.active_order.payload"

local type, pairs, tostring, pcall, setmetatable = type, pairs, tostring, pcall, setmetatable
-- LuaJIT's table.new: a table made at the size it will have, instead of one
-- rehashed as each field arrives
local new_table = require "table.new"
local success_data = require("choco.active_order.client").success_data

local adapter = {}

local WORKER_MODULE = "choco.active_order.ngx.worker"
-- choco.active_order.ngx.worker's NEED_CONFIG and META_FIELDS (that module is
-- not loaded on the event loop: it is the thread VMs' half)
local NEED_CONFIG = "need_config"
local META_FIELDS = { "attempts", "duration", "http_status", "time_total", "time_connect", "new_connections" }
local META_WIDTH = #META_FIELDS
-- A dispatcher with nothing to do waits this long for work before its timer ends.
local IDLE_SECONDS = 0.5

adapter.DEFAULTS = {
    max_in_flight = 8,    -- worker-thread tasks at once, per nginx worker process (the pool's threads)
    batch_max = 8,        -- statuses one task carries at most (pushed one after another in it)
    queue_timeout = 60,   -- seconds a push waits for its answer, queueing and retries included
    max_queued = 10000,   -- push_async statuses waiting, per nginx worker process
    batch_wait = 0.002,   -- seconds a batch waits to fill up while another is in a thread
}

-- Phases where ngx.run_worker_thread can yield (lua-nginx-module 0.10.23).
adapter.PUSH_PHASES = { rewrite = true, access = true, content = true, timer = true }

local function config_error(message)
    return nil, errors.new("config", "BAD_OPTION", message)
end

-- Only these cross into a worker thread; anything else (a function, a
-- userdata, a cycle) is refused when the pusher is made, not at the first push.
local function plain_data(value, where, depth, seen)
    local t = type(value)
    if t == "string" or t == "number" or t == "boolean" then return true end
    if t ~= "table" then return nil, where .. " is a " .. t .. ": only strings, numbers, booleans and tables of those"
        .. " can be handed to worker threads" end
    if seen[value] or depth > 20 then return nil, where .. " refers to itself" end
    seen[value] = true
    for k, v in pairs(value) do
        local kt = type(k)
        if kt ~= "string" and kt ~= "number" then return nil, where .. " has a " .. kt .. " key" end
        local ok, why = plain_data(v, where .. "." .. tostring(k), depth + 1, seen)
        if not ok then return nil, why end
    end
    seen[value] = nil
    return true
end

local function copy(t)
    local c = {}
    for k, v in pairs(t) do c[k] = type(v) == "table" and copy(v) or v end
    return c
end

local Pusher = {}
Pusher.__index = Pusher

function Pusher.__tostring(p)
    return "choco.active_order.ngx pusher (thread_pool=" .. p.thread_pool .. ")"
end

local next_id = 0

--- Make a pusher; call it once (init_by_lua* is the place: the options are
--- checked there, so a bad configuration stops nginx from starting).
--- opts: thread_pool (name in nginx.conf), shared_dict (optional, lua_shared_dict
--- name: one token for every worker and thread), client (options of
--- choco.active_order.new, plain data only), max_in_flight, batch_max, batch_wait,
--- queue_timeout, max_queued, log_level (ngx.ERR by default: push_async failures
--- without a callback).
--- Returns the pusher or nil, err (kind "config"); raises when opts is not a table.
function adapter.new(opts)
    if type(opts) ~= "table" then
        error("choco.active_order.ngx.new expects a table of options, not " .. type(opts), 2)
    end
    for k in pairs(opts) do
        if not ({ thread_pool = 1, shared_dict = 1, client = 1, max_in_flight = 1, queue_timeout = 1,
            max_queued = 1, log_level = 1, batch_max = 1, batch_wait = 1 })[k] then
            return config_error("unknown option: " .. tostring(k))
        end
    end
    if type(opts.thread_pool) ~= "string" or opts.thread_pool == "" then
        return config_error("thread_pool must name a thread_pool of nginx.conf")
    end
    if opts.shared_dict ~= nil then
        if type(opts.shared_dict) ~= "string" or opts.shared_dict == "" then
            return config_error("shared_dict must name a lua_shared_dict of nginx.conf")
        end
        if ngx.shared and not ngx.shared[opts.shared_dict] then
            return config_error("lua_shared_dict " .. opts.shared_dict .. " is not declared in nginx.conf")
        end
    end
    if type(opts.client) ~= "table" then return config_error("client must be a table of client options") end
    local ok, why = plain_data(opts.client, "client", 0, {})
    if not ok then return config_error(why) end
    for _, k in pairs { "clock", "sleep", "token_store" } do
        if opts.client[k] ~= nil then return config_error("client." .. k .. " is set by the worker thread") end
    end
    local settings = {}
    for k, default in pairs(adapter.DEFAULTS) do
        local v = opts[k]
        if v == nil then v = default end
        if k == "batch_wait" then
            if type(v) ~= "number" or not (v >= 0 and v <= 1) then
                return config_error("batch_wait must be a number of seconds from 0 to 1")
            end
        elseif type(v) ~= "number" or v <= 0 or v ~= v or v == math.huge then
            return config_error(k .. " must be a number above 0")
        end
        settings[k] = v
    end
    if settings.max_in_flight % 1 ~= 0 or settings.max_queued % 1 ~= 0 or settings.batch_max % 1 ~= 0 then
        return config_error("max_in_flight, batch_max and max_queued must be whole numbers")
    end
    local log_level = opts.log_level
    if log_level == nil then log_level = ngx.ERR end
    if type(log_level) ~= "number" then return config_error("log_level must be one of ngx.STDERR ... ngx.DEBUG") end

    -- The same checks the worker threads will make, here, once: every client
    -- option, and the statuses the event loop validates push_async's input against.
    local client_opts = copy(opts.client)
    client_opts.clock, client_opts.sleep = ngx.now, function() end
    local probe, err = require("choco.active_order").new(client_opts)
    if not probe then return nil, err end
    probe:close()
    local compiled
    compiled, err = payload.compile {
        statuses = opts.client.statuses, utc_offset = opts.client.utc_offset, limits = opts.client.limits,
    }
    if not compiled then return nil, err end

    next_id = next_id + 1
    return setmetatable({
        id = "pusher-" .. next_id,
        thread_pool = opts.thread_pool,
        log_level = log_level,
        compiled = compiled,
        settings = settings,
        -- what a thread VM gets, once, to make its client
        config = { client = copy(opts.client), shared_dict = opts.shared_dict, batch_max = settings.batch_max },
    }, Pusher)
end

-- Per worker process state: semaphores and timers cannot be made in
-- init_by_lua (the master) and carried over the fork.
function Pusher:_local()
    local pid = ngx.worker.pid()
    local state = self.state
    if state and state.pid == pid then return state end
    state = {
        pid = pid,
        pending = { first = 1, last = 0 }, -- push calls waiting for a dispatcher
        running = 0,           -- dispatchers (timers) alive, working or idle
        in_flight = 0,         -- dispatchers waiting on a worker thread
        gatherer = nil,        -- the dispatcher filling its batch (see gather)
        idle = {},             -- dispatchers waiting for work (a stack)
        spare = {},            -- semaphores of finished pushes, for the next ones
        queues = {},           -- key -> { first, last, [i] = { status, callback } }
        ready = { first = 1, last = 0 }, -- keys with work and no drainer on them
        busy = {},             -- key -> true while a drainer pushes one of its statuses
        drainers = 0,
        queued = 0,
    }
    self.state = state
    return state
end

--- Check a status on the event loop (C, microseconds): true | nil, err (kind "validation").
function Pusher:validate(status)
    local ok, problems = payload.validate(status, self.compiled)
    if ok then return true end
    return nil, require("choco.active_order.client").validation_error(problems)
end

-- The queues are tables holding entries first..last. One that empties starts
-- again at 1: its entries then stay in the table's array part, where indices
-- that only grow would move through its hash part, rehashed again and again.
local function pop(list)
    local i, last = list.first, list.last
    if i > last then return nil end
    local v = list[i]
    list[i] = nil
    if i == last then
        list.first, list.last = 1, 0
    else
        list.first = i + 1
    end
    return v
end

local function append(list, v)
    local i = list.last + 1
    list[i] = v
    list.last = i
end

-- An error that came back from the thread as a plain table.
local function remake(plain)
    if type(plain) ~= "table" then
        return errors.new("transport", "WORKER_THREAD", "the worker thread returned no error value")
    end
    local fields = {}
    for k, v in pairs(plain) do
        if k ~= "kind" and k ~= "code" and k ~= "message" then fields[k] = v end
    end
    return errors.new(plain.kind or "transport", plain.code or "WORKER_THREAD",
        plain.message or "the push failed in a worker thread", fields)
end

-- ngx.run_worker_thread's own failures: the pool or the module is missing, no
-- VM is free, the task queue is full.
local function thread_failure(message)
    message = tostring(message)
    if message:find("thread pool", 1, true) or message:find("module", 1, true)
        or message:find("invalid function", 1, true) then
        return errors.new("config", "WORKER_THREAD", "ngx.run_worker_thread: " .. message)
    end
    return errors.new("transport", "WORKER_THREAD", "ngx.run_worker_thread: " .. message, { retryable = true })
end

-- One call of a worker-module function in a thread, the configuration sent
-- only when that thread VM has none yet: true, results... | false, err when
-- the call itself failed (ngx.run_worker_thread raised or refused it).
local function run_task(self, func, ...)
    local run = ngx.run_worker_thread
    local called, ok, a, b, c = pcall(run, self.thread_pool, WORKER_MODULE, func, self.id, nil, ...)
    if called and ok and a == NEED_CONFIG then
        called, ok, a, b, c = pcall(run, self.thread_pool, WORKER_MODULE, func, self.id, self.config, ...)
    end
    if not called then
        return false, errors.new("config", "WORKER_THREAD", "ngx.run_worker_thread: " .. tostring(ok))
    end
    if not ok then return false, thread_failure(a) end
    return true, a, b, c
end

-- One thread task for a batch of encoded statuses: datas, metas, errs (see
-- worker.push_bodies), or nil, err when the task itself failed.
local function run_batch(self, bodies, dropping)
    local ok, datas, metas, errs = run_task(self, "push_bodies", bodies, dropping)
    if not ok then return nil, datas end
    if type(datas) ~= "table" then return nil, remake(metas) end
    return datas, metas, errs
end

-- A 2xx answer as the worker thread sent it back (a string: see
-- worker.lua's answer_for_event_loop), decoded here, once -> data | nil, err.
-- One that is not a success envelope goes back to a thread, where the client
-- reads it and makes its error (redacted with the secrets of that VM).
local function answer_data(self, answer, meta)
    local data = success_data(answer)
    if data then return data end
    local ok, err
    ok, data, err = run_task(self, "status_outcome", meta.http_status, answer)
    if not ok then return nil, data end
    if data then return data end
    err = remake(err)
    -- as the worker's attempt loop would have left it: a 2xx answer is final
    err.attempts, err.duration = meta.attempts, meta.duration
    return nil, err
end

local function meta_at(metas, k)
    local meta = new_table(0, META_WIDTH)
    for f = 1, META_WIDTH do
        local v = metas[k + f]
        if v then meta[META_FIELDS[f]] = v end
    end
    return meta
end

-- Moves waiting statuses into a batch, up to batch_max; returns the new count.
local function take(state, items, bodies, n, batch_max)
    while n < batch_max do
        local item = pop(state.pending)
        if not item then break end
        if not item.abandoned then
            item.taken = true
            n = n + 1
            items[n], bodies[n] = item, item.body
        end
    end
    return n
end

-- Which statuses of a batch nobody wants the data of (push's keep_data =
-- false): nil when every one is wanted.
local function dropping_of(items, n)
    local dropping
    for i = 1, n do
        if items[i].drop then
            dropping = dropping or {}
            dropping[i] = true
        end
    end
    return dropping
end

-- While another batch is out (so the threads are busy anyway), a batch that
-- is not full waits up to batch_wait for the statuses that arrive meanwhile:
-- under load one handoff then carries many statuses instead of a few, and
-- with nothing else in flight nothing waits.
local function gather(self, state, me, items, bodies, n, batch_max)
    me.want, me.signalled = batch_max - n, false
    state.gatherer = me
    local woken = me.wake:wait(self.settings.batch_wait)
    if state.gatherer == me then state.gatherer = nil end
    -- a post that raced the timeout is consumed, not left for the next wait
    if not woken and me.signalled then me.wake:wait(0) end
    return take(state, items, bodies, n, batch_max)
end

-- Dispatchers are timers (so that no client's request can be cut off in the
-- middle of carrying others' statuses), at most max_in_flight per worker
-- process. Each takes what is waiting, up to batch_max statuses, hands it to
-- one worker thread and wakes each caller with its result; with nothing
-- waiting it stays around for IDLE_SECONDS, so that under load a push wakes a
-- dispatcher instead of paying for a new timer. Statuses gather while the
-- threads work, and one handoff carries many.
local function dispatch(premature, self, state)
    local batch_max = self.settings.batch_max
    local me = { wake = semaphore.new(0), signalled = false }
    while not premature do
        local items, bodies = new_table(batch_max, 0), new_table(batch_max, 0)
        local n = take(state, items, bodies, 0, batch_max)
        if n > 0 and n < batch_max and state.in_flight > 0 and self.settings.batch_wait > 0 then
            n = gather(self, state, me, items, bodies, n, batch_max)
        end
        if n == 0 then
            if ngx.worker.exiting() then break end
            me.signalled = false
            local idle = state.idle
            idle[#idle + 1] = me
            local woken = me.wake:wait(IDLE_SECONDS)
            if not me.signalled then
                -- not handed work: a timeout ends this dispatcher; a post left
                -- over from a wake-up that raced the timeout is just consumed
                for i = #idle, 1, -1 do
                    if idle[i] == me then table.remove(idle, i) break end
                end
                if not woken then break end
            end
        else
            state.in_flight = state.in_flight + 1
            local datas, metas, errs = run_batch(self, bodies, dropping_of(items, n))
            state.in_flight = state.in_flight - 1
            local err = not datas and metas or nil
            for i = 1, n do
                local item, data = items[i], datas and datas[i]
                if data then
                    local meta = meta_at(metas, (i - 1) * META_WIDTH)
                    if type(data) == "string" then data, item.err = answer_data(self, data, meta) end
                    if data then item.data, item.meta = data, meta end
                else
                    item.err = datas and remake(errs and errs[i]) or err
                end
                item.done = true
                item.wake:post(1)
            end
        end
    end
    state.running = state.running - 1
    if premature or ngx.worker.exiting() then
        -- nginx is exiting: whoever still waits is told so
        while true do
            local item = pop(state.pending)
            if not item then break end
            item.err = errors.new("transport", "EXITING", "nginx is shutting down", { retryable = true })
            item.done = true
            item.wake:post(1)
        end
    end
end

-- Queue an encoded status for a dispatcher and wait for its result (true
-- instead of the gateway's data when drop is set).
local function push_body(self, body, drop)
    local state = self:_local()
    local spare = state.spare
    local wake = spare[#spare]
    if wake then spare[#spare] = nil else wake = semaphore.new(0) end
    local item = { body = body, wake = wake, drop = drop }
    local pending = state.pending
    append(pending, item)
    local gatherer = state.gatherer
    local idle = state.idle
    local n = #idle
    if gatherer then
        -- a dispatcher is filling its batch: it takes this one
        if pending.last - pending.first + 1 >= gatherer.want then
            state.gatherer = nil
            gatherer.signalled = true
            gatherer.wake:post(1)
        end
    elseif n > 0 then
        local d = idle[n]
        idle[n] = nil
        d.signalled = true
        d.wake:post(1)
    elseif state.running < self.settings.max_in_flight then
        local started, terr = ngx.timer.at(0, dispatch, self, state)
        if started then
            state.running = state.running + 1
        elseif state.running == 0 then
            item.abandoned = true
            return nil, errors.new("transport", "NO_TIMER", "ngx.timer.at failed: " .. tostring(terr),
                { retryable = true })
        end
    end
    local woken, werr = wake:wait(self.settings.queue_timeout)
    if not woken and not item.done then
        -- not yet in a thread: make sure it never goes (in one, its result is dropped)
        if not item.taken then item.abandoned = true end
        return nil, errors.new("transport", "QUEUE_TIMEOUT", "no answer from a worker thread within "
            .. self.settings.queue_timeout .. " s (" .. tostring(werr) .. ")", { retryable = true })
    end
    -- posted once and consumed: clean for another push (one that timed out is dropped)
    if woken and #spare < 256 then spare[#spare + 1] = wake end
    if item.err then return nil, item.err end
    return item.data, item.meta
end

-- The body the C core makes of a status (the same one a client would send):
-- validation and encoding in one pass, on the event loop (microseconds).
local function encode(self, status)
    local body, problems = payload.encode(status, self.compiled)
    if not body then return nil, require("choco.active_order.client").validation_error(problems) end
    return body
end

--- Push a status from a request handler (rewrite, access, content) or a timer:
--- the request's coroutine waits, the event loop does not.
--- opts (optional): keep_data = false when the caller does not read the
--- gateway's data: true comes back in its place, and the answer is only
--- checked, never decoded (as client:push_many's keep_data).
--- Returns data, meta | nil, err (the library's error values).
function Pusher:push(status, opts)
    if type(status) ~= "table" then
        error("push expects a status table, not " .. type(status), 2)
    end
    local drop = false
    if opts ~= nil then
        if type(opts) ~= "table" then error("push expects a table of options or nil, not " .. type(opts), 2) end
        local keep = opts.keep_data
        if keep ~= nil and type(keep) ~= "boolean" then
            error("push expects keep_data to be a boolean, not " .. type(keep), 2)
        end
        drop = keep == false
    end
    local phase = ngx.get_phase()
    if not adapter.PUSH_PHASES[phase] then
        return nil, errors.new("config", "WRONG_PHASE", "push cannot wait in the " .. tostring(phase)
            .. " phase (only rewrite, access, content and timers can): use push_async")
    end
    -- checked and encoded here (C, microseconds): an invalid status never
    -- joins a batch, and only a string crosses into the thread
    local body, err = encode(self, status)
    if not body then return nil, err end
    return push_body(self, body, drop)
end

-- push_async: statuses wait in per-key FIFO queues (key = merchant_order_id), and
-- at most max_in_flight timers drain them. A drainer takes one status of one key
-- and puts the key back at the end of the line, so the statuses of one order are
-- pushed one after another, in the order they were queued, while different
-- orders go in parallel.

local function report(self, order_id, callback, data, err, meta)
    if callback then
        local ok, cerr = pcall(callback, data, err, meta)
        if not ok then
            ngx.log(ngx.ERR, "choco.active_order push_async callback failed: ", tostring(cerr))
        end
    elseif not data then
        -- the error's text never holds a secret; the order id is the merchant's own
        ngx.log(self.log_level, "choco.active_order push of order ", order_id,
            " failed: ", tostring(err))
    end
end

local function drain(premature, self, state)
    if premature then
        -- nginx is exiting: what is still queued is lost, and said so
        state.drainers = state.drainers - 1
        if state.drainers == 0 and state.queued > 0 then
            ngx.log(ngx.WARN, "choco.active_order: ", state.queued, " queued statuses dropped at worker exit")
        end
        return
    end
    while true do
        local key = pop(state.ready)
        if key == nil then break end
        local queue = state.queues[key]
        local item = queue and pop(queue)
        if item then
            state.queued = state.queued - 1
            state.busy[key] = true
            local data, err = push_body(self, item[1])
            local meta
            if data then meta, err = err, nil end
            state.busy[key] = nil
            if queue.first > queue.last then
                state.queues[key] = nil
            else
                append(state.ready, key)
            end
            report(self, key, item[2], data, err, meta)
        end
    end
    state.drainers = state.drainers - 1
end

--- Queue a status and return at once; callable in every phase where
--- ngx.timer.at is (init_worker, set, rewrite, access, content, header and body
--- filters, log, timers). The status is checked here first.
--- callback(data, err, meta) runs in a timer; without one, failures are logged
--- at log_level. Returns true | nil, err.
function Pusher:push_async(status, callback)
    if type(status) ~= "table" then
        error("push_async expects a status table, not " .. type(status), 2)
    end
    if callback ~= nil and type(callback) ~= "function" then
        error("push_async expects a function or nil as the callback, not " .. type(callback), 2)
    end
    local body, err = encode(self, status)
    if not body then return nil, err end
    local state = self:_local()
    if state.queued >= self.settings.max_queued then
        return nil, errors.new("transport", "QUEUE_FULL", "push_async already holds "
            .. state.queued .. " statuses", { retryable = true })
    end
    local key = tostring(status.merchant_order_id)
    local queue = state.queues[key]
    if not queue then
        queue = { first = 1, last = 0 }
        state.queues[key] = queue
        if not state.busy[key] then append(state.ready, key) end
    end
    append(queue, { body, callback })
    state.queued = state.queued + 1
    if state.drainers < self.settings.max_in_flight then
        local started, terr = ngx.timer.at(0, drain, self, state)
        if started then
            state.drainers = state.drainers + 1
        elseif state.drainers == 0 then
            -- nothing will drain it: take it back and say so
            queue.last = queue.last - 1
            state.queued = state.queued - 1
            if queue.first > queue.last then state.queues[key] = nil end
            return nil, errors.new("transport", "NO_TIMER", "ngx.timer.at failed: " .. tostring(terr),
                { retryable = true })
        end
    end
    return true
end

--- Statuses queued by push_async in this worker process and not yet taken.
function Pusher:queued()
    return self:_local().queued
end

adapter.Pusher = Pusher

return adapter
