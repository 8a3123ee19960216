-- The emulator's rules and the C core's were written apart so that each catches
-- the other's mistakes: every body the core encodes must be accepted as sent,
-- and every status the emulator rejects must be rejected by the core too (where
-- the core is stricter, that is its right: it may refuse more than the gateway).

local emulator = require "spec.support.emulator"
local ao = require "choco.active_order"
local cjson = require "cjson"

local STATUSES = { "created", "paid", "cooking", "delivering", "delivered", "cancelled" }
local OPTS = { statuses = STATUSES }
local SEED = 20261129

local ALPHABETS = {
    { "a", "Z", "0", " ", "-", ":", "/", "&", "\"", "\\" },
    { "ж", "Ө", "қ", "ү", "ң", "Ә", "ё" },
    { "😀", "€", "中", "ß" },
}

local function random_text(max)
    local n = math.random(1, max)
    local out = {}
    for i = 1, n do
        local alphabet = ALPHABETS[math.random(#ALPHABETS)]
        out[i] = alphabet[math.random(#alphabet)]
    end
    return table.concat(out)
end

local LINKS = {
    "https://rahmetapp.kz/100/orders?tab=3", "https://example.kz/a/b?c=d&e=%20f#frag", "rahmetapp://orders/7",
    "https://xn--80ak6aa92e.com/", "https://host.kz:8443/path", "https://h.kz/путь",
}

local function random_date()
    local y, m = math.random(2000, 2099), math.random(1, 12)
    local days = ({ 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 })[m]
    if m == 2 and y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) then days = 29 end
    return string.format("%04d-%02d-%02d %02d:%02d:%02d", y, m, math.random(1, days), math.random(0, 23),
        math.random(0, 59), math.random(0, 59))
end

local function random_status(i)
    local links = {}
    local types = { "active_order_call_to_action", "active_order_card" }
    if math.random(2) == 1 then types = { types[2], types[1] } end
    for k = 1, math.random(1, 2) do links[k] = { link = LINKS[math.random(#LINKS)], type = types[k] } end
    local need_timer = math.random(2) == 1
    return {
        merchant_order_id = "AGREE-" .. i .. "-" .. random_text(8):gsub("[%c]", ""),
        user_id = math.random(1, 2147483647) * (math.random(2) == 1 and 1 or 4194303) % 9007199254740991 + 1,
        external_status = STATUSES[math.random(#STATUSES)],
        deeplinks = links,
        external_data = {
            expired_at = random_date(),
            title_active_order_card = random_text(30),
            title_call_to_action = random_text(30),
            subtitle_active_order_card = (not need_timer and math.random(2) == 1) and random_text(60) or nil,
            need_timer = need_timer,
            countdown_timer = math.random(2) == 1,
        },
    }
end

describe("gateway emulator and C core agreement", function()
    local emu, token

    setup(function()
        emu = emulator.start { statuses = STATUSES }
        token = emu:token()
        math.randomseed(SEED)
    end)

    teardown(function()
        if emu then emu:stop() end
    end)

    it("accepts, as sent, every body the core encodes (200 random statuses, seed " .. SEED .. ")", function()
        for i = 1, 200 do
            local s = random_status(i)
            local body, problems = ao.encode(s, OPTS)
            assert.is_string(body, problems and problems[1] and problems[1].message)
            local status, text = emu:put(body, "application/json", token)
            assert.are.equal(200, status, "status #" .. i .. " " .. body .. " -> " .. text)
            local h = emu:history(s.merchant_order_id)
            assert.are.same(cjson.decode(body), h.last_body)
            assert.are.equal(body, h.history[#h.history].raw)
        end
    end)

    -- a valid base for the mutations, inside every limit of both sides
    local function base()
        local s = emulator.example()
        s.merchant_order_id = "AGREE-BASE"
        return s
    end

    local MUTATIONS = {
        { "no merchant_order_id", function(s) s.merchant_order_id = nil end },
        { "empty merchant_order_id", function(s) s.merchant_order_id = "" end },
        { "control character in merchant_order_id", function(s) s.merchant_order_id = "A\1" end },
        { "user_id 0", function(s) s.user_id = 0 end },
        { "user_id 1.5", function(s) s.user_id = 1.5 end },
        { "user_id beyond 2^53", function(s) s.user_id = 2 ^ 54 end },
        { "user_id as a string", function(s) s.user_id = "5" end },
        { "unregistered status", function(s) s.external_status = "teleported" end },
        { "empty deeplinks", function(s) s.deeplinks = {} end },
        { "deeplink type twice", function(s) s.deeplinks[2].type = s.deeplinks[1].type end },
        { "deeplink type outside the enum", function(s) s.deeplinks[1].type = "card" end },
        { "relative link", function(s) s.deeplinks[1].link = "orders/1" end },
        { "link with a space", function(s) s.deeplinks[1].link = "https://a.kz/x y" end },
        { "link over 2048 bytes", function(s) s.deeplinks[1].link = "https://a.kz/" .. string.rep("b", 2048) end },
        { "unknown deeplink key", function(s) s.deeplinks[1].label = "x" end },
        { "unknown top-level key", function(s) s.is_need_timer = false end },
        { "misspelled external_data key", function(s) s.external_data.title_call_to_actoin = "x" end },
        { "expired_at with T", function(s) s.external_data.expired_at = "2024-01-01T00:00:00" end },
        { "expired_at on 2023-02-29", function(s) s.external_data.expired_at = "2023-02-29 00:00:00" end },
        { "expired_at at 24:00:00", function(s) s.external_data.expired_at = "2024-01-01 24:00:00" end },
        { "31-character title", function(s) s.external_data.title_active_order_card = string.rep("ж", 31) end },
        { "empty title", function(s) s.external_data.title_call_to_action = "" end },
        { "title with invalid UTF-8", function(s) s.external_data.title_call_to_action = "a\255" end },
        { "title with a surrogate", function(s) s.external_data.title_call_to_action = "a\237\176\128" end },
        { "61-character subtitle", function(s) s.external_data.subtitle_active_order_card = string.rep("ж", 61) end },
        { "need_timer as a string", function(s) s.external_data.need_timer = "false" end },
        { "countdown_timer missing", function(s) s.external_data.countdown_timer = nil end },
        { "external_data missing", function(s) s.external_data = nil end },
    }

    for _, case in ipairs(MUTATIONS) do
        it("both reject " .. case[1], function()
            local s = base()
            case[2](s)
            local ok = ao.validate(s, OPTS)
            assert.is_nil(ok, "the core accepted it")
            -- what the emulator gets is what a careless encoder would send
            local ok_json, body = pcall(cjson.encode, s)
            assert.is_true(ok_json)
            local status, text = emu:put(body, "application/json", token)
            assert.is_true(status == 422 or status == 400, "emulator answered " .. tostring(status) .. " " .. text)
        end)
    end

    it("leaves no error in nginx's error log", function()
        assert.are.same({}, emu:lua_errors())
    end)
end)
