-- The client secret and the token never show: not in an error (any field, or
-- its tostring), not in a hook's argument, not in tostring(client), not in what
-- a process prints. Every failure path runs with a recognisable secret.

local ao = require "choco.active_order"
local emulator = require "spec.support.emulator"

local STATUSES = { "created", "paid", "cooking", "delivering", "delivered", "cancelled" }
local SECRET = "S3CR3T-do-not-print"
local FAST = { base_delay = 0.01, max_delay = 0.02 }

local function example(order_id)
    return {
        merchant_order_id = order_id or "ORDER-SECRET",
        user_id = 1,
        external_status = "created",
        deeplinks = { { link = "https://rahmetapp.kz/100/orders?tab=5", type = "active_order_card" } },
        external_data = {
            expired_at = "2030-01-01 00:00:00",
            title_active_order_card = "Создан",
            title_call_to_action = "К заказу",
            need_timer = false,
            countdown_timer = false,
        },
    }
end

-- Every string reachable from `value` (keys, values, tostring of tables), once.
local function strings_of(value, out, seen)
    out, seen = out or {}, seen or {}
    local t = type(value)
    if t == "string" then
        out[#out + 1] = value
    elseif t == "number" or t == "boolean" then
        out[#out + 1] = tostring(value)
    elseif t == "table" and not seen[value] then
        seen[value] = true
        out[#out + 1] = tostring(value)
        for k, v in pairs(value) do
            strings_of(k, out, seen)
            strings_of(v, out, seen)
        end
    end
    return out
end

describe("secrets", function()
    local emu
    local collected = {}      -- everything a caller could see
    local tokens_seen = {}    -- every token the client held, to look for afterwards

    local function collect(...)
        for i = 1, select("#", ...) do
            local v = select(i, ...)
            collected[#collected + 1] = v
            if type(v) == "table" or type(v) == "userdata" then collected[#collected + 1] = tostring(v) end
        end
    end

    local function hooks()
        return { on_request = function(info) collect(info) end, on_response = function(info) collect(info) end }
    end

    local function new_client(extra)
        local opts = { base_url = emu.url, client_id = "test-client", client_secret = SECRET,
                       statuses = STATUSES, retry = FAST, timeout = 1 }
        for k, v in pairs(hooks()) do opts[k] = v end
        for k, v in pairs(extra or {}) do opts[k] = v end
        local c, err = ao.new(opts)
        collect(c, err)
        return c, err
    end

    local function remember_token(c)
        local value = c.tokens and c.tokens.store:get()
        if value then tokens_seen[#tokens_seen + 1] = value end
    end

    emulator.use({ statuses = STATUSES, client_secret = SECRET }, function(started) emu = started end)

    it("runs every failure path and collects what a caller sees", function()
        -- config errors that involve the secret or a token
        new_client { client_secret = SECRET .. "\n" }
        new_client { client_secret = SECRET, token = SECRET }
        collect(ao.new { base_url = emu.url, token = SECRET .. "\r\nX-Evil: 1" })
        collect(ao.new { base_url = "https://user:" .. SECRET .. "@gateway.choco.kz", token = "t" })

        -- wrong credentials: the wrong secret is recognisable too
        local wrong = assert(new_client { client_secret = SECRET .. "-WRONG" })
        collect(wrong:push(example()))
        wrong:close()

        -- validation
        local c = assert(new_client())
        collect(c:push { merchant_order_id = SECRET })
        collect(c:push(example()))
        remember_token(c)

        -- every fault on the status endpoint, then on the token endpoint
        local faults = {
            { kind = "http", status = 503 }, { kind = "http", status = 400 },
            { kind = "http", status = 429, retry_after = 99 },
            { kind = "close" }, { kind = "truncate" }, { kind = "not_json" }, { kind = "html", status = 502 },
            { kind = "oversize", bytes = 2 * 1024 * 1024 }, { kind = "delay", ms = 1500 },
            { kind = "trickle", ms = 300 },
        }
        for _, fault in ipairs(faults) do
            emu:faults("status", { fault, fault, fault, fault })
            collect(c:push(example()))
            emu:reset()
            local fresh = assert(new_client { retry = { max_attempts = 2, base_delay = 0.01, max_delay = 0.01 } })
            emu:faults("token", { fault, fault })
            collect(fresh:push(example()))
            remember_token(fresh)
            collect(fresh)
            fresh:close()
            emu:reset()
        end

        -- a revoked token: renewed; a revoked fixed token: rejected
        assert(c:push(example()))
        remember_token(c)
        local fixed_value = c.tokens.store:get()
        emu:revoke()
        collect(c:push(example()))
        remember_token(c)
        local fixed = assert(ao.new { base_url = emu.url, token = fixed_value, statuses = STATUSES,
                                      on_request = hooks().on_request, on_response = hooks().on_response })
        collect(fixed, fixed:push(example()))
        fixed:close()
        collect(c)
        c:close()

        -- nobody listening, and a proxy with a password in its URL
        local socket = require "socket"
        local server = assert(socket.bind("127.0.0.1", 0))
        local _, port = server:getsockname()
        server:close()
        local refused = assert(new_client { base_url = "http://127.0.0.1:" .. port })
        collect(refused:push(example()))
        refused:close()
        local proxied = assert(new_client { proxy = "http://user:" .. SECRET .. "@127.0.0.1:" .. port })
        collect(proxied:push(example()))
        collect(proxied)
        proxied:close()

        assert.is_true(#tokens_seen >= 2)
        assert.is_true(#collected > 50)
    end)

    it("finds neither the secret nor any token in anything collected", function()
        local strings = strings_of(collected)
        assert.is_true(#strings > 100)
        for _, s in ipairs(strings) do
            assert.is_nil(s:find("S3CR3T", 1, true), "secret found in: " .. s:gsub("S3CR3T", "S-3-C-R-3-T"))
            for _, value in ipairs(tokens_seen) do
                assert.is_nil(s:find(value, 1, true), "a token found in a collected string")
            end
        end
    end)

    it("prints nothing secret from a separate process's failures", function()
        local lua = os.getenv("AO_LUA") or "lua5.4"
        local script = os.tmpname()
        local f = assert(io.open(script, "w"))
        f:write(([[
local ao = require "choco.active_order"
local statuses = { "created" }
local function status() return { merchant_order_id = "P1", user_id = 1, external_status = "created",
    deeplinks = { { link = "https://rahmetapp.kz/1", type = "active_order_card" } },
    external_data = { expired_at = "2030-01-01 00:00:00", title_active_order_card = "T",
    title_call_to_action = "B", need_timer = false, countdown_timer = false } } end
local function show(...)
    print(...)
    for i = 1, select("#", ...) do io.stderr:write(tostring((select(i, ...))), "\n") end
end
local on = function(info) for k, v in pairs(info) do print(k, v) end end
local c = ao.new { base_url = %q, client_id = "test-client", client_secret = %q .. "-WRONG",
                   statuses = statuses, on_request = on, on_response = on }
show(c, c:push(status()))
c = ao.new { base_url = %q, client_id = "test-client", client_secret = %q, statuses = statuses,
             retry = { max_attempts = 1 }, on_request = on, on_response = on }
show(c, c:push(status()))
show(ao.new { base_url = %q, token = %q .. "\n" })
error(tostring(select(2, ao.new { base_url = "http://10.1.1.1", client_id = "x", client_secret = %q })))
]]):format(emu.url, SECRET, emu.url, SECRET, emu.url, SECRET, SECRET))
        f:close()
        emu:faults("status", { { kind = "http", status = 503 } })
        local p = assert(io.popen(lua .. " " .. script .. " 2>&1"))
        local output = p:read("*a")
        p:close()
        os.remove(script)
        assert.matches("AUTH_FAILED", output, 1, true)
        assert.matches("config/BAD_OPTION", output, 1, true)
        assert.is_nil(output:find("S3CR3T", 1, true), "the secret was printed")
    end)
end)
