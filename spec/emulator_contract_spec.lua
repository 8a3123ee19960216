-- The gateway emulator serves the contract: tokens, the status PUT in both
-- encodings, the envelope on every answer. Driven with LuaSocket on a real nginx.

local emulator = require "spec.support.emulator"
local cjson = require "cjson"
local socket = require "socket"

local STATUSES = { "created", "paid", "cooking", "delivering", "delivered", "cancelled" }
local FORM = "application/x-www-form-urlencoded"

describe("gateway emulator contract", function()
    local emu

    emulator.use({ statuses = STATUSES, client_id = "shop-1", client_secret = "s3cret value" },
        function(started) emu = started end)

    local function token_request(body, content_type)
        return emu:request("POST", "/auth/token", body, { ["content-type"] = content_type or FORM })
    end

    local function envelope(status, body, headers)
        assert.is_truthy(headers["content-type"]:find("application/json; charset=utf-8", 1, true),
            "content type " .. tostring(headers["content-type"]))
        local e = cjson.decode(body)
        assert.is_number(e.error_code)
        assert.is_string(e.message)
        assert.are.equal(e.error_code == 0 and "success" or "error", e.status)
        assert.is_not_nil(e.data)   -- present, possibly cjson.null
        return e, status
    end

    describe("POST /auth/token", function()
        it("issues a Bearer token with the configured lifetime for the configured credentials", function()
            local status, body, headers = token_request(
                "client_id=shop-1&client_secret=s3cret+value&grant_type=client_credentials")
            local e = envelope(status, body, headers)
            assert.are.equal(200, status)
            assert.are.equal(0, e.error_code)
            assert.are.equal("Bearer", e.data.token_type)
            assert.are.equal(10800, e.data.expire_in)
            assert.is_true(#e.data.token >= 32)
            assert.are.equal(1, emu:state().tokens_issued)
        end)

        it("gives a different token every time", function()
            local seen = {}
            for _ = 1, 20 do
                local t = emu:token()
                assert.is_nil(seen[t])
                seen[t] = true
            end
        end)

        it("answers error_code 4 'Client authentication failed' to wrong credentials", function()
            for _, body in ipairs {
                "client_id=shop-1&client_secret=wrong&grant_type=client_credentials",
                "client_id=shop-2&client_secret=s3cret+value&grant_type=client_credentials",
                "client_id=shop-1&grant_type=client_credentials",
                "client_secret=s3cret+value&grant_type=client_credentials",
                "",
            } do
                local status, text, headers = token_request(body)
                local e = envelope(status, text, headers)
                assert.are.equal(401, status)
                assert.are.equal(4, e.error_code)
                assert.are.equal("Client authentication failed", e.message)
                assert.are.equal(cjson.null, e.data)
                assert.is_nil(text:find("s3cret", 1, true))
            end
            assert.are.equal(0, emu:state().tokens_issued)
        end)

        it("requires grant_type=client_credentials and form encoding", function()
            local status, body, headers = token_request(
                "client_id=shop-1&client_secret=s3cret+value&grant_type=password")
            local e = envelope(status, body, headers)
            assert.are.equal(400, status)
            assert.are_not.equal(0, e.error_code)
            assert.is_truthy(e.message:find("grant_type", 1, true))

            status, body, headers = token_request(
                cjson.encode {
                    client_id = "shop-1", client_secret = "s3cret value", grant_type = "client_credentials",
                },
                "application/json")
            e = envelope(status, body, headers)
            assert.are.equal(400, status)
            assert.are_not.equal(0, e.error_code)
        end)

        it("refuses other methods with 405 and an envelope", function()
            local status, body, headers = emu:request("GET", "/auth/token")
            local e = envelope(status, body, headers)
            assert.are.equal(405, status)
            assert.are.equal("POST", headers.allow)
            assert.are_not.equal(0, e.error_code)
        end)
    end)

    describe("PUT /orders/v2/preorder/external/status", function()
        it("accepts the contract's example as JSON and fills data from the request", function()
            local token = emu:token()
            local status, body, headers = emu:put(cjson.encode(emulator.example()), "application/json", token)
            local e = envelope(status, body, headers)
            assert.are.equal(200, status)
            assert.are.equal(0, e.error_code)
            assert.are.equal("Статус успешно обновлён", e.message)
            local d = e.data
            assert.are.equal("WEE-11122", d.merchant_order_id)
            assert.are.equal("2021-10-20 16:49:36", d.expired_at)
            assert.are.equal(1, d.external_status_id)
            assert.are.equal(1234567, d.scanned_user_id)
            assert.is_number(d.id)
            assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$", d.updated_at)
            assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$", d.created_at)
            for _, k in ipairs { "filial_id", "amount", "qr_code_id", "postlink", "backlink", "merchant_id",
                "failed_postlink", "type", "merchant_slug", "supplementary_data", "external_filial_id",
                "checklink", "failed_on_check", "request_from_type" } do
                assert.is_not_nil(d[k], k)
            end
        end)

        it("writes updated_at in UTC+05:00", function()
            local token = emu:token()
            local _, body = emu:put(cjson.encode(emulator.example()), "application/json", token)
            local updated = cjson.decode(body).data.updated_at
            local expected = os.time() + 5 * 3600
            local y, mo, d, h, mi, s = updated:match("^(%d+)%-(%d+)%-(%d+) (%d+):(%d+):(%d+)$")
            local utc_now = os.date("!*t", expected)
            local as_read = { year = tonumber(y), month = tonumber(mo), day = tonumber(d), hour = tonumber(h),
                min = tonumber(mi), sec = tonumber(s) }
            -- both sides through os.time of broken-down UTC: compare seconds
            local diff = os.time(as_read) - os.time(utc_now)
            assert.is_true(math.abs(diff) <= 2, "updated_at " .. updated)
        end)

        it("numbers external_status_id by the registered list, 1-based", function()
            local token = emu:token()
            for i, name in ipairs(STATUSES) do
                local s = emulator.example()
                s.external_status = name
                local status, body = emu:put(cjson.encode(s), "application/json", token)
                assert.are.equal(200, status)
                assert.are.equal(i, cjson.decode(body).data.external_status_id)
            end
        end)

        it("keeps id and created_at of an order across updates", function()
            local token = emu:token()
            local s = emulator.example()
            s.merchant_order_id = "keep-1"
            local _, first = emu:put(cjson.encode(s), "application/json", token)
            s.external_status = "paid"
            local _, second = emu:put(cjson.encode(s), "application/json", token)
            first, second = cjson.decode(first).data, cjson.decode(second).data
            assert.are.equal(first.id, second.id)
            assert.are.equal(first.created_at, second.created_at)
            s.merchant_order_id = "keep-2"
            local _, third = emu:put(cjson.encode(s), "application/json", token)
            assert.are_not.equal(first.id, cjson.decode(third).data.id)
        end)

        it("accepts the same status form-encoded, booleans as true/false", function()
            local token = emu:token()
            local s = emulator.example()
            s.external_data.need_timer = true
            s.external_data.subtitle_active_order_card = nil
            local status, body, headers = emu:put(emulator.form(s), FORM, token)
            local e = envelope(status, body, headers)
            assert.are.equal(200, status, body)
            assert.are.equal(1234567, e.data.scanned_user_id)
            local h = emu:history("WEE-11122")
            assert.are.equal("form", h.history[1].encoding)
            assert.are.equal(true, h.last_body.external_data.need_timer)
            assert.are.equal(1234567, h.last_body.user_id)
            assert.are.equal("https://rahmetapp.kz/100/orders?tab=5", h.last_body.deeplinks[2].link)
        end)

        it("accepts a charset parameter on the media type", function()
            local status = emu:put(cjson.encode(emulator.example()), "application/json; charset=utf-8", emu:token())
            assert.are.equal(200, status)
        end)

        it("serves the path written with the contract's double slash", function()
            local status, body = emu:request("PUT", "//orders/v2/preorder/external/status",
                cjson.encode(emulator.example()),
                { ["content-type"] = "application/json", authorization = "Bearer " .. emu:token() })
            assert.are.equal(200, status, body)
            assert.are.equal(1, emu:state().accepted)
        end)

        it("answers 401 with an envelope to a missing, malformed or unknown token", function()
            local body = cjson.encode(emulator.example())
            for _, auth in ipairs { false, "Basic dGVzdDp0ZXN0", "Bearer", "Bearer not-a-token", "bearer x y" } do
                local status, text, headers = emu:request("PUT", "/orders/v2/preorder/external/status", body,
                    { ["content-type"] = "application/json", authorization = auth or nil })
                local e = envelope(status, text, headers)
                assert.are.equal(401, status)
                assert.are_not.equal(0, e.error_code)
                assert.are.equal(cjson.null, e.data)
            end
            assert.are.equal(0, emu:state().accepted)
            assert.are.equal(5, emu:state().rejected.auth)
        end)

        it("stops accepting a revoked token, and one revoked alone", function()
            local a, b = emu:token(), emu:token()
            local body = cjson.encode(emulator.example())
            assert.are.equal(200, (emu:put(body, "application/json", a)))
            assert.are.same({ revoked = 1 }, emu:revoke(a))
            assert.are.equal(401, (emu:put(body, "application/json", a)))
            assert.are.equal(200, (emu:put(body, "application/json", b)))
            assert.are.same({ revoked = 1 }, emu:revoke())
            assert.are.equal(401, (emu:put(body, "application/json", b)))
            assert.are.equal(200, (emu:put(body, "application/json", emu:token())))
        end)

        it("refuses other methods with 405", function()
            local status, body, headers = emu:request("POST", "/orders/v2/preorder/external/status",
                cjson.encode(emulator.example()), { ["content-type"] = "application/json" })
            envelope(status, body, headers)
            assert.are.equal(405, status)
            assert.are.equal("PUT", headers.allow)
        end)

        it("answers 415 to a body that is neither JSON nor form encoded", function()
            local status, body, headers = emu:put(cjson.encode(emulator.example()), "text/plain", emu:token())
            local e = envelope(status, body, headers)
            assert.are.equal(415, status)
            assert.are_not.equal(0, e.error_code)
        end)

        it("answers 413 to a body over the limit", function()
            local big = string.rep("x", 70000)
            local s = emulator.example()
            s.merchant_order_id = big
            local status, body, headers = emu:put(cjson.encode(s), "application/json", emu:token())
            envelope(status, body, headers)
            assert.are.equal(413, status)
        end)
    end)

    describe("any other path", function()
        it("answers 404 with an envelope", function()
            local status, body, headers = emu:request("GET", "/orders/v2/preorder/external")
            local e = envelope(status, body, headers)
            assert.are.equal(404, status)
            assert.are_not.equal(0, e.error_code)
        end)

        it("answers a malformed request with an envelope", function()
            local c = socket.tcp()
            c:settimeout(5)
            assert(c:connect("127.0.0.1", emu.port))
            c:send("GARBAGE\r\n\r\n")
            local line = c:receive("*l")
            local headers = {}
            while true do
                local h = c:receive("*l")
                if not h or h == "" then break end
                local k, v = h:match("^([^:]+):%s*(.*)$")
                headers[k:lower()] = v
            end
            local body = c:receive(tonumber(headers["content-length"]))
            c:close()
            assert.matches("^HTTP/1%.1 400", line)
            envelope(400, body, headers)
        end)
    end)

    describe("token lifetime", function()
        it("expires tokens after the configured number of seconds", function()
            local short = emulator.start { token_ttl = 1 }
            local ok, err = pcall(function()
                local token = short:token()
                local body = cjson.encode(emulator.example())
                assert.are.equal(200, (short:put(body, "application/json", token)))
                socket.sleep(1.3)
                local status, text = short:put(body, "application/json", token)
                assert.are.equal(401, status)
                assert.are_not.equal(0, cjson.decode(text).error_code)
                assert.are.equal(200, (short:put(body, "application/json", short:token())))
                assert.are.same({}, short:lua_errors())
            end)
            short:stop()
            assert(ok, err)
        end)
    end)

    it("leaves no error in nginx's error log", function()
        assert.are.same({}, emu:lua_errors())
    end)
end)
