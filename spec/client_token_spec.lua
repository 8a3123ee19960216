-- The token's life: fetched once, renewed shortly before expiry, renewed once
-- on a 401 (only while the rejected token is still the cached one), fixed
-- tokens, and the pluggable store.

local ao = require "choco.active_order"
local clients = require "spec.support.clients"
local emulator = require "spec.support.emulator"
local token = require "choco.active_order.token"

local STATUSES = { "created", "paid", "cooking", "delivering", "delivered", "cancelled" }
local SECRET = "token-spec-secret"

local function example(order_id)
    return {
        merchant_order_id = order_id or "ORDER-TOKEN",
        user_id = 7,
        external_status = "paid",
        deeplinks = { { link = "https://rahmetapp.kz/100/orders?tab=5", type = "active_order_card" } },
        external_data = {
            expired_at = "2030-01-01 00:00:00",
            title_active_order_card = "Оплачен",
            title_call_to_action = "К заказу",
            need_timer = true,
            countdown_timer = false,
        },
    }
end

local sleep = require("choco.active_order.core").sleep

describe("the token", function()
    local emu

    emulator.use({ statuses = STATUSES, client_secret = SECRET, token_ttl = 2 },
        function(started) emu = started end)

    local function new_client(extra)
        return clients.new(emu, { statuses = STATUSES, retry = { base_delay = 0.01, max_delay = 0.05 } }, extra)
    end

    it("is renewed shortly before it expires (ttl 2 s: margin 0.2 s)", function()
        local c = new_client()
        assert(c:push(example()))
        assert(c:push(example()))
        assert.equal(1, emu:state().tokens_issued)
        sleep(1.9)
        local data, meta = c:push(example())
        assert.is_table(data, tostring(meta))
        assert.equal(1, meta.attempts) -- renewed before sending: no 401 on the way
        assert.equal(2, emu:state().tokens_issued)
        assert.equal(3, emu:state().requests.status)
        c:close()
    end)

    it("is renewed once when the gateway answers 401, and the push goes through", function()
        local c = new_client()
        assert(c:push(example()))
        emu:revoke()
        local data, meta = c:push(example())
        assert.is_table(data, tostring(meta))
        assert.equal(2, meta.attempts)
        assert.equal(2, emu:state().tokens_issued)
        c:close()
    end)

    it("renews the 401 even with max_attempts = 1", function()
        local c = new_client { retry = { max_attempts = 1 } }
        assert(c:push(example()))
        emu:revoke()
        local data, meta = c:push(example())
        assert.is_table(data, tostring(meta))
        c:close()
    end)

    it("reports TOKEN_REJECTED when a fixed token is refused, without renewal", function()
        local c = assert(ao.new { base_url = emu.url, token = "not-a-token", statuses = STATUSES })
        local data, err = c:push(example())
        assert.is_nil(data)
        assert.equal("auth", err.kind)
        assert.equal("TOKEN_REJECTED", err.code)
        assert.equal(401, err.http_status)
        assert.equal(1, err.attempts)
        assert.is_false(err.retryable)
        assert.equal(0, emu:state().tokens_issued)
        c:close()
    end)

    it("uses a fixed token as given", function()
        local fetcher = new_client()
        assert(fetcher:push(example()))
        local value = fetcher.tokens.store:get()
        fetcher:close()
        local c = assert(ao.new { base_url = emu.url, token = value, statuses = STATUSES })
        assert(c:push(example()))
        assert.equal(1, emu:state().tokens_issued)
        c:close()
    end)

    it("is shared through a pluggable store, renewed by one holder of its lock", function()
        -- two clients (think: two workers) share one store
        local shared = token.memory_store()
        local a = new_client { token_store = shared }
        local b = new_client { token_store = shared }
        assert(a:push(example()))
        assert(b:push(example()))
        assert.equal(1, emu:state().tokens_issued)
        -- b sees a 401 for the shared token, renews it; a then uses b's token without a 401
        emu:revoke()
        local _, meta_b = assert(b:push(example()))
        assert.equal(2, meta_b.attempts)
        local _, meta_a = assert(a:push(example()))
        assert.equal(1, meta_a.attempts)
        assert.equal(2, emu:state().tokens_issued)
        a:close()
        b:close()
    end)

    it("does not renew again when another caller already replaced the rejected token", function()
        local shared = token.memory_store()
        local a = new_client { token_store = shared }
        assert(a:push(example()))
        local old = shared:get()
        emu:revoke()
        local b = new_client { token_store = shared }
        assert(b:push(example())) -- 401, renewed by b
        assert.equal(2, emu:state().tokens_issued)
        -- a now reports the old token as rejected: the store keeps b's fresh one
        assert.is_true(a.tokens:rejected(old))
        assert.not_equal(old, (shared:get()))
        assert(a:push(example()))
        assert.equal(2, emu:state().tokens_issued)
        a:close()
        b:close()
    end)

    it("waits for a lock held by another renewal, then uses a still-valid token", function()
        -- the client's clock runs ahead by `skew`: it can be put inside the renewal
        -- window (the last 0.2 s of 2) without waiting, while the emulator still takes the token
        local skew = 0
        local real = require("choco.active_order.core").monotonic
        local shared = token.memory_store()
        local a = new_client { token_store = shared, clock = function() return real() + skew end }
        assert(a:push(example()))
        skew = 1.85
        assert(shared:lock())
        local data, meta = a:push(example())
        shared:unlock()
        assert.is_table(data, tostring(meta))
        assert.equal(1, emu:state().tokens_issued)
        -- past its lifetime, with the lock still held elsewhere: TOKEN_BUSY, retryable
        skew = 2.5
        assert(shared:lock())
        local none, err = a:push(example())
        shared:unlock()
        assert.is_nil(none)
        assert.equal("auth", err.kind)
        assert.equal("TOKEN_BUSY", err.code)
        assert.is_true(err.retryable)
        assert.equal(4, err.attempts)
        assert.equal(1, emu:state().tokens_issued)
        a:close()
    end)

    it("accepts only visible ASCII as a header value", function()
        assert.is_true(token.header_safe("eyJ0eX.abc-_~+/="))
        assert.is_false(token.header_safe("abc\r\nX-Evil: 1"))
        assert.is_false(token.header_safe("abc\0"))
        assert.is_false(token.header_safe("a b"))
        assert.is_false(token.header_safe(""))
        assert.is_false(token.header_safe(nil))
        assert.equal(60, token.renew_margin(10800))
        assert.equal(0.2, token.renew_margin(2))
    end)
end)
