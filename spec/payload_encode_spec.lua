-- The canonical JSON body: the contract's example round-trips through
-- cjson, fixed inputs give fixed bytes (the same on every Lua version),
-- times are written in the configured zone, options compile once.

local ao = require "choco.active_order"
local payload = require "choco.active_order.payload"
local core = require "choco.active_order.core"
local cjson = require "cjson"

local example = require("spec.support.fixtures").example

local EXAMPLE_BYTES = '{"merchant_order_id":"WEE-11122","user_id":1234567,"external_status":"created",'
    .. '"deeplinks":[{"link":"https://rahmetapp.kz/100/orders?tab=3","type":"active_order_call_to_action"},'
    .. '{"link":"https://rahmetapp.kz/100/orders?tab=5","type":"active_order_card"}],'
    .. '"external_data":{"expired_at":"2021-10-20 16:49:36","title_active_order_card":"Ожидает оплаты",'
    .. '"title_call_to_action":"К заказу","subtitle_active_order_card":"Заказ отменен: товара нет в наличии",'
    .. '"need_timer":false,"countdown_timer":false}}'

-- Deterministic pseudo-random numbers (a 31-bit LCG), the same on every Lua version.
local function generator(seed)
    local state = seed
    return function(n)
        state = (state * 1103515245 + 12345) % 2147483648
        return state % n + 1
    end
end

describe("payload encode", function()
    it("encodes the contract's example so that it decodes field by field", function()
        local status = example()
        local body = assert(ao.encode(status))
        local decoded = cjson.decode(body)
        assert.are.equal(status.merchant_order_id, decoded.merchant_order_id)
        assert.are.equal(status.user_id, decoded.user_id)
        assert.are.equal(status.external_status, decoded.external_status)
        assert.are.equal(2, #decoded.deeplinks)
        for i = 1, 2 do
            assert.are.equal(status.deeplinks[i].link, decoded.deeplinks[i].link)
            assert.are.equal(status.deeplinks[i].type, decoded.deeplinks[i].type)
        end
        for k, v in pairs(status.external_data) do
            assert.are.equal(v, decoded.external_data[k], k)
        end
        local keys = 0
        for _ in pairs(decoded.external_data) do keys = keys + 1 end
        assert.are.equal(6, keys)
    end)

    it("writes exactly the canonical bytes for the example", function()
        assert.are.equal(EXAMPLE_BYTES, (ao.encode(example())))
    end)

    it("leaves the subtitle out when it is absent and keeps the key order", function()
        local s = example()
        s.external_data.subtitle_active_order_card = nil
        s.external_data.need_timer = true
        s.external_data.countdown_timer = true
        s.deeplinks = { { type = "active_order_card", link = "rahmetapp://o/1" } }
        assert.are.equal('{"merchant_order_id":"WEE-11122","user_id":1234567,"external_status":"created",'
            .. '"deeplinks":[{"link":"rahmetapp://o/1","type":"active_order_card"}],'
            .. '"external_data":{"expired_at":"2021-10-20 16:49:36","title_active_order_card":"Ожидает оплаты",'
            .. '"title_call_to_action":"К заказу","need_timer":true,"countdown_timer":true}}',
            (ao.encode(s)))
    end)

    it("escapes quotes, backslashes and control characters, and never escapes '/'", function()
        local s = example()
        s.external_data.title_active_order_card = 'a"b\\c/d'
        s.external_data.title_call_to_action = "\n\t\r\b\f\0\1\31\127"
        local body = assert(ao.encode(s))
        assert.truthy(body:find('"title_active_order_card":"a\\"b\\\\c/d"', 1, true))
        assert.truthy(body:find('"title_call_to_action":"\\n\\t\\r\\b\\f\\u0000\\u0001\\u001f\127"', 1, true))
        local decoded = cjson.decode(body)
        assert.are.equal(s.external_data.title_active_order_card, decoded.external_data.title_active_order_card)
        assert.are.equal(s.external_data.title_call_to_action, decoded.external_data.title_call_to_action)
        assert.is_nil(body:find("\\/", 1, true))
    end)

    it("passes valid UTF-8 through unchanged, U+2028 and 4-byte forms included", function()
        local s = example()
        s.external_data.title_active_order_card = "Тапсырыс \226\128\168 😀 қабылданды"
        local body = assert(ao.encode(s))
        assert.truthy(body:find(s.external_data.title_active_order_card, 1, true))
    end)

    it("writes integers as integers", function()
        local s = example()
        s.user_id = 1e15
        local body = assert(ao.encode(s))
        assert.truthy(body:find('"user_id":1000000000000000,', 1, true))
        s.user_id = 2 ^ 53 - 1
        body = assert(ao.encode(s))
        assert.truthy(body:find('"user_id":9007199254740991,', 1, true))
        s.merchant_order_id = 7
        body = assert(ao.encode(s))
        assert.truthy(body:find('{"merchant_order_id":"7",', 1, true))
    end)

    it("writes Unix seconds in the default zone +05:00", function()
        local s = example()
        s.external_data.expired_at = 1634730576        -- 2021-10-20 11:49:36 UTC
        assert.truthy(ao.encode(s):find('"expired_at":"2021-10-20 16:49:36"', 1, true))
        s.external_data.expired_at = 1634730576.999    -- fractions of a second are dropped
        assert.truthy(ao.encode(s):find('"expired_at":"2021-10-20 16:49:36"', 1, true))
        s.external_data.expired_at = 0
        assert.truthy(ao.encode(s):find('"expired_at":"1970-01-01 05:00:00"', 1, true))
        s.external_data.expired_at = 951782400         -- 2000-02-29 00:00:00 UTC
        assert.truthy(ao.encode(s):find('"expired_at":"2000-02-29 05:00:00"', 1, true))
    end)

    it("writes Unix seconds in a configured zone, across day and year boundaries", function()
        local s = example()
        s.external_data.expired_at = 1704067199         -- 2023-12-31 23:59:59 UTC
        assert.truthy(ao.encode(s, { utc_offset = "+00:00" }):find('"2023-12-31 23:59:59"', 1, true))
        assert.truthy(ao.encode(s, { utc_offset = "+00:01" }):find('"2024-01-01 00:00:59"', 1, true))
        assert.truthy(ao.encode(s, { utc_offset = "-03:30" }):find('"2023-12-31 20:29:59"', 1, true))
        assert.truthy(ao.encode(s, { utc_offset = "+14:00" }):find('"2024-01-01 13:59:59"', 1, true))
        s.external_data.expired_at = 1709236800         -- 2024-02-29 20:00:00 UTC
        assert.truthy(ao.encode(s, { utc_offset = "+05:00" }):find('"2024-03-01 01:00:00"', 1, true))
        assert.truthy(ao.encode(s, { utc_offset = "-12:00" }):find('"2024-02-29 08:00:00"', 1, true))
        -- before 1970 in the configured zone is out of range
        s.external_data.expired_at = 0
        local _, problems = ao.encode(s, { utc_offset = "-01:00" })
        assert.are.equal("external_data.expired_at", problems[1].field)
        assert.are.equal("range", problems[1].code)
    end)

    it("agrees with os.date for many instants", function()
        local next_int = generator(20240229)
        local s = example()
        for _ = 1, 300 do
            local t = next_int(2000000000) + next_int(1000)
            s.external_data.expired_at = t
            local expected = os.date("!%Y-%m-%d %H:%M:%S", t + 5 * 3600)
            assert.truthy(ao.encode(s):find('"expired_at":"' .. expected .. '"', 1, true), expected)
        end
    end)

    it("gives the same bytes for the same input every time, whatever the table's history", function()
        local first = ao.encode(example())
        local s = example()
        -- grow and shrink the tables so their internal layout differs
        for i = 1, 100 do s["tmp" .. i] = i end
        for i = 1, 100 do s["tmp" .. i] = nil end
        for i = 1, 50 do s.external_data["x" .. i] = true end
        for i = 1, 50 do s.external_data["x" .. i] = nil end
        assert.are.equal(first, (ao.encode(s)))
        for _ = 1, 1000 do assert.are.equal(first, (ao.encode(example()))) end
    end)

    it("gives the same bytes under a LuaJIT build as under this interpreter", function()
        local luajit_cpath = os.getenv("AO_LUAJIT_CPATH")
        local root = os.getenv("AO_ROOT")
        if not luajit_cpath or not root then return end
        local script = os.tmpname()
        local f = assert(io.open(script, "w"))
        f:write([[
            package.path = os.getenv("AO_ROOT") .. "/lua/?.lua;" .. package.path
            package.cpath = os.getenv("AO_LUAJIT_CPATH") .. ";" .. package.cpath
            local ao = require "choco.active_order"
            io.write((assert(ao.encode({
                merchant_order_id = 12344323, user_id = 1234567, external_status = "created",
                deeplinks = { { link = "https://rahmetapp.kz/100/orders?tab=3", type = "active_order_card" } },
                external_data = { expired_at = 1634730576, title_active_order_card = "Ожидает \"оплаты\"\n",
                    title_call_to_action = "К заказу/", need_timer = true, countdown_timer = false } }))))
        ]])
        f:close()
        local p = assert(io.popen("luajit " .. script))
        local out = p:read("*a")
        p:close()
        os.remove(script)
        local here = assert(ao.encode({
            merchant_order_id = 12344323, user_id = 1234567, external_status = "created",
            deeplinks = { { link = "https://rahmetapp.kz/100/orders?tab=3", type = "active_order_card" } },
            external_data = { expired_at = 1634730576, title_active_order_card = "Ожидает \"оплаты\"\n",
                title_call_to_action = "К заказу/", need_timer = true, countdown_timer = false } }))
        assert.are.equal(here, out)
        assert.are.equal('{"merchant_order_id":"12344323","user_id":1234567,"external_status":"created",'
            .. '"deeplinks":[{"link":"https://rahmetapp.kz/100/orders?tab=3","type":"active_order_card"}],'
            .. '"external_data":{"expired_at":"2021-10-20 16:49:36",'
            .. '"title_active_order_card":"Ожидает \\"оплаты\\"\\n","title_call_to_action":"К заказу/",'
            .. '"need_timer":true,"countdown_timer":false}}', out)
    end)

    describe("around the 30-character limit with multi-byte text", function()
        local alphabets = {
            { "a", "z", "0", " " },                                   -- 1 byte
            { "Ж", "ы", "қ", "ә", "ө", "ң" },                          -- 2 bytes (Cyrillic, Kazakh)
            { "€", "—", "№", "\226\128\168" },                        -- 3 bytes
            { "😀", "𝄞", "\244\143\191\191" },                        -- 4 bytes
        }
        local next_int = generator(42)
        local function random_text(n)
            local parts = {}
            for i = 1, n do
                local alphabet = alphabets[next_int(#alphabets)]
                parts[i] = alphabet[next_int(#alphabet)]
            end
            return table.concat(parts)
        end

        it("accepts 1..30 characters and rejects 31..33, in both titles", function()
            for _ = 1, 200 do
                local n = next_int(33)
                local text = random_text(n)
                local s = example()
                local field = next_int(2) == 1 and "title_active_order_card" or "title_call_to_action"
                s.external_data[field] = text
                local body, problems = ao.encode(s)
                if n <= 30 then
                    assert.is_string(body, n .. " characters")
                    assert.are.equal(text, cjson.decode(body).external_data[field])
                else
                    assert.is_nil(body)
                    assert.are.equal(1, #problems)
                    assert.are.equal("external_data." .. field, problems[1].field)
                    assert.are.equal("too_long", problems[1].code)
                    assert.are.equal(n .. " characters, the limit is 30", problems[1].message)
                end
            end
        end)

        it("reports a title cut in the middle of a character as encoding", function()
            for _ = 1, 100 do
                local text = random_text(next_int(29)) .. alphabets[2 + next_int(3) - 1][1]
                local cut = text:sub(1, #text - 1)
                local s = example()
                s.external_data.title_active_order_card = cut
                local _, problems = ao.validate(s)
                assert.are.equal("encoding", problems[1].code)
                assert.are.equal("external_data.title_active_order_card", problems[1].field)
            end
        end)
    end)

    describe("options", function()
        it("has documented defaults", function()
            assert.same({ utc_offset = "+05:00", max_problems = 100,
                          limits = { title = 30, subtitle = 60, link = 2048, merchant_order_id = 128,
                                     external_status = 64 } }, payload.DEFAULTS)
        end)

        it("overrides limits", function()
            local s = example()
            local opts = { limits = { title = 5, subtitle = 100 } }
            local _, problems = ao.validate(s, opts)
            assert.are.equal("external_data.title_active_order_card", problems[1].field)
            assert.are.equal("14 characters, the limit is 5", problems[1].message)
            s.external_data.title_active_order_card = "Ок"
            s.external_data.title_call_to_action = "Ок"
            s.external_data.subtitle_active_order_card = ("ы"):rep(100)
            assert.is_true(ao.validate(s, opts))
            assert.is_string(ao.encode(s, opts))
            local short_links = { limits = { link = 20, merchant_order_id = 3, external_status = 3 } }
            _, problems = ao.validate(example(), short_links)
            assert.are.equal(4, #problems)
            assert.are.equal("merchant_order_id", problems[1].field)
            assert.are.equal("external_status", problems[2].field)
            assert.are.equal("deeplinks[1].link", problems[3].field)
            assert.are.equal("37 bytes, the limit is 20", problems[3].message)
        end)

        it("compiles once per options table and ignores keys it does not know", function()
            local opts = { statuses = { "created" }, client_id = "x", base_url = "https://gateway.chocodev.kz" }
            local compiled = assert(payload.compile(opts))
            assert.are.equal("userdata", type(compiled))
            assert.are.equal("choco.active_order.options", tostring(compiled))
            assert.is_true(ao.validate(example(), compiled))
            assert.is_true(ao.validate(example(), opts))
            -- the cached compilation is used: changing the table afterwards has no effect
            opts.statuses[1] = "paid"
            assert.is_true(ao.validate(example(), opts))
            -- a new table is compiled afresh
            local _, problems = ao.validate(example(), { statuses = { "paid" } })
            assert.are.equal("unregistered", problems[1].code)
        end)

        it("returns nil and a config error for wrong values", function()
            local cases = {
                { { utc_offset = "05:00" }, "utc_offset" },
                { { utc_offset = "+5:00" }, "utc_offset" },
                { { utc_offset = "+15:00" }, "utc_offset" },
                { { utc_offset = "+05:60" }, "utc_offset" },
                { { utc_offset = "UTC" }, "utc_offset" },
                { { limits = { title = 0 } }, "limits.title" },
                { { limits = { title = 1.5 } }, "limits.title" },
                { { limits = { title = 1e9 } }, "limits.title" },
                { { limits = { titel = 30 } }, "did you mean title" },
                { { statuses = {} }, "statuses is empty" },
                { { statuses = { "created", "" } }, "statuses%[2%] is empty" },
            }
            for _, case in ipairs(cases) do
                local compiled, err = payload.compile(case[1])
                assert.is_nil(compiled)
                assert.are.equal("config", err.kind)
                assert.are.equal("BAD_OPTION", err.code)
                assert.matches(case[2], err.message)
                local c2, message = core.compile_options(case[1])
                assert.is_nil(c2)
                assert.is_string(message)
                -- validate and encode raise for options that do not compile: they are the program's
                local ok, raised = pcall(ao.validate, example(), case[1])
                assert.is_false(ok)
                assert.matches("bad options", tostring(raised))
            end
        end)

        it("raises for options of a wrong type", function()
            assert.has_error(function() payload.compile("x") end)
            assert.has_error(function() payload.compile({ utc_offset = 5 }) end)
            assert.has_error(function() payload.compile({ limits = "x" }) end)
            assert.has_error(function() payload.compile({ limits = { title = "30" } }) end)
            assert.has_error(function() payload.compile({ limits = { [1] = 30 } }) end)
            assert.has_error(function() payload.compile({ statuses = "created" }) end)
            assert.has_error(function() payload.compile({ statuses = { 1 } }) end)
            assert.has_error(function() ao.validate(example(), "x") end)
            assert.has_error(function() ao.encode(example(), 5) end)
            assert.has_error(function() ao.encode(example(), io.stdout) end)
            assert.has_error(function() ao.encode(example(), true) end)
        end)

        it("accepts nil options and an empty options table", function()
            assert.is_truthy(payload.compile(nil))
            assert.is_truthy(payload.compile({}))
            assert.are.equal(EXAMPLE_BYTES, (ao.encode(example(), {})))
            assert.are.equal(EXAMPLE_BYTES, (ao.encode(example(), nil)))
        end)

        it("frees compiled options with their table", function()
            for i = 1, 200 do
                assert.is_true(ao.validate(example(), { statuses = { "created", "s" .. i } }))
            end
            collectgarbage()
            collectgarbage()
        end)

        it("keeps options compiled before the C module was loaded again", function()
            -- The walk recognises keys by the address of this state's own copy of each name;
            -- a second load must not replace those copies while older options point at them.
            local options = core.compile_options { statuses = { "created" } }
            package.loaded["choco.active_order.core"] = nil
            local again = require "choco.active_order.core"
            package.loaded["choco.active_order.core"] = core
            for _ = 1, 3 do collectgarbage() end
            assert.are.equal(EXAMPLE_BYTES, (again.encode(example(), options)))
            assert.are.equal(EXAMPLE_BYTES, (core.encode(example(), options)))
            local status = example()
            status.user_ix, status.user_id = status.user_id, nil
            local ok, problems = again.validate(status, options)
            assert.is_nil(ok)
            assert.are.equal("user_ix", problems[1].field)
            assert.are.equal("unknown_field", problems[1].code)
        end)
    end)
end)
