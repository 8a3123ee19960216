-- core.json_decode(text, null_value [, max_depth]): the C decoder the OpenResty
-- app uses on the event loop instead of lua-cjson. It must build the very
-- value cjson.decode builds for every document both accept, and refuse
-- everything that is not strict RFC 8259 JSON in UTF-8.
--
-- Where json_decode is STRICTER than lua-cjson 2.1 (cjson accepts, we refuse;
-- every case is asserted in "refuses what lua-cjson lets through" below):
--   * invalid UTF-8 inside a string (stray continuation bytes, overlong forms,
--     UTF-8-encoded surrogates, code points beyond U+10FFFF, truncated sequences)
--   * raw control bytes (U+0001..U+001F, tab and newline included) inside a string (cjson
--     refuses a raw NUL too)
--   * numbers outside the JSON grammar: leading zeros ("007", "-01"), a '.'
--     without digits after it ("1.", "1.e5"), a '+' sign, hexadecimal ("0x10"),
--     "inf", "nan", "Infinity", "-Infinity" (cjson reads them with strtod)
--   * a NUL byte after the value ("[1]\0": cjson stops reading at the NUL)
-- Where it differs otherwise:
--   * on Lua 5.3/5.4 an integer literal that fits lua_Integer is an integer
--     (cjson 2.1 gives a float with the same value; == holds, math.type differs,
--     and beyond 2^53 the integer is exact where cjson's float is rounded)
--   * null_value may be nil: an object's null member is left out, a null in
--     an array is an error ("null in an array")
--   * bad input gives nil, reason, byte position instead of raising
-- Same as cjson: the last of two equal keys wins, 1e400 is math.huge (strtod's
-- overflow), -0 is the float -0.0, depth limit 1000 by default.

local core = require "choco.active_order.core"
local cjson = require "cjson"
local fixtures = require "spec.support.fixtures"

local json_decode = core.json_decode
local null = cjson.null
local math_type = rawget(math, "type")   -- nil on Lua 5.1 and LuaJIT
local ROOT = os.getenv("AO_ROOT") or "."

-- Deep equality with numbers compared by value (an integer equals cjson's
-- float of the same literal), -0.0 told apart from 0. Returns ok, where.
local function same(a, b, path)
    path = path or "$"
    if type(a) ~= type(b) then
        return false, path .. ": " .. type(a) .. " vs " .. type(b)
    end
    if type(a) == "number" then
        local ok
        if math_type and math_type(a) ~= math_type(b) then
            ok = a + 0.0 == b + 0.0
        else
            ok = a == b
        end
        if ok and a == 0 then ok = 1 / a == 1 / b end
        return ok, path .. ": " .. tostring(a) .. " vs " .. tostring(b)
    end
    if type(a) ~= "table" then
        return a == b, path .. ": " .. tostring(a) .. " vs " .. tostring(b)
    end
    for k, v in pairs(a) do
        local ok, where = same(v, b[k], path .. "." .. tostring(k))
        if not ok then return false, where end
    end
    for k in pairs(b) do
        if a[k] == nil then return false, path .. "." .. tostring(k) .. " missing" end
    end
    return true
end

local function q(s)
    return (string.format("%q", s):gsub("\n", "n"):sub(1, 120))
end

-- Both decoders on one text: json_decode's value must be cjson's.
local function assert_like_cjson(text)
    local value, reason = json_decode(text, null)
    assert(value ~= nil, "json_decode refused " .. q(text) .. ": " .. tostring(reason))
    local expected = cjson.decode(text)
    local ok, where = same(value, expected)
    assert(ok, "json_decode and cjson differ on " .. q(text) .. " at " .. tostring(where))
    return value
end

local function read_file(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

-- An independent strict RFC 8259 checker in plain Lua (recursive descent), to
-- judge what json_decode refuses: it must refuse exactly the invalid texts.
local function strictly_valid(s)
    local pos = 1
    local function ws() pos = s:find("[^ \t\n\r]", pos) or #s + 1 end
    local function string_ok()
        pos = pos + 1
        while true do
            local c = s:byte(pos)
            if not c or c < 32 then return false end
            if c == 34 then pos = pos + 1; return true end
            if c == 92 then
                local e = s:sub(pos + 1, pos + 1)
                if e ~= "" and ('"\\/bfnrt'):find(e, 1, true) then
                    pos = pos + 2
                elseif e == "u" then
                    local h = s:match("^%x%x%x%x", pos + 2)
                    if not h then return false end
                    local unit = tonumber(h, 16)
                    pos = pos + 6
                    if unit >= 0xDC00 and unit <= 0xDFFF then return false end
                    if unit >= 0xD800 and unit <= 0xDBFF then
                        local low = s:match("^\\u(%x%x%x%x)", pos)
                        if not low or tonumber(low, 16) < 0xDC00 or tonumber(low, 16) > 0xDFFF then return false end
                        pos = pos + 6
                    end
                else
                    return false
                end
            elseif c < 128 then
                pos = pos + 1
            else
                local n, lo, hi
                if c >= 0xC2 and c <= 0xDF then n, lo, hi = 1, 0x80, 0xBF
                elseif c >= 0xE0 and c <= 0xEF then
                    n, lo, hi = 2, c == 0xE0 and 0xA0 or 0x80, c == 0xED and 0x9F or 0xBF
                elseif c >= 0xF0 and c <= 0xF4 then
                    n, lo, hi = 3, c == 0xF0 and 0x90 or 0x80, c == 0xF4 and 0x8F or 0xBF
                else return false end
                local second = s:byte(pos + 1)
                if not second or second < lo or second > hi then return false end
                for k = 2, n do
                    local b = s:byte(pos + k)
                    if not b or b < 0x80 or b > 0xBF then return false end
                end
                pos = pos + n + 1
            end
        end
    end
    local value_ok
    local function container_ok(open)
        local close = open == "{" and "}" or "]"
        pos = pos + 1
        ws()
        if s:sub(pos, pos) == close then pos = pos + 1; return true end
        while true do
            if open == "{" then
                ws()
                if s:sub(pos, pos) ~= '"' or not string_ok() then return false end
                ws()
                if s:sub(pos, pos) ~= ":" then return false end
                pos = pos + 1
            end
            if not value_ok() then return false end
            ws()
            local c = s:sub(pos, pos)
            pos = pos + 1
            if c == close then return true end
            if c ~= "," then return false end
        end
    end
    function value_ok()
        ws()
        local c = s:sub(pos, pos)
        if c == "{" or c == "[" then return container_ok(c) end
        if c == '"' then return string_ok() end
        for _, word in ipairs { "true", "false", "null" } do
            if s:sub(pos, pos + #word - 1) == word then pos = pos + #word; return true end
        end
        local number = s:match("^%-?%d+", pos)
        if not number or number:match("^%-?0%d") then return false end
        pos = pos + #number
        local fraction = s:match("^%.%d+", pos) or ""
        if fraction == "" and s:sub(pos, pos) == "." then return false end
        pos = pos + #fraction
        if s:match("^[eE]", pos) then
            local exponent = s:match("^[eE][+-]?%d+", pos)
            if not exponent then return false end
            pos = pos + #exponent
        end
        return true
    end
    local ok = value_ok()
    ws()
    return ok and pos == #s + 1
end

-- A seeded random JSON value (same seed, same values on one interpreter).
local PIECES = { "a", "Z", "0", " ", '"', "\\", "/", "\n", "\t", "\1", "\31", "\127", "é", "Ж", "€", "😀",
    "Заказ", "https://x.kz/1?a=b", string.rep("x", 17), string.rep("y", 70) }
local function random_string()
    local parts = {}
    for i = 1, math.random(0, 6) do parts[i] = PIECES[math.random(#PIECES)] end
    return table.concat(parts)
end

local function random_value(depth)
    local kind = math.random(depth > 0 and 9 or 6)
    if kind == 1 then return math.random(-1000000000, 1000000000) end
    if kind == 2 then return (math.random() - 0.5) * 10 ^ math.random(-6, 15) end
    if kind == 3 then return random_string() end
    if kind == 4 then return math.random(2) == 1 end
    if kind == 5 then return null end
    if kind == 6 then return math.random(-9, 9) end
    if kind == 7 or kind == 8 then
        local t = {}
        for i = 1, math.random(0, 8) do t[i] = random_value(depth - 1) end
        return t
    end
    local t = {}
    for _ = 1, math.random(0, 8) do t[random_string()] = random_value(depth - 1) end
    return t
end

-- Lua 5.3+: every integer of the original must come back as an integer.
local function assert_integers_kept(original, decoded)
    if not math_type then return end
    if type(original) == "table" then
        for k, v in pairs(original) do assert_integers_kept(v, decoded[k]) end
    elseif math_type(original) == "integer" then
        assert(math_type(decoded) == "integer", "integer " .. tostring(original) .. " came back as "
            .. tostring(math_type(decoded)))
    end
end

local function nested(depth, open, close)
    return string.rep(open, depth) .. string.rep(close, depth)
end

local function corpus()
    local docs = {}
    for _, name in ipairs { "delivery_cooking.json", "delivery_on_the_way.json", "status_created.json" } do
        docs[#docs + 1] = read_file(ROOT .. "/examples/events/" .. name)
    end
    for line in read_file(ROOT .. "/examples/events/delivery_day.jsonl"):gmatch("[^\n]+") do
        docs[#docs + 1] = line
    end
    docs[#docs + 1] = cjson.encode(fixtures.example())
    docs[#docs + 1] = require("choco.active_order").encode(fixtures.example())
    return docs
end

describe("core.json_decode", function()
    it("decodes the example status exactly as it was written", function()
        local status = fixtures.example()
        local body = cjson.encode(status)
        assert.are.equal(552, #body)   -- the body the OpenResty app receives
        local value = assert_like_cjson(body)
        assert.is_true((same(value, status)))
        assert_integers_kept(status, value)
    end)

    it("agrees with lua-cjson on every example event and the emulator's status", function()
        local docs = corpus()
        assert.is_true(#docs >= 6)
        for _, doc in ipairs(docs) do assert_like_cjson(doc) end
    end)

    it("agrees with lua-cjson on hand-written edge cases", function()
        local cases = {
            '{}', '[]', '[[]]', '[{}]', '{"a":{}}', '[[],{},[[]],{"a":{"b":[]}}]', '""', '"x"', '0', '-0',
            '-0.0', '0.0', '1', '-1', 'true', 'false', 'null', '[null,true,false]', '{"a":null}',
            ' \t\r\n[ 1 , 2 ] \n', '{ "a" : 1 , "b" : [ ] }',
            '"\\"\\\\\\/\\b\\f\\n\\r\\t"', '"\\u0000"', '"a\\u0000b"', '"\\u00e9\\u00E9"', '"\\u20ac"',
            '"\\ud83d\\ude00"', '"\\uD83D\\uDE00x"', '"\\u007f\127"', '"é€😀Ж"',
            '9223372036854775807', '-9223372036854775808', '9223372036854775808', '-9223372036854775809',
            '9007199254740992', '9007199254740993', '-9007199254740993', '123456789012345678901234567890',
            '1e2', '1E2', '1e+2', '1e-2', '2.5e3', '-2.5E-3', '1E-0', '0e0', '0.1', '3.141592653589793',
            '5e-324', '4.9406564584124654e-324', '2.2250738585072014e-308', '1.7976931348623157e308',
            '1e400', '-1e400', '1e-400', '0.30000000000000004', '100000000000000000000000e-3',
            '0.0000000000000000000000000001', '1.00000000000000000000000000000000000000001',
            '{"a":1,"a":2}', '{"a":1,"b":2,"a":3}', '{"a":1,"\\u0061":2}', '{"\\u0061":1,"a":2}',
        }
        for _, text in ipairs(cases) do assert_like_cjson(text) end
    end)

    it("gives integers on Lua 5.3+ and floats elsewhere, exactly", function()
        local max, min = json_decode("9223372036854775807"), json_decode("-9223372036854775808")
        if math_type then
            assert.are.equal("integer", math_type(max))
            assert.are.equal(math.maxinteger, max)
            assert.are.equal(math.mininteger, min)
            assert.are.equal("integer", math_type(json_decode("0")))
            assert.are.equal("integer", math_type(json_decode("-7")))
            assert.are.equal(9007199254740993, json_decode("9007199254740993"))
            assert.are.equal("float", math_type(json_decode("9223372036854775808")))
            assert.are.equal("float", math_type(json_decode("1.0")))
            assert.are.equal("float", math_type(json_decode("1e2")))
            assert.are.equal("float", math_type(json_decode("-0")))
        else
            assert.are.equal(2 ^ 63, max)
            assert.are.equal(-2 ^ 63, min)
        end
        assert.are.equal(2 ^ 63, json_decode("9223372036854775808"))
        assert.are.equal(-math.huge, 1 / json_decode("-0"))
        assert.are.equal(math.huge, 1 / json_decode("0"))
        assert.are.equal(math.huge, json_decode("1e400"))
        assert.are.equal(-math.huge, json_decode("-1e400"))
    end)

    it("reads every float as strtod does (Lua's tonumber)", function()
        math.randomseed(7)
        for _ = 1, 3000 do
            local digits = {}
            for i = 1, math.random(1, 22) do digits[i] = tostring(math.random(0, 9)) end
            local mantissa = table.concat(digits):gsub("^0+(%d)", "%1")
            local text = (math.random(2) == 1 and "-" or "") .. mantissa
            if math.random(2) == 1 then text = text .. "." .. tostring(math.random(0, 99999)) end
            if math.random(2) == 1 then text = text .. "e" .. tostring(math.random(-40, 40)) end
            local value = json_decode(text)
            assert(value == tonumber(text), text .. ": " .. tostring(value) .. " vs " .. tostring(tonumber(text)))
            assert(same(value, cjson.decode(text)), text)
        end
    end)

    it("decodes strings with escapes at every position around 8- and 16-byte boundaries", function()
        local escapes = { "\\n", '\\"', "\\\\", "\\/", "\\u00e9", "\\ud83d\\ude00", "\\u0000" }
        local raw = { "é", "€", "😀", "Ж" }
        for _, len in ipairs { 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100 } do
            for pos = 0, len do
                for _, e in ipairs(escapes) do
                    assert_like_cjson('"' .. string.rep("a", pos) .. e .. string.rep("b", len - pos) .. '"')
                end
                for _, r in ipairs(raw) do
                    assert_like_cjson('["' .. string.rep("a", pos) .. r .. string.rep("b", len - pos) .. '\\t"]')
                end
            end
        end
        local long = string.rep("ab\\n\\u00e9", 200)   -- longer than the on-stack decode buffer
        assert.are.equal(string.rep("ab\né", 200), json_decode('"' .. long .. '"'))
    end)

    it("agrees with lua-cjson on thousands of random values", function()
        math.randomseed(20261129)
        for _ = 1, 2500 do
            local original = random_value(4)
            local text = cjson.encode(original)
            local value = assert_like_cjson(text)
            assert_integers_kept(original, value)
        end
    end)

    it("never accepts what lua-cjson or a strict checker refuses, in thousands of mutations", function()
        math.randomseed(4242)
        local docs = corpus()
        for _ = 1, 200 do docs[#docs + 1] = cjson.encode(random_value(3)) end
        local interesting = { "{", "}", "[", "]", ",", ":", '"', "\\", "0", "1", "-", "+", ".", "e", "E", " ", "\0",
            "\n", "\1", "\128", "\191", "\192", "\195", "\224", "\237", "\240", "\244", "\255", "n", "t", "f", "u",
            "d8", "00" }
        local lax, refused, accepted = 0, 0, 0
        for n = 1, 4000 do
            local doc = docs[math.random(#docs)]
            local at = math.random(1, #doc + 1)
            local kind = n % 4
            local text
            if kind == 0 then
                text = doc:sub(1, at - 1) .. string.char(math.random(0, 255)) .. doc:sub(at + 1)
            elseif kind == 1 then
                text = doc:sub(1, at - 1)
            elseif kind == 2 then
                text = doc:sub(1, at - 1) .. interesting[math.random(#interesting)] .. doc:sub(at)
            else
                text = doc:sub(1, at - 1) .. doc:sub(at + 1)
            end
            local cjson_ok, cjson_value = pcall(cjson.decode, text)
            local value, reason, position = json_decode(text, null)
            local valid = strictly_valid(text)
            if value == nil then
                refused = refused + 1
                assert(not valid, "refused strictly valid JSON " .. q(text) .. ": " .. tostring(reason))
                assert(type(reason) == "string" and #reason < 120, q(text))
                assert(position >= 1 and position <= #text + 1, q(text))
                if cjson_ok then lax = lax + 1 end
            else
                accepted = accepted + 1
                assert(valid, "accepted invalid JSON " .. q(text))
                assert(cjson_ok, "accepted what cjson refuses: " .. q(text))
                assert(same(value, cjson_value), "differs from cjson on " .. q(text))
            end
        end
        -- the mutations must exercise both outcomes and the lax side of cjson
        assert.is_true(refused > 1000)
        assert.is_true(accepted > 200)
        assert.is_true(lax > 0)
    end)

    it("refuses what lua-cjson lets through (the stricter cases listed at the top)", function()
        local stricter = {
            '"\128"', '"a\191b"', '"\192\128"', '"\193\191"', '"\224\128\128"', '"\237\160\128"',
            '"\244\144\128\128"', '"\248\136\128\128\128"', '"\255"', '"\226\130"', '"é\226\130"',
            '"a\1b"', '"\31"', '"a\tb"', '"a\nb"',
            "007", "-01", "1.", "1.e5", "+1", "0x10", "inf", "nan", "Infinity", "-Infinity",
            "[1]\0", "[1]\0junk",
        }
        for _, text in ipairs(stricter) do
            assert(pcall(cjson.decode, text), "cjson no longer accepts " .. q(text) .. ": update the list")
            local value, reason = json_decode(text, null)
            assert(value == nil and reason:find("^invalid JSON at byte %d+: "), q(text))
        end
    end)

    it("refuses lone and reversed surrogates and bad escapes, as cjson does", function()
        for _, text in ipairs { '"\\ud800"', '"\\udc00"', '"\\ud800\\u0041"', '"\\ud800x"', '"\\udbff\\udbff"',
            '"\\ud800\\n"', '"\\uDC00\\uD800"', '"\\u12"', '"\\u12g4"', '"\\x"', '"\\U0041"', '"\\u' } do
            assert.is_false(pcall(cjson.decode, text))
            local value, reason, position = json_decode(text, null)
            assert(value == nil, q(text))
            assert.are.equal(2, position)
            assert.is_truthy(reason:find("^invalid JSON at byte 2: "))
        end
    end)

    it("returns nil, a short reason and the byte position for text that is not JSON", function()
        local cases = {
            { '{"a" 1}', 6, "expected ':'" },
            { "[1,2", 5, "unexpected end of input" },
            { "", 1, "unexpected end of input" },
            { "   ", 4, "unexpected end of input" },
            { "[1,]", 4, "expected a value" },
            { "{\"a\":1,}", 8, "expected a string key" },
            { "[1 2]", 4, "expected ',' or ']'" },
            { '{"a":1 "b":2}', 8, "expected ',' or '}'" },
            { "tru", 1, "expected a value" },
            { '{"a":1}x', 8, "unexpected text after the value" },
            { '"ab\1"', 4, "control character in a string" },
            { '"abc', 5, "unterminated string" },
            { '["ok","\255"]', 8, "invalid UTF-8 in a string" },
            { "01", 1, "invalid number (leading zero)" },
            { "-", 1, "invalid number" },
            { "1.x", 3, "invalid number (no digit after '.')" },
            { "1e+", 4, "invalid number (no digit in the exponent)" },
            { "\f1", 1, "expected a value" },
        }
        for _, case in ipairs(cases) do
            local value, reason, position = json_decode(case[1], null)
            assert(value == nil, q(case[1]))
            assert.are.equal("invalid JSON at byte " .. case[2] .. ": " .. case[3], reason)
            assert.are.equal(case[2], position)
            if math_type then assert.are.equal("integer", math_type(position)) end
        end
        -- a reason never echoes the input
        local junk = string.rep("secret-token-", 100)
        local _, reason = json_decode('{"a":' .. junk .. "}")
        assert.is_nil(reason:find("secret", 1, true))
        assert.is_true(#reason < 100)
    end)

    it("honours max_depth exactly and defaults to lua-cjson's 1000", function()
        for _, depth in ipairs { 1, 2, 5, 16, 17, 33, 64, 200 } do
            for _, pair in ipairs { { "[", "]" }, { '{"k":', "}" } } do
                local ok_text = string.rep(pair[1], depth) .. "1" .. string.rep(pair[2], depth)
                local deep_text = string.rep(pair[1], depth + 1) .. "1" .. string.rep(pair[2], depth + 1)
                assert.is_table(json_decode(ok_text, null, depth))
                local value, reason, position = json_decode(deep_text, null, depth)
                assert.is_nil(value)
                assert.are.equal("JSON too deep at byte " .. position .. ": more than " .. depth
                    .. " nested arrays and objects", reason)
                assert.are.equal(depth * #pair[1] + 1, position)
            end
        end
        local t = json_decode(nested(1000, "[", "]"))
        for _ = 1, 999 do t = t[1] end
        assert.are.same({}, t)
        assert.is_truthy(select(2, json_decode(nested(1001, "[", "]"))):find("too deep", 1, true))
        assert.is_true(pcall(cjson.decode, nested(1000, "[", "]")))
        assert.is_false(pcall(cjson.decode, nested(1001, "[", "]")))
    end)

    it("refuses a 100000-deep document without crashing, whatever max_depth says", function()
        local value, reason = json_decode(string.rep("[", 100000))
        assert.is_nil(value)
        assert.is_truthy(reason:find("too deep", 1, true))
        value, reason = json_decode(string.rep("[", 100000), null, 1000000)
        assert.is_nil(value)
        -- the Lua stack gives out first on 5.1/LuaJIT (8000 slots per C call); 5.4 reaches the end
        assert(reason:find("too large", 1, true) or reason:find("unexpected end of input", 1, true), reason)
        value, reason = json_decode(nested(100000, "[", "]"), null, 1000000)
        if value == nil then
            assert.is_truthy(reason:find("^JSON too large at byte %d+: the Lua stack cannot grow$"))
        else
            for _ = 1, 99999 do value = value[1] end
            assert.are.same({}, value)
        end
    end)

    it("decodes a 200000-element array and a 50000-key object (chunked into their tables)", function()
        local list = {}
        for i = 1, 200000 do list[i] = i end
        local decoded = json_decode(cjson.encode(list))
        assert.are.equal(200000, #decoded)
        for i = 1, 200000 do
            if decoded[i] ~= i then error("element " .. i .. " is " .. tostring(decoded[i])) end
        end
        local object = {}
        for i = 1, 50000 do object["k" .. i] = i end
        decoded = json_decode(cjson.encode(object))
        local count = 0
        for k, v in pairs(decoded) do
            count = count + 1
            if object[k] ~= v then error("key " .. k) end
        end
        assert.are.equal(50000, count)
    end)

    it("keeps document order across chunks and deep nesting (last equal key wins)", function()
        -- 70 entries before each nested child: chunks flushed early, parents moved when deeper than 16
        local parts = {}
        for level = 1, 40 do
            if level % 2 == 1 then
                local keys = {}
                for i = 1, 70 do keys[i] = '"k' .. i .. '":' .. i end
                keys[#keys + 1] = '"k5":"again"'
                parts[#parts + 1] = "{" .. table.concat(keys, ",") .. ',"child":'
            else
                local items = {}
                for i = 1, 70 do items[i] = tostring(i) end
                parts[#parts + 1] = "[" .. table.concat(items, ",") .. ","
            end
        end
        local text = table.concat(parts) .. "null"
        for level = 40, 1, -1 do
            text = text .. (level % 2 == 1 and ',"k1":"last"}' or ",71]")
        end
        local value = assert_like_cjson(text)
        assert.are.equal("again", value.k5)
        assert.are.equal("last", value.k1)
        assert.are.equal(71, value.child[72])   -- after the 70 items and the nested object
        -- equal keys far apart in one large object, and written with escapes
        local keys = { '"dup":1' }
        for i = 1, 150 do keys[#keys + 1] = '"x' .. i .. '":' .. i end
        keys[#keys + 1] = '"\\u0064up":2'
        value = assert_like_cjson("{" .. table.concat(keys, ",") .. "}")
        assert.are.equal(2, value.dup)
    end)

    it("stands null_value for null, or leaves the member out when it is nil", function()
        local value = json_decode('{"a":null,"b":[null,1],"c":{"d":null}}', null)
        assert.are.equal(null, value.a)
        assert.are.equal(null, value.b[1])
        assert.are.equal(null, value.c.d)
        local sentinel = {}
        value = json_decode("[null,2,null]", sentinel)
        assert.are.equal(sentinel, value[1])
        assert.are.equal(sentinel, value[3])

        value = json_decode('{"a":null,"b":1,"c":{"d":null},"e":null}')
        assert.are.same({ b = 1, c = {} }, value)
        value = json_decode('{"a":null,"b":1}', nil)
        assert.is_nil(next(value, next(value)))
        assert.are.equal(1, select("#", json_decode("null")))
        assert.is_nil(json_decode("null"))

        local v, reason, position = json_decode("[1,null]")
        assert.is_nil(v)
        assert.are.equal("JSON null in an array at byte 4, and no null_value to stand for it", reason)
        assert.are.equal(4, position)
        assert.is_truthy(select(2, json_decode('{"a":[{"b":null},null]}')):find("null in an array", 1, true))
    end)

    it("raises only for a text that is not a string or a max_depth that is not a positive integer", function()
        for _, bad in ipairs { 1, true, {}, null } do
            assert.has_error(function() json_decode(bad, null) end)
        end
        assert.has_error(function() json_decode() end)
        for _, depth in ipairs { 0, -1, 1.5, 0 / 0, "10" } do
            assert.has_error(function() json_decode("[]", null, depth) end)
        end
        assert.is_table(json_decode("[]", null, 1))
        assert.is_table(json_decode("[]", null, math.huge))
        assert.is_table(json_decode("[]", null, nil))
    end)
end)

describe("ao.decode_json", function()
    local ao = require "choco.active_order"

    it("gives the value, with cjson.null for null, ready for validate and push", function()
        local status = ao.decode_json(require("cjson").encode(require("spec.support.emulator").example()))
        assert.is_true(ao.validate(status))
        assert.are.equal(require("cjson").null, ao.decode_json('{"a":null}').a)
    end)

    it("returns a decode/BAD_JSON error value with the position where the JSON stops", function()
        local value, err = ao.decode_json('{"a":1} x')
        assert.is_nil(value)
        assert.is_true(require("choco.active_order.errors").is_error(err))
        assert.are.equal("decode", err.kind)
        assert.are.equal("BAD_JSON", err.code)
        assert.are.equal(9, err.position)
        assert.are.equal("decode/BAD_JSON: invalid JSON at byte 9: unexpected text after the value", tostring(err))
        -- the text itself is never quoted back
        local _, secret_err = ao.decode_json('{"client_secret":"s3cr3t-value"')
        assert.is_nil(tostring(secret_err):find("s3cr3t", 1, true))
    end)

    it("raises only for a text that is not a string", function()
        for _, bad in ipairs { 1, true, {}, false } do
            assert.has_error(function() ao.decode_json(bad) end, "decode_json expects a string, not " .. type(bad))
        end
        assert.has_error(function() ao.decode_json() end, "decode_json expects a string, not nil")
    end)
end)
