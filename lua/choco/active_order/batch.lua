-- client:push_many: many statuses at once over one libcurl multi handle, with
-- the same validation, token, retry policy and error kinds as client:push.
--
-- Ordering: statuses of one merchant_order_id go one after another, in input
-- order (the next is sent only when the previous has its final outcome, retries
-- included); different orders go in parallel. Memory: bodies are encoded when a
-- transfer is about to start and dropped when it ends; the input is read with a
-- bounded look-ahead, so a 100,000-status batch holds at most a few thousand
-- indices besides the results.

local errors = require "choco.active_order.errors"
local retry = require "choco.active_order.retry"
local envelope_ok = require("choco.active_order.core").envelope_ok

local type, tostring, pairs, ceil, min, max, floor = type, tostring, pairs, math.ceil, math.min, math.max, math.floor
local huge = math.huge

local batch = {}

-- LuaJIT 2.1's own string hash reads only a few bytes of a long string, so the
-- bodies of a batch (same length, same bytes at those places) share one chain of
-- its string table, and every new body is compared with every dead one the
-- collector has not swept yet: with a large heap, thousands of memcmp per body.
-- A small collector step per round of results starts the next cycle early and
-- keeps that chain short. PUC Lua does not intern long strings; OpenResty's
-- LuaJIT hashes whole strings: neither needs it.
-- (Measured, 20,000 statuses: half the CPU time of the batch.)
local collect_strings
if type(jit) == "table" then
    local collectgarbage = collectgarbage
    collect_strings = function() collectgarbage("step", 0) end
end

batch.DEFAULT_IN_FLIGHT = 16
batch.MAX_IN_FLIGHT = 1024

local STATUS_PATH = "/orders/v2/preorder/external/status"

local function config_error(message)
    return nil, errors.new("config", "BAD_OPTION", message)
end

local function check_options(opts)
    if opts == nil then opts = {} end
    for k in pairs(opts) do
        if k ~= "max_in_flight" and k ~= "deadline" and k ~= "on_progress" and k ~= "on_result"
            and k ~= "keep_data" then
            return config_error("unknown push_many option: " .. tostring(k))
        end
    end
    local n = opts.max_in_flight or batch.DEFAULT_IN_FLIGHT
    if type(n) ~= "number" or n < 1 or n > batch.MAX_IN_FLIGHT or n ~= floor(n) then
        return config_error("max_in_flight must be a whole number from 1 to " .. batch.MAX_IN_FLIGHT)
    end
    if opts.deadline ~= nil and (type(opts.deadline) ~= "number" or opts.deadline ~= opts.deadline
        or opts.deadline <= 0) then
        return config_error("deadline must be a number of seconds above 0")
    end
    for _, k in pairs { "on_progress", "on_result" } do
        if opts[k] ~= nil and type(opts[k]) ~= "function" then return config_error(k .. " must be a function") end
    end
    if opts.keep_data ~= nil and type(opts.keep_data) ~= "boolean" then
        return config_error("keep_data must be a boolean")
    end
    return {
        max_in_flight = n,
        deadline = opts.deadline,
        on_progress = opts.on_progress,
        on_result = opts.on_result,
        keep_data = opts.keep_data ~= false,
    }
end

-- The key that serialises statuses of one order. A status without a usable
-- merchant_order_id will fail validation; it gets a key of its own.
local function order_key(status, index)
    local id = type(status) == "table" and status.merchant_order_id or nil
    if type(id) == "string" then return id end
    if type(id) == "number" then return tostring(id) end
    return index
end

-- One status on its way: every field it will get is there from the start, so
-- that the table is sized once (false: not yet known). ready_at, set only for a
-- retry's wait, is always written before it is read.
local function new_record(index, key)
    return { index = index, order = key, attempt = 0, body = false, first_at = false, token = false,
             sent_at = false, renewed = false }
end

-- A FIFO of values, O(1) at both ends.
local function queue()
    return { first = 1, last = 0 }
end

local function push_back(q, v)
    q.last = q.last + 1
    q[q.last] = v
end

local function push_front(q, v)
    q.first = q.first - 1
    q[q.first] = v
end

local function pop(q)
    if q.first > q.last then return nil end
    local v = q[q.first]
    q[q.first] = nil
    q.first = q.first + 1
    return v
end

--- Send `statuses` (a list) concurrently. Returns results, summary:
--- results[i] is the gateway's data for statuses[i] (true when keep_data = false)
--- or an error; summary = { total, sent, failed, invalid, retried, duration }.
--- nil, err (kind config) for bad options; raises when statuses is not a table.
function batch.push_many(c, statuses, opts)
    if type(statuses) ~= "table" then
        error("push_many expects a list of statuses, not " .. type(statuses), 3)
    end
    if opts ~= nil and type(opts) ~= "table" then
        error("push_many options must be a table, not " .. type(opts), 3)
    end
    local o, oerr = check_options(opts)
    if not o then return nil, oerr end
    if not c.session then
        return nil, errors.new("config", "CLOSED", "this client has been closed")
    end

    local clock, policy, tokens = c.clock, c.policy, c.tokens
    local on_request, on_response = c.on_request, c.on_response
    local status_url, headers_for, call_deadline = c.status_url, c.headers_for, policy.deadline
    local total = #statuses
    local started = clock()
    local batch_deadline = o.deadline and started + o.deadline or huge
    local results = {}
    local summary = { total = total, sent = 0, failed = 0, invalid = 0, retried = 0, duration = 0 }
    if total == 0 then return results, summary end

    -- libcurl runs max_in_flight transfers; as many more wait inside the multi
    -- handle, so that a freed slot starts its next transfer without a trip to Lua
    local capacity = o.max_in_flight * 2
    local lookahead = max(1024, 64 * o.max_in_flight)
    local multi = c:_batch_multi(o.max_in_flight)
    -- Nobody reads the gateway's data (keep_data = false, no on_result): a 2xx
    -- success envelope is recognised by the C core's strict scan instead of being
    -- decoded into tables; with no on_response hook either, the multi handle
    -- reports such a transfer as its bare id. Anything else is read in full.
    local skip_data = not o.keep_data and not o.on_result
    local quick = skip_data and not on_response

    local in_flight = {}      -- input index -> record of the transfer under way
    local running = 0
    local busy = {}           -- order key -> true while one of its statuses is not final
    local waiting = {}        -- order key -> queue of input indices held back behind it
    local deferred = 0        -- indices in waiting queues (the look-ahead)
    local ready = queue()     -- records to send as soon as there is room
    local timers = {}         -- records waiting out a retry delay
    local cursor = 1          -- next input index not yet looked at
    local done = 0
    local fatal               -- a token failure that no retry can fix: every later status gets it
    -- The token endpoint's failures belong to the batch, not to the status that
    -- happened to ask: they are retried per the policy once for everybody, with
    -- no sends meanwhile, and when retries run out every unsent status fails.
    local token_pause = 0     -- no sends before this time
    local token_failures, token_failing_since = 0, nil
    -- Finished records, for reuse: past its first rounds a batch makes no table per status.
    local spare, spare_count = {}, 0

    local function record(index, key)
        if spare_count == 0 then return new_record(index, key) end
        local rec = spare[spare_count]
        spare[spare_count] = nil
        spare_count = spare_count - 1
        rec.index, rec.order, rec.attempt = index, key, 0
        rec.body, rec.first_at, rec.token, rec.sent_at, rec.renewed = false, false, false, false, false
        return rec
    end

    -- rec's status is final: nothing refers to rec any more (it is not in flight,
    -- ready or waiting a timer), so it is kept for the next status.
    local function finish(rec, data, err)
        if data ~= nil then
            summary.sent = summary.sent + 1
            results[rec.index] = o.keep_data and data or true
        else
            summary.failed = summary.failed + 1
            results[rec.index] = err
        end
        done = done + 1
        if o.on_result then o.on_result(rec.index, data, err) end
        -- the next status of the same order, if one is held back, may go now
        local q = waiting[rec.order]
        local nxt = q and pop(q)
        if nxt then
            deferred = deferred - 1
            if q.first > q.last then waiting[rec.order] = nil end
            push_back(ready, record(nxt, rec.order))
        else
            waiting[rec.order] = nil
            busy[rec.order] = nil
        end
        spare_count = spare_count + 1
        spare[spare_count] = rec
    end

    local function give_up(rec, err, now, reason)
        err.attempts = rec.attempt
        err.duration = now - (rec.first_at or now)
        if err.retryable and reason and reason ~= "not_retryable" then err.gave_up = reason end
        rec.body = false
        finish(rec, nil, err)
    end

    -- An attempt failed: wait and go again, or give up with this error.
    local function failed_attempt(rec, err)
        local now = clock()
        local delay, reason = retry.next_delay(policy, err, rec.attempt, now - rec.first_at)
        if delay and now + delay >= batch_deadline then delay, reason = nil, "deadline" end
        if not delay then return give_up(rec, err, now, reason) end
        rec.ready_at = now + delay
        timers[#timers + 1] = rec
    end

    local function deadline_error(rec)
        local err = errors.new("transport", "OPERATION_TIMEDOUT",
            "the batch deadline of " .. tostring(o.deadline) .. " s passed before this status was sent",
            { retryable = true, gave_up = "deadline" })
        err.attempts = rec.attempt
        return err
    end

    local function dispatch(rec)
        local now = clock()
        if now >= batch_deadline then
            return finish(rec, nil, deadline_error(rec))
        end
        if fatal then
            rec.body = false
            return finish(rec, nil, errors.new(fatal.kind, fatal.code, fatal.message, fatal))
        end
        if not rec.body then
            local status = statuses[rec.index]
            local body, verr
            if type(status) == "table" then
                body, verr = c:encode(status)
            else
                verr = errors.new("validation", "INVALID_STATUS", "the status is not a table but a " .. type(status),
                    { problems = { { field = "", code = "type", message = "a status is a table" } } })
            end
            if not body then
                summary.invalid = summary.invalid + 1
                return finish(rec, nil, verr)
            end
            rec.body = body
            rec.first_at = rec.first_at or now
        end
        rec.attempt = rec.attempt + 1
        if rec.attempt > 1 then summary.retried = summary.retried + 1 end
        local deadline_at = rec.first_at + call_deadline
        if deadline_at > batch_deadline then deadline_at = batch_deadline end
        -- the cached token needs no table and no second clock reading; a renewal does
        local tok, terr = tokens:cached(now)
        local renewed_now = false
        if not tok then
            tok, terr = tokens:get { deadline_at = deadline_at, attempt = rec.attempt }
            renewed_now = true
        end
        if not tok then
            rec.attempt = rec.attempt - 1 -- the status itself was not sent
            if rec.attempt > 0 then summary.retried = summary.retried - 1 end
            now = clock()
            token_failures = token_failures + 1
            token_failing_since = token_failing_since or now
            local delay, reason = retry.next_delay(policy, terr, token_failures, now - token_failing_since)
            if delay and now + delay >= batch_deadline then delay, reason = nil, "deadline" end
            if not delay then
                terr.attempts = token_failures
                if terr.retryable and reason ~= "not_retryable" then terr.gave_up = reason end
                fatal = terr
                return dispatch(rec)
            end
            token_pause = now + delay
            return push_front(ready, rec)
        end
        token_failures, token_failing_since = 0, nil
        if renewed_now then now = clock() end
        local remaining = deadline_at - now
        if remaining <= 0 then
            return give_up(rec, errors.new("transport", "OPERATION_TIMEDOUT",
                "the deadline passed before PUT " .. STATUS_PATH, { retryable = true }), now, "deadline")
        end
        local timeout_ms, connect_timeout_ms = c.timeout_ms, c.connect_timeout_ms
        if remaining < c.timeout then
            timeout_ms = ceil(remaining * 1000)
            connect_timeout_ms = min(connect_timeout_ms, timeout_ms)
        end
        rec.token = tok
        rec.sent_at = now
        if on_request then
            pcall(on_request, { method = "PUT", path = STATUS_PATH, attempt = rec.attempt })
        end
        multi:add(rec.index, "PUT", status_url, headers_for(tok), rec.body, timeout_ms, connect_timeout_ms)
        in_flight[rec.index] = rec
        running = running + 1
    end

    local function completed(d)
        if quick and type(d) == "number" then
            local rec = in_flight[d]
            in_flight[d] = nil
            running = running - 1
            rec.body = false
            return finish(rec, true)
        end
        local rec = in_flight[d.id]
        in_flight[d.id] = nil
        running = running - 1
        local res = d.res
        if on_response then
            pcall(on_response, {
                method = "PUT", path = STATUS_PATH, attempt = rec.attempt,
                status = res and res.status or nil, error = d.err and d.err.code or nil,
                duration = res and res.time_total or (clock() - rec.sent_at),
            })
        end
        if not res then
            return failed_attempt(rec, c:_transport_error(d.err, "PUT", STATUS_PATH))
        end
        local data, err
        local status = res.status
        if skip_data and status >= 200 and status < 300 and envelope_ok(res.body) then
            data = true
        else
            data, err = c:_status_outcome(res)
        end
        if data then
            rec.body = false
            return finish(rec, data)
        end
        if status == 401 and not rec.renewed and tokens:rejected(rec.token) then
            rec.renewed = true
            return push_front(ready, rec)
        end
        return failed_attempt(rec, err)
    end

    local function due_timers(now)
        local next_at = huge
        local i = 1
        while i <= #timers do
            local rec = timers[i]
            if rec.ready_at <= now then
                timers[i] = timers[#timers]
                timers[#timers] = nil
                push_back(ready, rec)
            else
                if rec.ready_at < next_at then next_at = rec.ready_at end
                i = i + 1
            end
        end
        return next_at
    end

    local function fill()
        while running < capacity do
            if token_pause > 0 and clock() < token_pause then return end
            local rec = pop(ready)
            if not rec then
                if cursor > total or deferred >= lookahead then return end
                local index = cursor
                cursor = cursor + 1
                local key = order_key(statuses[index], index)
                if busy[key] then
                    local q = waiting[key]
                    if not q then q = queue(); waiting[key] = q end
                    push_back(q, index)
                    deferred = deferred + 1
                else
                    busy[key] = true
                    rec = record(index, key)
                end
            end
            if rec then dispatch(rec) end
        end
    end

    local function progress()
        if o.on_progress then
            o.on_progress { total = total, done = done, sent = summary.sent, failed = summary.failed,
                            retried = summary.retried, in_flight = running }
        end
    end

    local ok, failure = pcall(function()
        while done < total do
            -- no retry waiting and no batch deadline: no clock reading per round
            local next_timer = timers[1] and due_timers(clock()) or huge
            fill()
            if running > 0 then
                local wake = min(next_timer, batch_deadline)
                local wait = 1000
                if wake < huge then wait = max(0, min(wake - clock(), 1)) * 1000 end
                local finished = multi:perform(wait, quick)
                for i = 1, #finished do completed(finished[i]) end
                if #finished > 0 then
                    if collect_strings then collect_strings() end
                    progress()
                end
            elseif done < total then
                next_timer = due_timers(clock())
                local wake = next_timer
                if token_pause > 0 and (ready.first <= ready.last or cursor <= total) then
                    wake = min(wake, token_pause)
                end
                if wake == huge and ready.first > ready.last and cursor > total then
                    -- every unfinished status must be in flight, ready, waiting a timer or held
                    -- behind one of those; this would otherwise spin for ever
                    error("push_many: " .. (total - done) .. " statuses are stuck (a bug in batch.lua)")
                end
                if wake < huge then
                    local pause = wake - clock()
                    if pause > 0 then c.sleep(pause) end
                end
            end
        end
    end)
    c:_batch_multi_done(multi, ok)
    if not ok then error(failure, 0) end
    summary.duration = clock() - started
    progress()
    return results, summary
end

return batch
