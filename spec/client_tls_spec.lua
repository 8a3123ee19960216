-- TLS: the emulator's self-signed certificate is refused by default (and that
-- failure is never retried), accepted with ca_file.

local ao = require "choco.active_order"
local emulator = require "spec.support.emulator"

local STATUSES = { "created", "paid", "cooking", "delivering", "delivered", "cancelled" }
local SECRET = "tls-spec-secret"
-- A TLS handshake (the system CA bundle read and parsed included) counts as
-- connecting, and takes seconds under valgrind; nil keeps the client's defaults.
local SANITIZED = os.getenv("AO_SANITIZED") ~= nil
local CONNECT_TIMEOUT, TIMEOUT = SANITIZED and 30 or nil, SANITIZED and 60 or nil

local function example()
    return {
        merchant_order_id = "ORDER-TLS",
        user_id = 42,
        external_status = "cooking",
        deeplinks = { { link = "https://rahmetapp.kz/100/orders?tab=5", type = "active_order_card" } },
        external_data = {
            expired_at = "2030-01-01 00:00:00",
            title_active_order_card = "Готовим",
            title_call_to_action = "К заказу",
            need_timer = true,
            countdown_timer = true,
        },
    }
end

describe("TLS", function()
    local emu

    emulator.use({ statuses = STATUSES, client_secret = SECRET, tls = true, keep_state = true },
        function(started) emu = started end)

    it("serves https", function()
        assert.matches("^https://", emu.url)
        assert.is_string(emu.ca_file)
    end)

    it("refuses the self-signed certificate by default, once, with PEER_FAILED_VERIFICATION", function()
        local c = assert(ao.new { base_url = emu.url, client_id = "test-client", client_secret = SECRET,
                                  statuses = STATUSES, connect_timeout = CONNECT_TIMEOUT, timeout = TIMEOUT })
        local data, err = c:push(example())
        assert.is_nil(data)
        assert.equal("transport", err.kind)
        assert.equal("PEER_FAILED_VERIFICATION", err.code)
        assert.is_false(err.retryable)
        assert.equal(1, err.attempts)
        assert.matches("^transport/PEER_FAILED_VERIFICATION: ", tostring(err))
        c:close()
    end)

    it("accepts it with ca_file, over one connection", function()
        local c = assert(ao.new { base_url = emu.url, client_id = "test-client", client_secret = SECRET,
                                  statuses = STATUSES, ca_file = emu.ca_file,
                                  connect_timeout = CONNECT_TIMEOUT, timeout = TIMEOUT })
        local opened = 0
        for _ = 1, 20 do
            local data, meta = c:push(example())
            assert.is_table(data, tostring(meta))
            opened = opened + (meta.new_connections or 0)
        end
        assert.equal(0, opened) -- the token request opened the only connection
        assert.equal("cooking", emu:history("ORDER-TLS").last)
        c:close()
    end)
end)
