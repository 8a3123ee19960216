-- Every contract rule the emulator enforces, in both encodings: a status that
-- breaks one gets HTTP 422 (400 when the body cannot be parsed) with a non-zero
-- error_code, a message naming the field, and the problem listed in data.errors.

local emulator = require "spec.support.emulator"
local cjson = require "cjson"

local FORM = "application/x-www-form-urlencoded"
local STATUSES = { "created", "paid", "cooking", "delivering", "delivered", "cancelled" }

local function with(change)
    local s = emulator.example()
    change(s)
    return s
end

local function cyrillic(n) return string.rep("ж", n) end

-- { name, change, json field, form field, code }; a nil field skips that encoding
local INVALID = {
    { "missing merchant_order_id", function(s) s.merchant_order_id = nil end,
        "merchant_order_id", "merchant_order_id", "required" },
    { "empty merchant_order_id", function(s) s.merchant_order_id = "" end,
        "merchant_order_id", "merchant_order_id", "empty" },
    { "merchant_order_id as a number", function(s) s.merchant_order_id = 12344323 end,
        "merchant_order_id", nil, "type" },
    { "merchant_order_id with a line break", function(s) s.merchant_order_id = "A\n1" end,
        "merchant_order_id", "merchant_order_id", "format" },
    { "merchant_order_id over 255 characters", function(s) s.merchant_order_id = string.rep("a", 256) end,
        "merchant_order_id", "merchant_order_id", "too_long" },
    { "missing user_id", function(s) s.user_id = nil end, "user_id", "user_id", "required" },
    { "user_id as a string", function(s) s.user_id = "1234567" end, "user_id", nil, "type" },
    { "user_id with a fraction", function(s) s.user_id = 1.5 end, "user_id", "user_id", "type" },
    { "user_id zero", function(s) s.user_id = 0 end, "user_id", "user_id", "range" },
    { "user_id negative", function(s) s.user_id = -3 end, "user_id", "user_id", "range" },
    { "user_id beyond 2^53", function(s) s.user_id = 2 ^ 60 end, "user_id", nil, "range" },
    { "user_id as a boolean", function(s) s.user_id = true end, "user_id", "user_id", "type" },
    { "missing external_status", function(s) s.external_status = nil end,
        "external_status", "external_status", "required" },
    { "empty external_status", function(s) s.external_status = "" end,
        "external_status", "external_status", "empty" },
    { "unregistered external_status", function(s) s.external_status = "lost" end,
        "external_status", "external_status", "unregistered" },
    { "external_status as a number", function(s) s.external_status = 3 end, "external_status", nil, "type" },
    { "missing deeplinks", function(s) s.deeplinks = nil end, "deeplinks", nil, "required" },
    { "empty deeplinks", function(s) s.deeplinks = {} end, "deeplinks", nil, "empty" },
    { "deeplinks as a string", function(s) s.deeplinks = "https://x" end, "deeplinks", "deeplinks", "type" },
    { "deeplinks as an object",
        function(s) s.deeplinks = { a = { link = "https://x", type = "active_order_card" } } end,
        "deeplinks", nil, "type" },
    { "deeplink without link", function(s) s.deeplinks[1].link = nil end,
        "deeplinks[0].link", "deeplinks[0][link]", "required" },
    { "deeplink without type", function(s) s.deeplinks[2].type = nil end,
        "deeplinks[1].type", "deeplinks[1][type]", "required" },
    { "deeplink type outside the enum", function(s) s.deeplinks[2].type = "active_order_button" end,
        "deeplinks[1].type", "deeplinks[1][type]", "enum" },
    { "deeplink type used twice", function(s) s.deeplinks[2].type = "active_order_call_to_action" end,
        "deeplinks[1].type", "deeplinks[1][type]", "duplicate" },
    { "deeplink with an unknown key", function(s) s.deeplinks[1].title = "x" end,
        "deeplinks[0].title", "deeplinks[0][title]", "unknown_field" },
    { "relative link", function(s) s.deeplinks[1].link = "/100/orders" end,
        "deeplinks[0].link", "deeplinks[0][link]", "format" },
    { "link without scheme separator", function(s) s.deeplinks[1].link = "https:rahmetapp.kz" end,
        "deeplinks[0].link", "deeplinks[0][link]", "format" },
    { "link with a space", function(s) s.deeplinks[1].link = "https://rahmetapp.kz/a b" end,
        "deeplinks[0].link", "deeplinks[0][link]", "format" },
    { "https link without host", function(s) s.deeplinks[1].link = "https:///orders" end,
        "deeplinks[0].link", "deeplinks[0][link]", "format" },
    { "empty link", function(s) s.deeplinks[1].link = "" end, "deeplinks[0].link", "deeplinks[0][link]", "empty" },
    { "link over 2048 bytes", function(s) s.deeplinks[1].link = "https://x.kz/" .. string.rep("a", 2040) end,
        "deeplinks[0].link", "deeplinks[0][link]", "too_long" },
    { "deeplink as a string", function(s) s.deeplinks[1] = "https://x.kz" end, "deeplinks[0]", nil, "type" },
    { "missing external_data", function(s) s.external_data = nil end, "external_data", nil, "required" },
    { "external_data as a string", function(s) s.external_data = "x" end,
        "external_data", "external_data", "type" },
    { "unknown top-level key", function(s) s.is_need_timer = true end, "is_need_timer", "is_need_timer",
        "unknown_field" },
    { "misspelled external_data key", function(s) s.external_data.title_call_to_actoin = "x" end,
        "external_data.title_call_to_actoin", "external_data[title_call_to_actoin]", "unknown_field" },
    { "missing expired_at", function(s) s.external_data.expired_at = nil end,
        "external_data.expired_at", "external_data[expired_at]", "required" },
    { "expired_at with a T", function(s) s.external_data.expired_at = "2021-10-20T16:49:36" end,
        "external_data.expired_at", "external_data[expired_at]", "format" },
    { "expired_at with a zone", function(s) s.external_data.expired_at = "2021-10-20 16:49:36+05:00" end,
        "external_data.expired_at", "external_data[expired_at]", "format" },
    { "expired_at on 29 February of a common year", function(s) s.external_data.expired_at = "2023-02-29 10:00:00" end,
        "external_data.expired_at", "external_data[expired_at]", "range" },
    { "expired_at on 31 April", function(s) s.external_data.expired_at = "2024-04-31 10:00:00" end,
        "external_data.expired_at", "external_data[expired_at]", "range" },
    { "expired_at at 24:00:00", function(s) s.external_data.expired_at = "2024-05-01 24:00:00" end,
        "external_data.expired_at", "external_data[expired_at]", "range" },
    { "expired_at in month 13", function(s) s.external_data.expired_at = "2024-13-01 10:00:00" end,
        "external_data.expired_at", "external_data[expired_at]", "range" },
    { "expired_at with a leap second", function(s) s.external_data.expired_at = "2024-05-01 23:59:60" end,
        "external_data.expired_at", "external_data[expired_at]", "range" },
    { "expired_at as Unix seconds", function(s) s.external_data.expired_at = 1634730576 end,
        "external_data.expired_at", nil, "type" },
    { "missing title_active_order_card", function(s) s.external_data.title_active_order_card = nil end,
        "external_data.title_active_order_card", "external_data[title_active_order_card]", "required" },
    { "empty title_active_order_card", function(s) s.external_data.title_active_order_card = "" end,
        "external_data.title_active_order_card", "external_data[title_active_order_card]", "empty" },
    { "31-letter Cyrillic title", function(s) s.external_data.title_active_order_card = cyrillic(31) end,
        "external_data.title_active_order_card", "external_data[title_active_order_card]", "too_long" },
    { "31-character button title", function(s) s.external_data.title_call_to_action = string.rep("a", 31) end,
        "external_data.title_call_to_action", "external_data[title_call_to_action]", "too_long" },
    { "missing title_call_to_action", function(s) s.external_data.title_call_to_action = nil end,
        "external_data.title_call_to_action", "external_data[title_call_to_action]", "required" },
    { "title with a truncated UTF-8 sequence", function(s) s.external_data.title_call_to_action = "ab\208" end,
        "external_data.title_call_to_action", "external_data[title_call_to_action]", "encoding" },
    { "title with an overlong encoding", function(s) s.external_data.title_call_to_action = "a\192\175" end,
        "external_data.title_call_to_action", "external_data[title_call_to_action]", "encoding" },
    { "title with a UTF-8 encoded surrogate", function(s) s.external_data.title_call_to_action = "a\237\160\128" end,
        "external_data.title_call_to_action", "external_data[title_call_to_action]", "encoding" },
    { "title past U+10FFFF", function(s) s.external_data.title_call_to_action = "a\244\144\128\128" end,
        "external_data.title_call_to_action", "external_data[title_call_to_action]", "encoding" },
    { "61-character subtitle", function(s) s.external_data.subtitle_active_order_card = cyrillic(61) end,
        "external_data.subtitle_active_order_card", "external_data[subtitle_active_order_card]", "too_long" },
    { "empty subtitle", function(s) s.external_data.subtitle_active_order_card = "" end,
        "external_data.subtitle_active_order_card", "external_data[subtitle_active_order_card]", "empty" },
    { "missing need_timer", function(s) s.external_data.need_timer = nil end,
        "external_data.need_timer", "external_data[need_timer]", "required" },
    { "need_timer as the string true", function(s) s.external_data.need_timer = "true" end,
        "external_data.need_timer", nil, "type" },
    { "need_timer as 1", function(s) s.external_data.need_timer = 1 end,
        "external_data.need_timer", "external_data[need_timer]", "type" },
    { "missing countdown_timer", function(s) s.external_data.countdown_timer = nil end,
        "external_data.countdown_timer", "external_data[countdown_timer]", "required" },
    { "countdown_timer as yes", function(s) s.external_data.countdown_timer = "yes" end,
        "external_data.countdown_timer", "external_data[countdown_timer]", "type" },
}

-- raw bodies that break a rule cjson or a table cannot express
local RAW_JSON_INVALID = {
    { "user_id written with a fraction", function(b) return (b:gsub('"user_id":1234567', '"user_id":1234567.0')) end,
        "user_id", "type" },
    { "user_id written with an exponent", function(b) return (b:gsub('"user_id":1234567', '"user_id":1.234567e6')) end,
        "user_id", "type" },
    { "a duplicate top-level key", function(b) return (b:gsub('^{', '{"external_status":"paid",')) end,
        "external_status", "duplicate" },
    { "a duplicate key inside external_data", function(b)
        return (b:gsub('"external_data":{', '"external_data":{"need_timer":true,'))
    end, "external_data.need_timer", "duplicate" },
    { "a duplicate key inside a deeplink", function(b)
        return (b:gsub('"deeplinks":%[{', '"deeplinks":[{"type":"active_order_card",'))
    end, "deeplinks", "duplicate" },
    { "null for a field", function(b) return (b:gsub('"need_timer":false', '"need_timer":null')) end,
        "external_data.need_timer", "type" },
}

local UNPARSEABLE_JSON = {
    { "the contract's example with trailing commas", [[{
  "merchant_order_id": "WEE-11122",
  "user_id": 1234567,
  "external_status": "created",
  "deeplinks": [
    {"link": "https://rahmetapp.kz/100/orders?tab=3", "type": "active_order_call_to_action",},
    {"link": "https://rahmetapp.kz/100/orders?tab=5", "type": "active_order_card",},
  ],
  "external_data": {
    "expired_at": "2021-10-20 16:49:36",
    "title_active_order_card": "Ожидает оплаты",
    "title_call_to_action": "К заказу",
    "need_timer": false,
    "countdown_timer": false,
  },
}]] },
    { "an array", "[]" },
    { "a string", '"x"' },
    { "an empty body", "" },
    { "a truncated object", '{"merchant_order_id":"A"' },
    { "NaN", '{"merchant_order_id":"A","user_id":NaN}' },
    { "a hexadecimal number", '{"merchant_order_id":"A","user_id":0x10}' },
    { "user_id with a leading zero", '{"merchant_order_id":"A","user_id":01234567}' },
    { "trailing garbage", '{"merchant_order_id":"A"} x' },
    { "a raw line break inside a title", nil },   -- built below
    { "a lone surrogate escape", '{"merchant_order_id":"\\ud800"}' },
    { "single quotes", "{'merchant_order_id':'A'}" },
}

local RAW_FORM_INVALID = {
    { "a repeated key", function(b) return b .. "&external_status=paid" end, "external_status", "duplicate" },
    { "a key without a value", function(b) return b .. "&foo" end, "foo", "type" },
    { "need_timer as 1", function(b) return (b:gsub("need_timer%%5D=false", "need_timer%%5D=1")) end,
        "external_data[need_timer]", "type" },
    { "need_timer as TRUE", function(b) return (b:gsub("need_timer%%5D=false", "need_timer%%5D=TRUE")) end,
        "external_data[need_timer]", "type" },
    { "user_id with letters", function(b) return (b:gsub("user_id=1234567", "user_id=12a")) end, "user_id", "type" },
    { "user_id with a leading zero", function(b) return (b:gsub("user_id=1234567", "user_id=01234567")) end,
        "user_id", "range" },
    { "user_id beyond 2^53", function(b) return (b:gsub("user_id=1234567", "user_id=9007199254740993")) end,
        "user_id", "range" },
    { "a gap in deeplink indexes", function(b) return (b:gsub("deeplinks%%5B1%%5D", "deeplinks%%5B2%%5D")) end,
        "deeplinks[1]", "required" },
    { "a deeplink index with a leading zero",
        function(b) return (b:gsub("deeplinks%%5B1%%5D", "deeplinks%%5B01%%5D")) end,
        "deeplinks[01][link]", "format" },
    { "deeplinks sent as one scalar", function(b) return b .. "&deeplinks=x" end, "deeplinks", "type" },
    { "an unknown bracketed key", function(b) return b .. "&extra%5Bx%5D=1" end, "extra[x]", "unknown_field" },
}

describe("gateway emulator validation", function()
    local emu, token

    setup(function()
        emu = emulator.start { statuses = STATUSES }
        token = emu:token()
    end)

    teardown(function()
        if emu then emu:stop() end
    end)

    local function expect_problem(status, body, field, code, http_status)
        local e = cjson.decode(body)
        assert.are.equal(http_status or 422, status, body)
        assert.are_not.equal(0, e.error_code)
        assert.are.equal("error", e.status)
        local found
        for _, p in ipairs(e.data.errors) do
            if p.field == field and p.code == code then found = p end
        end
        assert.is_truthy(found, "expected " .. field .. "/" .. code .. " in " .. body)
        assert.is_truthy(found.message:find(field, 1, true))
        assert.is_truthy(e.message:find(e.data.errors[1].field, 1, true), "the message names a field")
        return e
    end

    it("accepts every valid variation", function()
        local valid = {
            emulator.example(),
            with(function(s) s.external_data.subtitle_active_order_card = nil end),
            with(function(s) s.deeplinks = { s.deeplinks[2] } end),
            with(function(s) s.external_data.title_active_order_card = cyrillic(30) end),
            with(function(s) s.external_data.title_call_to_action = string.rep("😀", 30) end),
            with(function(s) s.external_data.subtitle_active_order_card = cyrillic(60) end),
            with(function(s) s.external_data.expired_at = "2024-02-29 23:59:59" end),
            with(function(s) s.external_data.expired_at = "2000-02-29 00:00:00" end),
            with(function(s) s.deeplinks[1].link = "rahmetapp://orders/1?tab=3" end),
            with(function(s) s.external_status = "cancelled" end),
            with(function(s) s.merchant_order_id = string.rep("я", 255) end),
            with(function(s) s.external_data.title_call_to_action = "Строка\nдве" end),
        }
        for i, s in ipairs(valid) do
            local status, body = emu:put(cjson.encode(s), "application/json", token)
            assert.are.equal(200, status, "json #" .. i .. ": " .. body)
            status, body = emu:put(emulator.form(s), FORM, token)
            assert.are.equal(200, status, "form #" .. i .. ": " .. body)
        end
    end)

    it("accepts user_id up to 2^53-1 in both encodings", function()
        local json = cjson.encode(emulator.example()):gsub('"user_id":1234567', '"user_id":9007199254740991')
        local status, body = emu:put(json, "application/json", token)
        assert.are.equal(200, status, body)
        assert.are.equal(9007199254740991, cjson.decode(body).data.scanned_user_id)
        local form = emulator.form(emulator.example()):gsub("user_id=1234567", "user_id=9007199254740991")
        status, body = emu:put(form, FORM, token)
        assert.are.equal(200, status, body)
    end)

    it("accepts pretty-printed JSON", function()
        local body = table.concat({
            '{',
            '  "merchant_order_id" : "WEE-11122",',
            '  "user_id": 1234567,',
            '  "external_status": "created",',
            '  "deeplinks": [',
            '    {"link": "https://rahmetapp.kz/100/orders?tab=3", "type": "active_order_call_to_action"},',
            '    {"link": "https://rahmetapp.kz/100/orders?tab=5", "type": "active_order_card"}',
            '  ],',
            '  "external_data": {',
            '\t"expired_at": "2021-10-20 16:49:36",',
            '\t"title_active_order_card": "Ожидает оплаты",',
            '\t"title_call_to_action": "К заказу",',
            '\t"subtitle_active_order_card": "Заказ отменен: товара нет в наличии",',
            '\t"need_timer": false,',
            '\t"countdown_timer": false',
            '  }',
            '}',
        }, "\r\n")
        local status, text = emu:put(body, "application/json", token)
        assert.are.equal(200, status, text)
    end)

    it("records a warning for a subtitle with need_timer true, and accepts it", function()
        local s = with(function(x)
            x.merchant_order_id = "warn-1"
            x.external_data.need_timer = true
        end)
        local status = emu:put(cjson.encode(s), "application/json", token)
        assert.are.equal(200, status)
        local h = emu:history("warn-1")
        assert.are.equal(1, #h.history[1].warnings)
        assert.is_truthy(h.history[1].warnings[1]:find("need_timer", 1, true))
    end)

    for _, case in ipairs(INVALID) do
        local name, change, json_field, form_field, code = case[1], case[2], case[3], case[4], case[5]
        if json_field then
            it("rejects " .. name .. " as JSON (" .. json_field .. "/" .. code .. ")", function()
                local status, body = emu:put(cjson.encode(with(change)), "application/json", token)
                expect_problem(status, body, json_field, code)
            end)
        end
        if form_field then
            it("rejects " .. name .. " form-encoded (" .. form_field .. "/" .. code .. ")", function()
                local status, body = emu:put(emulator.form(with(change)), FORM, token)
                expect_problem(status, body, form_field, code)
            end)
        end
    end

    for _, case in ipairs(RAW_JSON_INVALID) do
        it("rejects " .. case[1] .. " (" .. case[3] .. "/" .. case[4] .. ")", function()
            local body = case[2](cjson.encode(emulator.example()))
            local status, text = emu:put(body, "application/json", token)
            expect_problem(status, text, case[3], case[4])
        end)
    end

    for _, case in ipairs(RAW_FORM_INVALID) do
        it("rejects form-encoded " .. case[1] .. " (" .. case[3] .. "/" .. case[4] .. ")", function()
            local body = case[2](emulator.form(emulator.example()))
            local status, text = emu:put(body, FORM, token)
            expect_problem(status, text, case[3], case[4])
        end)
    end

    for _, case in ipairs(UNPARSEABLE_JSON) do
        it("answers 400 to " .. case[1], function()
            local body = case[2]
            if not body then
                body = cjson.encode(emulator.example()):gsub("К заказу", "К\nзаказу")
            end
            local status, text = emu:put(body, "application/json", token)
            local e = cjson.decode(text)
            assert.are.equal(400, status, text)
            assert.are_not.equal(0, e.error_code)
            assert.are.equal(cjson.null, e.data)
        end)
    end

    it("lists every problem at once", function()
        local s = with(function(x)
            x.user_id = 0
            x.external_status = "lost"
            x.external_data.title_call_to_action = string.rep("a", 31)
        end)
        local _, body = emu:put(cjson.encode(s), "application/json", token)
        local e = cjson.decode(body)
        assert.are.equal(3, #e.data.errors)
        assert.is_truthy(e.message:find("and 2 more", 1, true))
    end)

    it("records nothing that it rejected", function()
        local st = emu:state()
        assert.is_true(st.rejected.validation > 60)
        assert.is_nil(emu:history("rejected-order"))
        local s = with(function(x) x.merchant_order_id = "rejected-order"; x.user_id = 0 end)
        emu:put(cjson.encode(s), "application/json", token)
        assert.is_nil(emu:history("rejected-order"))
    end)

    it("leaves no error in nginx's error log", function()
        assert.are.same({}, emu:lua_errors())
    end)
end)
