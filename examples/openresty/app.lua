-- The example app: the merchant's order system POSTs its own events to
-- /orders/{id}/state; the mapping rules turn each event into a card status and
-- choco.active_order.ngx pushes it to the gateway from a worker thread.
--
--   POST /orders/{id}/state          202 {"queued": true}: pushed in the background,
--                                    after every earlier event of the same order
--   POST /orders/{id}/state?wait=1   pushed now: 200 {"pushed": true}, or 502 with
--                                    the error (the caller orders its calls)
--   POST /push                       a ready status (the gateway's JSON body), pushed now:
--                                    200 {"pushed": true}, or 422/502 with the error
--   GET  /stats                      {"pushed": n, "failed": n}
--
-- Order per order: webhooks of one order may reach different worker processes,
-- so the queue lives in a shared dictionary. Each order with queued events has
-- exactly one owner (a shared-dict `add`), whose timer pops and pushes them one
-- by one; other orders drain in parallel.

-- A handler sets ngx.status and ngx.header fields:
-- luacheck: globals ngx
local cjson = require "cjson.safe"
local errors = require "choco.active_order.errors"
-- the posted JSON, decoded by the library's C decoder (about half lua-cjson's cost)
local decode_json = require("choco.active_order").decode_json

local app = {}

local QUEUE = "app_queue"
-- Longer than one push may take (retries included), so that an owner never
-- loses its order while it works; refreshed before every push.
local OWNER_TTL = 120

local pusher, mapping

local function split(list)
    local out = {}
    for item in (list or ""):gmatch("[^,%s]+") do out[#out + 1] = item end
    return out
end

--- init_by_lua: load the rules and make the pusher once; a bad configuration
--- stops nginx from starting, with the reason in its log.
function app.init()
    local rules_path = assert(os.getenv("CHOCO_AO_RULES"), "CHOCO_AO_RULES is not set")
    local statuses = split(os.getenv("CHOCO_AO_STATUSES"))
    local err
    mapping, err = require("choco.active_order.rules").load(rules_path, { statuses = statuses })
    if not mapping then error(tostring(err), 0) end
    local base_url = assert(os.getenv("CHOCO_AO_BASE_URL"), "CHOCO_AO_BASE_URL is not set")
    pusher, err = require("choco.active_order.ngx").new {
        thread_pool = "choco",
        shared_dict = "choco_tokens",
        -- thread tasks in flight per worker process: the thread_pool's threads
        max_in_flight = tonumber(os.getenv("CHOCO_AO_THREADS")),
        batch_max = tonumber(os.getenv("CHOCO_AO_BATCH_MAX")),
        client = {
            base_url = base_url,
            allow_insecure_http = base_url:find("^http://127%.0%.0%.1[:/]") ~= nil or nil,
            client_id = os.getenv("CHOCO_AO_CLIENT_ID"),
            client_secret = os.getenv("CHOCO_AO_CLIENT_SECRET"),
            statuses = statuses,
        },
    }
    if not pusher then error(tostring(err), 0) end
end

-- (nginx.conf's default_type makes every answer application/json)
local function reply(status, value)
    ngx.status = status
    ngx.say(cjson.encode(value))
    return ngx.exit(status)
end

-- The answer to a push that went through: every request's answer under load,
-- so its length is given up front (nginx then sends it whole, not chunked).
local PUSHED = '{"pushed":true}\n'

local function reply_pushed()
    ngx.header.content_length = #PUSHED
    ngx.print(PUSHED)
    return ngx.exit(200)
end

local function count(name)
    ngx.shared[QUEUE]:incr(name, 1, 0)
end

-- The app answers "pushed" and keeps no record of the gateway's: the answer
-- is checked, never decoded.
local NO_DATA = { keep_data = false }

local function push_one(status)
    local data, err = pusher:push(status, NO_DATA)
    if data then
        count("pushed")
    else
        count("failed")
        -- the gateway's trouble, not the app's: a warning (the text holds no secret)
        ngx.log(ngx.WARN, "order ", status.merchant_order_id, ": ", tostring(err))
    end
    return data, err
end

-- The owner's loop: pop, push, until the order's queue is empty.
local function drain(premature, order_id)
    if premature then return end
    local dict = ngx.shared[QUEUE]
    local queue_key, owner_key = "q " .. order_id, "owner " .. order_id
    while true do
        local item = dict:lpop(queue_key)
        if item then
            dict:expire(owner_key, OWNER_TTL)
            push_one(cjson.decode(item))
        else
            dict:delete(owner_key)
            -- an event queued between the empty pop and the delete saw an owner
            -- and left the work to us: take it, unless someone else just did
            if (dict:llen(queue_key) or 0) == 0 or not dict:add(owner_key, true, OWNER_TTL) then return end
        end
    end
end

local function enqueue(order_id, status)
    local dict = ngx.shared[QUEUE]
    local queue_key, owner_key = "q " .. order_id, "owner " .. order_id
    local len, err = dict:rpush(queue_key, cjson.encode(status))
    if not len then return nil, "the queue is full: " .. tostring(err) end
    if dict:add(owner_key, true, OWNER_TTL) then
        local ok, terr = ngx.timer.at(0, drain, order_id)
        if not ok then
            dict:delete(owner_key)
            return nil, "cannot start the drain: " .. tostring(terr)
        end
    end
    return len
end

--- POST /orders/{id}/state
function app.webhook(order_id)
    if ngx.req.get_method() ~= "POST" then
        ngx.header.allow = "POST"
        return reply(405, { error = "POST an order event" })
    end
    ngx.req.read_body()
    local event = decode_json(ngx.req.get_body_data() or "")
    if type(event) ~= "table" then return reply(400, { error = "the body must be a JSON object" }) end
    event.order_id = order_id
    local status, err = mapping:render(event, ngx.time())
    if not status then return reply(422, { error = tostring(err) }) end

    if ngx.var.arg_wait then
        local data, perr = push_one(status)
        if not data then
            return reply(errors.is_error(perr) and perr.kind == "validation" and 422 or 502,
                { error = tostring(perr), kind = perr.kind, code = perr.code })
        end
        return reply_pushed()
    end
    local position, qerr = enqueue(order_id, status)
    if not position then return reply(503, { error = qerr }) end
    return reply(202, { queued = true, position = position })
end

--- POST /push: a status the caller has already made (the contract's JSON body),
--- pushed now; 200 {"pushed": true} or the error.
function app.push()
    ngx.req.read_body()
    local status = decode_json(ngx.req.get_body_data() or "")
    if type(status) ~= "table" then return reply(400, { error = "the body must be a JSON object" }) end
    local data, err = push_one(status)
    if not data then
        return reply(err.kind == "validation" and 422 or 502,
            { error = tostring(err), kind = err.kind, code = err.code })
    end
    return reply_pushed()
end

--- The pusher and the rules, for other handlers of the same nginx.
function app.pusher() return pusher end
function app.render(event) return mapping:render(event, ngx.time()) end

--- GET /stats
function app.stats()
    local dict = ngx.shared[QUEUE]
    return reply(200, { pushed = dict:get("pushed") or 0, failed = dict:get("failed") or 0 })
end

return app
