-- core.envelope_ok: the strict scan that lets push_many (keep_data = false)
-- recognise the gateway's success answer without decoding it. Its one promise:
-- it never says "ok" where lua-cjson would not decode an object whose
-- error_code is 0; everything it refuses goes to the full decoder, so it may be
-- stricter than cjson anywhere (and is: RFC 8259 JSON in valid UTF-8 only).

local core = require "choco.active_order.core"
local cjson = require("cjson.safe").new()
local emulator = require "spec.support.emulator"
local fixtures = require "spec.support.fixtures"

local envelope_ok = core.envelope_ok

-- The contract's example success response, as printed there.
local CONTRACT_ANSWER = [[
{
  "error_code": 0, "status": "success", "message": "Статус успешно обновлён",
  "data": {
    "id": 1111, "merchant_order_id": "11122", "filial_id": 1, "amount": "1",
    "qr_code_id": 1, "postlink": "http://postlink/", "backlink": null,
    "created_at": "2021-10-18 16:49:36", "updated_at": "2021-11-03 04:09:52",
    "merchant_id": 1234, "failed_postlink": "http://failed_post/",
    "expired_at": "2021-10-18 17:19:36", "type": 0, "scanned_user_id": 12234,
    "merchant_slug": null, "supplementary_data": null, "external_filial_id": null,
    "external_status_id": 7, "checklink": "http://checklink/",
    "failed_on_check": true, "request_from_type": "miniapp"
  }
}
]]

-- The same answer as the emulator writes it: compact, slashes escaped the way Debian's cjson does.
local COMPACT_ANSWER = '{"error_code":0,"status":"success","message":"Статус успешно обновлён","data":'
    .. '{"id":1,"merchant_order_id":"WEE-11122","filial_id":1,"amount":"1","qr_code_id":1,'
    .. '"postlink":"http:\\/\\/postlink\\/","backlink":null,"created_at":"2026-11-29 13:41:42",'
    .. '"updated_at":"2026-11-29 13:41:42","merchant_id":1234,"failed_postlink":"http://failed_post/",'
    .. '"expired_at":"2021-10-20 16:49:36","type":0,"scanned_user_id":1234567,"merchant_slug":null,'
    .. '"supplementary_data":null,"external_filial_id":null,"external_status_id":1,'
    .. '"checklink":"http://checklink/","failed_on_check":false,"request_from_type":"miniapp"}}'

-- "ok" or the reason envelope_ok gives.
local function verdict(body)
    local ok, why = envelope_ok(body)
    if ok then
        assert.is_nil(why)
        return "ok"
    end
    assert.is_false(ok)
    assert.is_string(why)
    return why
end

-- What the client's full path calls a success: cjson decodes an object whose error_code == 0.
local function decoder_success(body)
    local value = cjson.decode(body)
    return type(value) == "table" and value.error_code == 0
end

local function check_all(cases)
    for _, case in ipairs(cases) do
        local body, expected = case[1], case[2]
        assert.equal(expected, verdict(body), body)
        if expected == "ok" then assert.is_true(decoder_success(body), body) end
    end
end

-- A top-level success object with `value` as the string "s".
local function with_string(inner)
    return '{"error_code":0,"s":"' .. inner .. '"}'
end

local function nested(open, close, depth)
    return open:rep(depth) .. close:rep(depth)
end

describe("core.envelope_ok", function()
    it("recognises the gateway's success answer in every layout", function()
        check_all {
            { CONTRACT_ANSWER, "ok" },
            { COMPACT_ANSWER, "ok" },
            { " \t\r\n" .. COMPACT_ANSWER .. " \t\r\n", "ok" },
            { (CONTRACT_ANSWER:gsub("\n", "\r\n")), "ok" },
            { '{"error_code":0}', "ok" },
            { '{ "error_code" : 0 }', "ok" },
            { '{"status":"success","data":{},"error_code":0}', "ok" },
            { '{"error_code":0,"data":null}', "ok" },
            { '{"error_code":0,"data":[]}', "ok" },
            { '{"error_code":0,"data":[{},[],"",0,-1.5e-3,1E+2,true,false,null]}', "ok" },
        }
    end)

    it("judges error_code at the top level only, and only the literal 0", function()
        check_all {
            { '{"error_code":1}', "not_zero" },
            { '{"error_code":-1}', "not_zero" },
            { '{"error_code":10}', "not_zero" },
            { '{"error_code":101,"status":"error","message":"x","data":null}', "not_zero" },
            -- equal to zero for cjson, but left to it
            { '{"error_code":0.0}', "not_zero" },
            { '{"error_code":-0}', "not_zero" },
            { '{"error_code":0e0}', "not_zero" },
            { '{"error_code":0E+0}', "not_zero" },
            -- not numbers
            { '{"error_code":"0"}', "not_zero" },
            { '{"error_code":null}', "not_zero" },
            { '{"error_code":false}', "not_zero" },
            { '{"error_code":[0]}', "not_zero" },
            { '{"error_code":{"value":0}}', "not_zero" },
            { '{"error_code":{}}', "not_zero" },
            -- nested, not top-level
            { '{"data":{"error_code":0}}', "no_error_code" },
            { '{"data":[{"error_code":0}]}', "no_error_code" },
            { '{"data":{"error_code":0},"error_code":7}', "not_zero" },
            { '{"error_code":0,"data":{"error_code":7}}', "ok" },
            { '{"Error_code":0}', "no_error_code" },
            { '{"error_code ":0}', "no_error_code" },
            { '{"error_cod":0}', "no_error_code" },
            { '{}', "no_error_code" },
        }
    end)

    it("leaves duplicate error_code keys and escaped top-level keys to the decoder", function()
        check_all {
            -- cjson keeps the last of equal keys
            { '{"error_code":0,"error_code":3}', "ambiguous" },
            { '{"error_code":3,"error_code":0}', "ambiguous" },
            { '{"error_code":0,"error_code":0}', "ambiguous" },
            -- an escaped key may spell error_code
            { '{"error\\u005fcode":3,"error_code":0}', "ambiguous" },
            { '{"error_code":0,"error\\u005fcode":3}', "ambiguous" },
            { '{"error_code":0,"st\\u0061tus":"x"}', "ambiguous" },
            -- escapes in nested keys and in values are fine
            { '{"error_code":0,"data":{"k\\u0065y":"v\\n"}}', "ok" },
        }
        -- the decoder's own reading of the first two, for the record
        assert.is_false(decoder_success('{"error_code":0,"error_code":3}'))
        assert.is_true(decoder_success('{"error\\u005fcode":3,"error_code":0}'))
    end)

    it("calls other JSON values not_object", function()
        check_all {
            { "[]", "not_object" },
            { '[{"error_code":0}]', "not_object" },
            { '"error_code"', "not_object" },
            { "0", "not_object" },
            { "-1.5", "not_object" },
            { "true", "not_object" },
            { "false", "not_object" },
            { " null ", "not_object" },
        }
    end)

    it("refuses what is not strict JSON, or not only JSON", function()
        local invalid = {
            "", " ", "\n\t", "{", "}", "[", "{]", "[}", '{"error_code":0', '{"error_code":0,}',
            '{"error_code":0}}', '{"error_code":0}x', '{"error_code":0} {}', '{"error_code":0}\0',
            '{"error_code":0}\0garbage', '\0{"error_code":0}', '{"error_code":0};',
            '{"error_code" 0}', '{"error_code"::0}', '{"error_code":}', "{'error_code':0}", "{error_code:0}",
            '{"error_code":0 "a":1}', '{"error_code":0,,"a":1}', '{,"error_code":0}',
            '{"error_code":0,"a":[1,]}', '{"error_code":0,"a":[,1]}', '{"error_code":0,"a":[1 2]}',
            '{"error_code":0,"a":tru}', '{"error_code":0,"a":nul}', '{"error_code":0,"a":True}',
            '{"error_code":0,"a":nulls}', '{"error_code":0,"a":NaN}', '{"error_code":0,"a":Infinity}',
            '{"error_code":0,"a":-Infinity}', '{"error_code":00}', '{"error_code":01}', '{"error_code":+0}',
            '{"error_code":0,"a":.5}', '{"error_code":0,"a":1.}', '{"error_code":0,"a":1e}',
            '{"error_code":0,"a":1e+}', '{"error_code":0,"a":-}', '{"error_code":0,"a":0x10}',
            '{"error_code":0,"a":1.5.2}', '{"error_code":0,"a":--1}',
            '{"error_code":0} // done', '/* x */{"error_code":0}', '\239\187\191{"error_code":0}',
            '{"error_code":0,"a":"unterminated}', '{"error_code":0,"a":"x"', '{"error_code":0,"a":"\\"}',
            '{"error_code":0,"a"}', '{"error_code":0,1:2}', '{"error_code":0,null:2}',
            '{"error_code":0}\11', '{"error_code":0}\12', '\11{"error_code":0}',
        }
        for _, body in ipairs(invalid) do
            assert.equal("invalid_json", verdict(body), body)
        end
    end)

    it("refuses every truncation of the answer", function()
        for _, answer in ipairs { COMPACT_ANSWER, CONTRACT_ANSWER } do
            local trimmed = answer:gsub("%s+$", "")
            for i = 0, #trimmed - 1 do
                local prefix = trimmed:sub(1, i)
                assert.equal("invalid_json", verdict(prefix), prefix)
            end
        end
    end)

    it("reads escapes strictly, surrogate pairs included", function()
        local good = {
            '\\"', "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t", "\\u0041", "\\u00e9", "\\u00E9",
            "\\u0000", "\\uffff", "\\uD83D\\uDE00", "\\ud83d\\ude00", "\\uDBFF\\uDFFF", "a\\nb\\tc",
            "\\u0041\\u0042",
        }
        for _, e in ipairs(good) do
            assert.equal("ok", verdict(with_string(e)), e)
            assert.is_true(decoder_success(with_string(e)), e)
        end
        local bad = {
            "\\x41", "\\a", "\\0", "\\'", "\\U0041", "\\u", "\\u4", "\\u41", "\\u041", "\\u004G", "\\u 041",
            "\\uD800", "\\uDBFF", "\\uDC00", "\\uDFFF", "\\uD800\\u0041", "\\uD800\\uD800", "\\uD800x",
            "\\uD800\\", "\\uD800\\n", "\\uDE00\\uD83D", "\\",
        }
        for _, e in ipairs(bad) do
            assert.equal("invalid_json", verdict(with_string(e)), e)
        end
        assert.equal("invalid_json", verdict('{"error_code":0,"s":"\\'))
        assert.equal("invalid_json", verdict('{"error_code":0,"s":"\\u00'))
        assert.equal("invalid_json", verdict('{"error_code":0,"s":"\\uD83D\\uDE0'))
    end)

    it("refuses raw control bytes inside strings", function()
        for byte = 0, 31 do
            local c = string.char(byte)
            assert.equal("invalid_json", verdict(with_string("abc" .. c .. "def")), "byte " .. byte)
            assert.equal("invalid_json", verdict('{"error_code":0,"k' .. c .. '":1}'), "byte " .. byte)
            -- inside long runs too, which the scan reads in blocks
            for at = 0, 17 do
                local long = ("a"):rep(at) .. c .. ("b"):rep(40)
                assert.equal("invalid_json", verdict(with_string(long)), "byte " .. byte .. " at " .. at)
                assert.equal("invalid_json", verdict('{"error_code":0,"' .. long .. '":1}'), "byte " .. byte)
            end
        end
        -- DEL and every other printable byte may stand unescaped
        assert.equal("ok", verdict(with_string("\127 ~!#$%&'()*+,-./:;<=>?@[]^_`{|}")))
    end)

    it("checks UTF-8 in every string, keys included", function()
        local good = {
            "Статус успешно обновлён", "Ожидает оплаты", "\240\159\152\128", "\244\143\191\191",
            "\239\191\191", "\194\128", "\223\191", "\224\160\128", "é", "日本語",
        }
        for _, s in ipairs(good) do
            assert.equal("ok", verdict(with_string(s)), s)
            assert.equal("ok", verdict('{"error_code":0,"' .. s .. '":1}'), s)
        end
        local bad = {
            "\128", "\191", "\192\175", "\193\191", "\224\128\175", "\240\128\128\175", "\237\160\128",
            "\237\191\191", "\244\144\128\128", "\245\128\128\128", "\248\136\128\128\128", "\254", "\255",
            "\208", "\224\160", "\240\159\152", "a\208", "\208a", "Стату\209",
        }
        for _, s in ipairs(bad) do
            assert.equal("invalid_json", verdict(with_string(s)), s)
            assert.equal("invalid_json", verdict('{"error_code":0,"' .. s .. '":1}'), s)
            assert.equal("invalid_json", verdict('{"error_code":0,"data":{"a":[1,{"b":"' .. s .. '"}]}}'), s)
        end
    end)

    it("finds where a string ends at every offset, and what stands just before", function()
        -- the scan reads strings sixteen or eight bytes at a time: move each interesting byte across those blocks
        for before = 0, 40 do
            for after = 0, 9 do
                local a, b = ("a"):rep(before), ("b"):rep(after)
                assert.equal("ok", verdict(with_string(a .. b)), before .. "/" .. after)
                assert.equal("ok", verdict(with_string(a .. "Я" .. b)), before .. "/" .. after)
                assert.equal("ok", verdict(with_string(a .. '\\"' .. b)), before .. "/" .. after)
                assert.equal("ok", verdict(with_string(a .. "\\u00e9" .. b)), before .. "/" .. after)
                assert.equal("invalid_json", verdict(with_string(a .. "\255" .. b)), before .. "/" .. after)
                assert.equal("invalid_json", verdict(with_string(a .. "\1" .. b)), before .. "/" .. after)
                assert.equal("invalid_json", verdict(with_string(a .. "\208" .. b)), before .. "/" .. after)
                assert.equal("invalid_json", verdict(with_string(a .. '"' .. b)), before .. "/" .. after)
                -- a bad byte right after the string's end is outside it, and breaks the JSON there
                assert.equal("invalid_json", verdict('{"error_code":0,"s":"' .. a .. '"\255' .. b .. '}'))
                -- a valid string then a non-ASCII string close behind it
                assert.equal("ok", verdict('{"error_code":0,"' .. a .. '":"Я' .. b .. '"}'))
            end
        end
    end)

    it("accepts only the JSON number grammar", function()
        for _, n in ipairs { "0", "-0", "1", "-1", "123", "1.5", "-0.25", "1e5", "1E5", "1e+5", "1e-5",
                             "1.5e10", "0.0", "12345678901234567890", "1e400", "-1e-400" } do
            assert.equal("ok", verdict('{"error_code":0,"n":' .. n .. "}"), n)
            assert.equal("ok", verdict('{"error_code":0,"n":[' .. n .. "," .. n .. "]}"), n)
        end
        for _, n in ipairs { "01", "-01", "+1", ".1", "1.", "1.e5", "1e", "1e+", "e5", "-", "--1", "1-",
                             "0x1", "1_000", "1,5", "١" } do
            assert.equal("invalid_json", verdict('{"error_code":0,"n":' .. n .. "}"), n)
        end
    end)

    it("judges nothing nested deeper than its cap, and stays flat on hostile depth", function()
        -- the top-level object is depth 1
        local cap = 64
        check_all {
            { '{"error_code":0,"d":' .. nested("[", "]", cap - 1) .. "}", "ok" },
            { '{"error_code":0,"d":' .. nested("[", "]", cap) .. "}", "too_deep" },
            { '{"error_code":0,"d":' .. ('{"a":'):rep(cap - 1) .. "1" .. ("}"):rep(cap - 1) .. "}", "ok" },
            { '{"error_code":0,"d":' .. ('{"a":'):rep(cap) .. "1" .. ("}"):rep(cap) .. "}", "too_deep" },
            { nested("[", "]", cap), "not_object" },
            { nested("[", "]", cap + 1), "too_deep" },
        }
        -- too deep for the scan, not for cjson (which the full path uses): still a success there
        assert.is_true(decoder_success('{"error_code":0,"d":' .. nested("[", "]", 200) .. "}"))
        -- no recursion: a megabyte of openers is refused at once
        assert.equal("too_deep", verdict(("["):rep(1048576)))
        assert.equal("too_deep", verdict('{"error_code":0,"d":' .. ('{"a":'):rep(200000)))
        -- and closing what was never opened is plain invalid
        assert.equal("invalid_json", verdict('{"error_code":0}]'))
        assert.equal("invalid_json", verdict('{"error_code":0,"d":[}'))
        assert.equal("invalid_json", verdict('{"error_code":0,"d":{]}'))
    end)

    it("reads a large answer whole", function()
        local big = '{"error_code":0,"data":{"padding":"' .. ("x"):rep(300000) .. '","list":['
            .. ("1,"):rep(10000) .. '1]}}'
        assert.equal("ok", verdict(big))
        assert.equal("invalid_json", verdict(big:sub(1, -2)))
        assert.equal("invalid_json", verdict(big:gsub("xxxx", "xx\1x", 1)))
    end)

    it("raises on anything but a string", function()
        for _, v in ipairs { 0, true, {}, print } do
            assert.has_error(function() envelope_ok(v) end)
        end
        assert.has_error(function() envelope_ok() end)
        assert.has_error(function() envelope_ok(nil) end)
    end)

    it("never says ok where lua-cjson would not decode a success (mutations of real answers)", function()
        -- deterministic: a small linear congruential generator, the same bodies on every Lua
        local seed = 12345
        local function random(n)
            seed = (seed * 1103515245 + 12345) % 2147483648
            return seed % n + 1
        end
        local ALPHABET = { '"', "\\", "{", "}", "[", "]", ",", ":", "0", "1", "-", ".", "e", "u", "n", " ",
                           "\0", "\1", "\127", "\128", "\208", "\255", "a", "D", "8", "/" }
        local seeds = { COMPACT_ANSWER, CONTRACT_ANSWER, '{"error_code":0}',
                        '{"error_code":0,"a":[1,{"b":"\\u00e9"}]}' }
        local oks, refused = 0, 0
        for round = 1, 3000 do
            local body = seeds[round % #seeds + 1]
            for _ = 1, random(3) do
                local at, what = random(#body), random(3)
                local byte = ALPHABET[random(#ALPHABET)]
                if what == 1 then
                    body = body:sub(1, at - 1) .. byte .. body:sub(at + 1)
                elseif what == 2 then
                    body = body:sub(1, at - 1) .. byte .. body:sub(at)
                else
                    body = body:sub(1, at - 1) .. body:sub(at + 1)
                end
            end
            if envelope_ok(body) then
                oks = oks + 1
                assert.is_true(decoder_success(body), body)
            else
                refused = refused + 1
            end
        end
        -- neither side of the property is empty
        assert.is_true(oks > 100, "only " .. oks .. " mutations stayed a success")
        assert.is_true(refused > 1000, "only " .. refused .. " mutations were refused")
    end)
end)

-- The same check inside core.multi: perform(wait_ms, true) reports a transfer
-- whose 2xx answer passes it as the bare id, and everything else as before.
describe("core.multi perform(wait_ms, quick)", function()
    local emu, url, headers, bodies
    local STATUSES = { "created", "paid", "cooking", "delivering", "delivered", "cancelled" }

    emulator.use({ statuses = STATUSES }, function(started)
        emu = started
        url = emu.url .. "/orders/v2/preorder/external/status"
    end)

    -- after the emulator's reset, which forgets every token
    before_each(function()
        headers = { "Content-Type: application/json", "Accept: application/json",
                    "Authorization: Bearer " .. emu:token() }
        bodies = {}
        for i = 1, 8 do
            local st = fixtures.example()
            st.merchant_order_id = "QUICK-" .. i
            bodies[i] = assert(core.encode(st, { statuses = STATUSES }))
        end
    end)

    -- every item perform reported until nothing is in flight
    local function drain(m, quick)
        local items, started = {}, core.monotonic()
        while m:in_flight() > 0 do
            assert(core.monotonic() - started < 20, "transfers did not finish")
            for _, item in ipairs(m:perform(200, quick)) do items[#items + 1] = item end
        end
        return items
    end

    it("gives bare ids for success answers only, and full items for the rest", function()
        emu:faults("status", {
            { kind = "not_json", status = 200, body = '{"error_code":0.0}' },
            { kind = "http", status = 400 },
            { kind = "not_json", status = 200, body = '{"error_code":0}x' },
            { kind = "not_json", status = 404, body = '{"error_code":0}' },
            { kind = "truncate" },
        })
        local m = core.multi { max_in_flight = 1 }
        for i = 1, 8 do m:add(i, "PUT", url, headers, bodies[i], 5000, 2000) end
        local items = drain(m, true)
        assert.equal(8, #items)
        -- one in flight: the faults hit ids 1..5 in order, 6..8 are plain successes
        local by_id = {}
        for _, item in ipairs(items) do
            if type(item) == "number" then
                by_id[item] = "quick"
            else
                by_id[item.id] = item
            end
        end
        assert.equal(200, by_id[1].res.status)
        assert.equal('{"error_code":0.0}', by_id[1].res.body)
        assert.equal(400, by_id[2].res.status)
        assert.equal('{"error_code":0}x', by_id[3].res.body)
        assert.equal(404, by_id[4].res.status)
        assert.equal("PARTIAL_FILE", by_id[5].err.code)
        for i = 6, 8 do assert.equal("quick", by_id[i], "id " .. i) end
        m:close()
    end)

    it("reports full items without the flag, and a large success in full", function()
        emu:faults("status", { { kind = "oversize", bytes = 100000 } })
        local m = core.multi { max_in_flight = 2 }
        for i = 1, 4 do m:add(i, "PUT", url, headers, bodies[i], 5000, 2000) end
        local big
        for _, item in ipairs(drain(m, true)) do
            if type(item) == "table" then big = item end
        end
        assert.equal(100000, #big.res.body)
        for i = 5, 8 do m:add(i, "PUT", url, headers, bodies[i], 5000, 2000) end
        local items = drain(m, false)
        assert.equal(4, #items)
        for _, item in ipairs(items) do
            assert.equal(200, item.res.status)
            assert.is_true(envelope_ok(item.res.body))
        end
        m:close()
    end)
end)
