-- Every rule of the contract, each with statuses that pass and statuses that
-- fail with an exact field and code (the C walk behind ao.validate/ao.encode).

local ao = require "choco.active_order"
local payload = require "choco.active_order.payload"

local example = require("spec.support.fixtures").example

local function count_codes(problems, field, code)
    local n = 0
    for _, p in ipairs(problems) do
        if p.field == field and p.code == code then n = n + 1 end
    end
    return n
end

local function describe_problems(problems)
    local lines = {}
    for _, p in ipairs(problems or {}) do
        lines[#lines + 1] = ("%s %s: %s"):format(p.field, p.code, p.message)
    end
    return table.concat(lines, "\n")
end

-- The status must fail with (at least) this field and code, in both validate and encode.
local function assert_problem(status, field, code, opts)
    local ok, problems = ao.validate(status, opts)
    assert.is_nil(ok)
    assert.is_table(problems)
    assert(count_codes(problems, field, code) >= 1,
        ("expected %s %s, got:\n%s"):format(field, code, describe_problems(problems)))
    local body, problems2 = ao.encode(status, opts)
    assert.is_nil(body)
    assert.same(problems, problems2)
    for _, p in ipairs(problems) do
        assert.is_string(p.message)
        assert.is_true(#p.message > 0)
    end
    return problems
end

local function assert_valid(status, opts)
    local ok, problems = ao.validate(status, opts)
    assert(ok == true, describe_problems(problems))
    local body = ao.encode(status, opts)
    assert.is_string(body)
    return body
end

-- Each case: a mutation of the contract's example, and the one problem it must raise.
local invalid = {
    -- merchant_order_id
    { "merchant_order_id missing", function(s) s.merchant_order_id = nil end, "merchant_order_id", "required" },
    { "merchant_order_id empty", function(s) s.merchant_order_id = "" end, "merchant_order_id", "empty" },
    { "merchant_order_id boolean", function(s) s.merchant_order_id = true end, "merchant_order_id", "type" },
    { "merchant_order_id table", function(s) s.merchant_order_id = {} end, "merchant_order_id", "type" },
    { "merchant_order_id newline", function(s) s.merchant_order_id = "A\n1" end, "merchant_order_id", "format" },
    { "merchant_order_id DEL", function(s) s.merchant_order_id = "A\127" end, "merchant_order_id", "format" },
    { "merchant_order_id NUL", function(s) s.merchant_order_id = "A\0B" end, "merchant_order_id", "format" },
    { "merchant_order_id 129 chars", function(s) s.merchant_order_id = ("x"):rep(129) end,
        "merchant_order_id", "too_long" },
    { "merchant_order_id bad UTF-8", function(s) s.merchant_order_id = "A\255" end, "merchant_order_id", "encoding" },
    { "merchant_order_id negative", function(s) s.merchant_order_id = -1 end, "merchant_order_id", "range" },
    { "merchant_order_id fraction", function(s) s.merchant_order_id = 1.5 end, "merchant_order_id", "type" },
    { "merchant_order_id NaN", function(s) s.merchant_order_id = 0 / 0 end, "merchant_order_id", "type" },
    -- user_id
    { "user_id missing", function(s) s.user_id = nil end, "user_id", "required" },
    { "user_id numeric string", function(s) s.user_id = "1234567" end, "user_id", "type" },
    { "user_id word", function(s) s.user_id = "abc" end, "user_id", "type" },
    { "user_id fraction", function(s) s.user_id = 12.5 end, "user_id", "type" },
    { "user_id NaN", function(s) s.user_id = 0 / 0 end, "user_id", "type" },
    { "user_id infinity", function(s) s.user_id = math.huge end, "user_id", "range" },
    { "user_id minus infinity", function(s) s.user_id = -math.huge end, "user_id", "range" },
    { "user_id zero", function(s) s.user_id = 0 end, "user_id", "range" },
    { "user_id negative", function(s) s.user_id = -5 end, "user_id", "range" },
    { "user_id 2^53", function(s) s.user_id = 2 ^ 53 end, "user_id", "range" },
    { "user_id 1e300", function(s) s.user_id = 1e300 end, "user_id", "range" },
    { "user_id boolean", function(s) s.user_id = true end, "user_id", "type" },
    -- external_status
    { "external_status missing", function(s) s.external_status = nil end, "external_status", "required" },
    { "external_status empty", function(s) s.external_status = "" end, "external_status", "empty" },
    { "external_status number", function(s) s.external_status = 1 end, "external_status", "type" },
    { "external_status tab", function(s) s.external_status = "cre\tated" end, "external_status", "format" },
    { "external_status too long", function(s) s.external_status = ("s"):rep(65) end,
        "external_status", "too_long" },
    -- deeplinks
    { "deeplinks missing", function(s) s.deeplinks = nil end, "deeplinks", "required" },
    { "deeplinks empty", function(s) s.deeplinks = {} end, "deeplinks", "empty" },
    { "deeplinks string", function(s) s.deeplinks = "https://x.kz" end, "deeplinks", "type" },
    { "deeplinks entry string", function(s) s.deeplinks[2] = "https://x.kz" end, "deeplinks[2]", "type" },
    { "deeplinks hole", function(s) s.deeplinks[2] = nil; s.deeplinks[3] = example().deeplinks[2] end,
        "deeplinks[2]", "required" },
    { "deeplinks named key", function(s) s.deeplinks.extra = 1 end, "deeplinks.extra", "unknown_field" },
    { "deeplinks zero index", function(s) s.deeplinks[0] = example().deeplinks[1] end,
        "deeplinks[0]", "unknown_field" },
    { "deeplinks fractional index", function(s) s.deeplinks[1.5] = example().deeplinks[1] end,
        "deeplinks[1.5]", "unknown_field" },
    { "deeplink link missing", function(s) s.deeplinks[1].link = nil end, "deeplinks[1].link", "required" },
    { "deeplink type missing", function(s) s.deeplinks[2].type = nil end, "deeplinks[2].type", "required" },
    { "deeplink type unknown", function(s) s.deeplinks[2].type = "card" end, "deeplinks[2].type", "enum" },
    { "deeplink type wrong case", function(s) s.deeplinks[2].type = "ACTIVE_ORDER_CARD" end,
        "deeplinks[2].type", "enum" },
    { "deeplink type number", function(s) s.deeplinks[2].type = 1 end, "deeplinks[2].type", "type" },
    { "deeplink type twice", function(s) s.deeplinks[2].type = "active_order_call_to_action" end,
        "deeplinks[2].type", "duplicate" },
    { "deeplink extra key", function(s) s.deeplinks[1].title = "x" end, "deeplinks[1].title", "unknown_field" },
    { "deeplink link empty", function(s) s.deeplinks[1].link = "" end, "deeplinks[1].link", "empty" },
    { "deeplink link number", function(s) s.deeplinks[1].link = 42 end, "deeplinks[1].link", "type" },
    { "deeplink link relative", function(s) s.deeplinks[1].link = "/100/orders" end, "deeplinks[1].link", "format" },
    { "deeplink link no scheme", function(s) s.deeplinks[1].link = "rahmetapp.kz/1" end,
        "deeplinks[1].link", "format" },
    { "deeplink link plain http", function(s) s.deeplinks[1].link = "http://rahmetapp.kz/1" end,
        "deeplinks[1].link", "format" },
    { "deeplink link https without host", function(s) s.deeplinks[1].link = "https:///path" end,
        "deeplinks[1].link", "format" },
    { "deeplink link scheme only", function(s) s.deeplinks[1].link = "rahmetapp://" end,
        "deeplinks[1].link", "format" },
    { "deeplink link javascript", function(s) s.deeplinks[1].link = "javascript:alert(1)" end,
        "deeplinks[1].link", "format" },
    { "deeplink link space", function(s) s.deeplinks[1].link = "https://rahmetapp.kz/a b" end,
        "deeplinks[1].link", "format" },
    { "deeplink link newline", function(s) s.deeplinks[1].link = "https://rahmetapp.kz/a\nb" end,
        "deeplinks[1].link", "format" },
    { "deeplink link too long", function(s) s.deeplinks[1].link = "https://x.kz/" .. ("a"):rep(2048) end,
        "deeplinks[1].link", "too_long" },
    { "deeplink link bad UTF-8", function(s) s.deeplinks[1].link = "https://x.kz/\192\128" end,
        "deeplinks[1].link", "encoding" },
    -- external_data
    { "external_data missing", function(s) s.external_data = nil end, "external_data", "required" },
    { "external_data string", function(s) s.external_data = "{}" end, "external_data", "type" },
    { "expired_at missing", function(s) s.external_data.expired_at = nil end, "external_data.expired_at", "required" },
    { "expired_at ISO T", function(s) s.external_data.expired_at = "2021-10-20T16:49:36" end,
        "external_data.expired_at", "format" },
    { "expired_at with zone", function(s) s.external_data.expired_at = "2021-10-20 16:49:36Z" end,
        "external_data.expired_at", "format" },
    { "expired_at date only", function(s) s.external_data.expired_at = "2021-10-20" end,
        "external_data.expired_at", "format" },
    { "expired_at one-digit day", function(s) s.external_data.expired_at = "2021-10-2 16:49:36" end,
        "external_data.expired_at", "format" },
    { "expired_at 2023-02-29", function(s) s.external_data.expired_at = "2023-02-29 10:00:00" end,
        "external_data.expired_at", "range" },
    { "expired_at 1900-02-29", function(s) s.external_data.expired_at = "1900-02-29 10:00:00" end,
        "external_data.expired_at", "range" },
    { "expired_at April 31", function(s) s.external_data.expired_at = "2024-04-31 10:00:00" end,
        "external_data.expired_at", "range" },
    { "expired_at month 13", function(s) s.external_data.expired_at = "2024-13-01 10:00:00" end,
        "external_data.expired_at", "range" },
    { "expired_at month 00", function(s) s.external_data.expired_at = "2024-00-01 10:00:00" end,
        "external_data.expired_at", "range" },
    { "expired_at day 00", function(s) s.external_data.expired_at = "2024-01-00 10:00:00" end,
        "external_data.expired_at", "range" },
    { "expired_at 24:00:00", function(s) s.external_data.expired_at = "2024-01-01 24:00:00" end,
        "external_data.expired_at", "range" },
    { "expired_at minute 60", function(s) s.external_data.expired_at = "2024-01-01 10:60:00" end,
        "external_data.expired_at", "range" },
    { "expired_at leap second", function(s) s.external_data.expired_at = "2016-12-31 23:59:60" end,
        "external_data.expired_at", "range" },
    { "expired_at year 0000", function(s) s.external_data.expired_at = "0000-01-01 00:00:00" end,
        "external_data.expired_at", "range" },
    { "expired_at negative seconds", function(s) s.external_data.expired_at = -1 end,
        "external_data.expired_at", "range" },
    { "expired_at beyond 9999", function(s) s.external_data.expired_at = 253402300800 end,
        "external_data.expired_at", "range" },
    { "expired_at NaN", function(s) s.external_data.expired_at = 0 / 0 end, "external_data.expired_at", "type" },
    { "expired_at infinity", function(s) s.external_data.expired_at = math.huge end,
        "external_data.expired_at", "range" },
    { "expired_at boolean", function(s) s.external_data.expired_at = true end, "external_data.expired_at", "type" },
    { "card title missing", function(s) s.external_data.title_active_order_card = nil end,
        "external_data.title_active_order_card", "required" },
    { "card title empty", function(s) s.external_data.title_active_order_card = "" end,
        "external_data.title_active_order_card", "empty" },
    { "card title number", function(s) s.external_data.title_active_order_card = 5 end,
        "external_data.title_active_order_card", "type" },
    { "card title 31 Cyrillic", function(s) s.external_data.title_active_order_card = ("Ж"):rep(31) end,
        "external_data.title_active_order_card", "too_long" },
    { "card title 31 ASCII", function(s) s.external_data.title_active_order_card = ("a"):rep(31) end,
        "external_data.title_active_order_card", "too_long" },
    { "card title overlong slash", function(s) s.external_data.title_active_order_card = "a\192\175b" end,
        "external_data.title_active_order_card", "encoding" },
    { "card title overlong 3-byte", function(s) s.external_data.title_active_order_card = "\224\128\175" end,
        "external_data.title_active_order_card", "encoding" },
    { "card title surrogate", function(s) s.external_data.title_active_order_card = "\237\160\128" end,
        "external_data.title_active_order_card", "encoding" },
    { "card title truncated", function(s) s.external_data.title_active_order_card = "Заказ\208" end,
        "external_data.title_active_order_card", "encoding" },
    { "card title beyond U+10FFFF", function(s) s.external_data.title_active_order_card = "\244\144\128\128" end,
        "external_data.title_active_order_card", "encoding" },
    { "card title stray continuation", function(s) s.external_data.title_active_order_card = "a\128" end,
        "external_data.title_active_order_card", "encoding" },
    { "card title Latin-1", function(s) s.external_data.title_active_order_card = "caf\233" end,
        "external_data.title_active_order_card", "encoding" },
    { "button title missing", function(s) s.external_data.title_call_to_action = nil end,
        "external_data.title_call_to_action", "required" },
    { "button title 34 chars", function(s) s.external_data.title_call_to_action = ("б"):rep(34) end,
        "external_data.title_call_to_action", "too_long" },
    { "button title table", function(s) s.external_data.title_call_to_action = {} end,
        "external_data.title_call_to_action", "type" },
    { "subtitle empty", function(s) s.external_data.subtitle_active_order_card = "" end,
        "external_data.subtitle_active_order_card", "empty" },
    { "subtitle too long", function(s) s.external_data.subtitle_active_order_card = ("ы"):rep(61) end,
        "external_data.subtitle_active_order_card", "too_long" },
    { "subtitle boolean", function(s) s.external_data.subtitle_active_order_card = false end,
        "external_data.subtitle_active_order_card", "type" },
    { "subtitle with timer", function(s) s.external_data.need_timer = true end,
        "external_data.subtitle_active_order_card", "conflict" },
    { "need_timer missing", function(s) s.external_data.need_timer = nil end, "external_data.need_timer", "required" },
    { "need_timer string true", function(s) s.external_data.need_timer = "true" end,
        "external_data.need_timer", "type" },
    { "need_timer number", function(s) s.external_data.need_timer = 1 end, "external_data.need_timer", "type" },
    { "countdown_timer missing", function(s) s.external_data.countdown_timer = nil end,
        "external_data.countdown_timer", "required" },
    { "countdown_timer string false", function(s) s.external_data.countdown_timer = "false" end,
        "external_data.countdown_timer", "type" },
    -- unknown keys at every level
    { "typo in external_data", function(s)
        s.external_data.title_call_to_actoin = s.external_data.title_call_to_action
        s.external_data.title_call_to_action = nil
    end, "external_data.title_call_to_actoin", "unknown_field" },
    { "unknown top-level key", function(s) s.order_id = 1 end, "order_id", "unknown_field" },
    { "field at the wrong level", function(s) s.need_timer = false end, "need_timer", "unknown_field" },
    { "old revision is_need_timer", function(s) s.is_need_timer = false end, "is_need_timer", "unknown_field" },
    { "numeric key at the top", function(s) s[1] = "x" end, "[1]", "unknown_field" },
    { "boolean key in external_data", function(s) s.external_data[true] = 1 end,
        "external_data[true]", "unknown_field" },
    -- the status itself
    { "status is a string", function() return "status" end, "", "type" },
    { "status is nil", function() return nil end, "", "type" },
}

describe("payload rules", function()
    it("accepts the contract's example", function()
        assert_valid(example())
    end)

    it("has at least 60 distinct invalid statuses", function()
        assert.is_true(#invalid >= 60)
    end)

    for _, case in ipairs(invalid) do
        local name, mutate, field, code = case[1], case[2], case[3], case[4]
        it(("rejects %s as %s %s"):format(name, field, code), function()
            local status = example()
            local replaced = mutate(status)
            if replaced ~= nil or name:match("^status is") then status = replaced end
            local problems = assert_problem(status, field, code)
            assert.is_truthy(payload.CODES[code])
            -- a mutation breaks one rule: no unrelated problem is reported
            if name ~= "typo in external_data" then
                assert.are.equal(1, #problems, describe_problems(problems))
            end
        end)
    end

    describe("merchant_order_id", function()
        it("accepts strings with any printable UTF-8", function()
            local s = example()
            s.merchant_order_id = "Заказ-№42 / x"
            assert_valid(s)
            s.merchant_order_id = ("x"):rep(128)
            assert_valid(s)
        end)
        it("accepts a non-negative integer and writes it as a JSON string", function()
            local s = example()
            s.merchant_order_id = 12344323
            assert.matches('^{"merchant_order_id":"12344323",', assert_valid(s))
            s.merchant_order_id = 0
            assert.matches('^{"merchant_order_id":"0",', assert_valid(s))
            s.merchant_order_id = 2 ^ 53 - 1
            assert.matches('^{"merchant_order_id":"9007199254740991",', assert_valid(s))
        end)
    end)

    describe("user_id", function()
        it("accepts 1 and 2^53 - 1 and an integral float", function()
            local s = example()
            s.user_id = 1
            assert_valid(s)
            s.user_id = 2 ^ 53 - 1
            assert.matches('"user_id":9007199254740991,', assert_valid(s))
            s.user_id = 42.0
            assert.matches('"user_id":42,', assert_valid(s))
        end)
        it("says why a value is rejected", function()
            local s = example()
            s.user_id = "1234567"
            local p = assert_problem(s, "user_id", "type")
            assert.matches("not a string", p[1].message)
            s.user_id = 12.5
            p = assert_problem(s, "user_id", "type")
            assert.matches("fraction", p[1].message)
            s.user_id = 0 / 0
            p = assert_problem(s, "user_id", "type")
            assert.matches("NaN", p[1].message)
            s.user_id = math.huge
            p = assert_problem(s, "user_id", "range")
            assert.matches("infinity", p[1].message)
            s.user_id = 2 ^ 53
            p = assert_problem(s, "user_id", "range")
            assert.matches("2%^53", p[1].message)
        end)
        if math.type then
            it("rejects integers beyond 2^53 - 1 on Lua 5.3+ too", function()
                local s = example()
                s.user_id = math.maxinteger
                assert_problem(s, "user_id", "range")
                s.user_id = math.tointeger(2 ^ 53)
                assert_problem(s, "user_id", "range")
                s.user_id = math.tointeger(2 ^ 53 - 1)
                assert_valid(s)
            end)
        end
    end)

    describe("external_status", function()
        it("is unregistered when a registered list is configured and it is not on it", function()
            local opts = { statuses = { "created", "paid" } }
            local s = example()
            assert_valid(s, opts)
            s.external_status = "delivered"
            local p = assert_problem(s, "external_status", "unregistered", opts)
            assert.matches('"delivered"', p[1].message)
            -- without a list, any non-empty string is fine
            assert_valid(s)
        end)
        it("compares registered statuses byte for byte", function()
            local opts = { statuses = { "created" } }
            local s = example()
            s.external_status = "Created"
            assert_problem(s, "external_status", "unregistered", opts)
            s.external_status = "created "
            assert_problem(s, "external_status", "unregistered", opts)
        end)
    end)

    describe("deeplinks", function()
        it("accepts one link of either type, and app schemes", function()
            local s = example()
            s.deeplinks = { { link = "rahmetapp://orders/1", type = "active_order_card" } }
            assert_valid(s)
            s.deeplinks = { { link = "HTTPS://rahmetapp.kz/1?x=1#y", type = "active_order_call_to_action" } }
            assert_valid(s)
            s.deeplinks = { { link = "https://rahmetapp.kz/заказ/1", type = "active_order_card" } }
            assert_valid(s)
            s.deeplinks[1].link = "https://x.kz/" .. ("a"):rep(2048 - #"https://x.kz/")
            assert_valid(s)
        end)
        it("reports the first hole of a sparse list whatever the border", function()
            local s = example()
            local link = s.deeplinks[2]
            s.deeplinks = { [1] = s.deeplinks[1], [4] = link }
            local p = assert_problem(s, "deeplinks[2]", "required")
            assert.matches("up to 4", p[1].message)
            s.deeplinks = { [2] = link }
            assert_problem(s, "deeplinks[1]", "required")
        end)
        it("suggests the close type name", function()
            local s = example()
            s.deeplinks[2].type = "active_order_crad"
            local p = assert_problem(s, "deeplinks[2].type", "enum")
            assert.matches("did you mean active_order_card", p[1].message)
        end)
        it("names where a duplicate type first appeared", function()
            local s = example()
            s.deeplinks[2].type = "active_order_call_to_action"
            local p = assert_problem(s, "deeplinks[2].type", "duplicate")
            assert.matches("deeplinks%[1%]", p[1].message)
        end)
    end)

    describe("expired_at", function()
        it("accepts real calendar moments, leap days included", function()
            local s = example()
            for _, t in ipairs { "2024-02-29 00:00:00", "2000-02-29 12:00:00", "2021-12-31 23:59:59",
                                 "0001-01-01 00:00:00", "9999-12-31 23:59:59" } do
                s.external_data.expired_at = t
                assert_valid(s)
            end
        end)
        it("accepts Unix seconds", function()
            local s = example()
            s.external_data.expired_at = 0
            assert_valid(s)
            s.external_data.expired_at = os.time()
            assert_valid(s)
        end)
    end)

    describe("titles", function()
        it("counts characters, not bytes", function()
            local s = example()
            s.external_data.title_active_order_card = ("Ж"):rep(30)   -- 60 bytes
            s.external_data.title_call_to_action = ("😀"):rep(30)      -- 120 bytes
            assert_valid(s)
            s.external_data.title_call_to_action = ("😀"):rep(31)
            local p = assert_problem(s, "external_data.title_call_to_action", "too_long")
            assert.are.equal("31 characters, the limit is 30", p[1].message)
        end)
        it("says where the encoding breaks", function()
            local s = example()
            s.external_data.title_active_order_card = "ab\192\175"
            local p = assert_problem(s, "external_data.title_active_order_card", "encoding")
            assert.matches("overlong", p[1].message)
            assert.matches("byte 3", p[1].message)
            s.external_data.title_active_order_card = "\237\191\191"
            p = assert_problem(s, "external_data.title_active_order_card", "encoding")
            assert.matches("surrogate", p[1].message)
            s.external_data.title_active_order_card = "ab\226\130"
            p = assert_problem(s, "external_data.title_active_order_card", "encoding")
            assert.matches("truncated", p[1].message)
            s.external_data.title_active_order_card = "\244\144\128\128"
            p = assert_problem(s, "external_data.title_active_order_card", "encoding")
            assert.matches("U%+10FFFF", p[1].message)
        end)
        it("accepts the edges of valid UTF-8", function()
            local s = example()
            for _, t in ipairs { "\194\128", "\223\191", "\224\160\128", "\237\159\191", "\238\128\128",
                                 "\239\191\191", "\240\144\128\128", "\244\143\191\191", "tab\there" } do
                s.external_data.title_active_order_card = t
                assert_valid(s)
            end
        end)
    end)

    describe("subtitle", function()
        it("is optional", function()
            local s = example()
            s.external_data.subtitle_active_order_card = nil
            assert_valid(s)
            s.external_data.need_timer = true
            assert_valid(s)
        end)
        it("conflicts with need_timer = true and says so", function()
            local s = example()
            s.external_data.need_timer = true
            local p = assert_problem(s, "external_data.subtitle_active_order_card", "conflict")
            assert.matches("need_timer", p[1].message)
        end)
        it("has its own limit of 60 characters", function()
            local s = example()
            s.external_data.subtitle_active_order_card = ("ы"):rep(60)
            assert_valid(s)
        end)
    end)

    describe("unknown keys", function()
        it("suggests the close known key", function()
            local s = example()
            s.external_data.title_call_to_actoin = "x"
            local p = assert_problem(s, "external_data.title_call_to_actoin", "unknown_field")
            assert.matches("did you mean title_call_to_action", p[1].message)
            s = example()
            s.marchant_order_id = "x"
            p = assert_problem(s, "marchant_order_id", "unknown_field")
            assert.matches("did you mean merchant_order_id", p[1].message)
            s = example()
            s.deeplinks[1].lnik = "x"
            p = assert_problem(s, "deeplinks[1].lnik", "unknown_field")
            assert.matches("did you mean link", p[1].message)
        end)
        it("says where a field of another level belongs", function()
            local s = example()
            s.expired_at = "2021-10-20 16:49:36"
            local p = assert_problem(s, "expired_at", "unknown_field")
            assert.matches("inside external_data", p[1].message)
        end)
        it("gives no suggestion for unrelated names", function()
            local s = example()
            s.something_else_entirely = 1
            local p = assert_problem(s, "something_else_entirely", "unknown_field")
            assert.is_nil(p[1].message:find("did you mean", 1, true))
        end)
    end)

    it("reports every problem at once", function()
        local s = example()
        s.user_id = "1"
        s.external_status = ""
        s.deeplinks[1].type = "x"
        s.external_data.need_timer = "false"
        s.external_data.title_active_order_card = ("Ж"):rep(31)
        local _, problems = ao.validate(s)
        assert.are.equal(5, #problems)
        assert.same({ "user_id", "external_status", "deeplinks[1].type", "external_data.title_active_order_card",
                      "external_data.need_timer" },
            { problems[1].field, problems[2].field, problems[3].field, problems[4].field, problems[5].field })
    end)

    it("documents every code it uses", function()
        local codes = {}
        for code in pairs(payload.CODES) do codes[#codes + 1] = code end
        table.sort(codes)
        assert.same({ "conflict", "duplicate", "empty", "encoding", "enum", "format", "range", "required",
                      "too_long", "type", "unknown_field", "unregistered" }, codes)
        for _, case in ipairs(invalid) do
            assert.is_truthy(payload.CODES[case[4]], case[4])
        end
    end)
end)
