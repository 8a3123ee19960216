-- Bad shapes never crash and never raise: every value of every Lua type in
-- every place, cycles, deep nesting, huge strings, sparse lists, tables with
-- metatables (never consulted), non-string keys, floods of problems, and
-- finalizers that call encode while encode runs.

local ao = require "choco.active_order"

local example = require("spec.support.fixtures").example

-- validate and encode neither raise nor accept; returns the problems.
local function rejected(status)
    local ok, vok, vproblems = pcall(ao.validate, status)
    assert(ok, vok)
    assert.is_nil(vok)
    assert.is_table(vproblems)
    assert.is_true(#vproblems >= 1)
    local eok, body, eproblems = pcall(ao.encode, status)
    assert(eok, body)
    assert.is_nil(body)
    assert.same(vproblems, eproblems)
    for _, p in ipairs(vproblems) do
        assert.is_string(p.field)
        assert.is_string(p.code)
        assert.is_string(p.message)
    end
    return vproblems
end

local function find(problems, field, code)
    for _, p in ipairs(problems) do
        if p.field == field and (code == nil or p.code == code) then return p end
    end
    return nil
end

local strange_values = {
    function() return "a string" end,
    function() return 42 end,
    function() return true end,
    function() return print end,
    function() return io.stdout end,
    function() return coroutine.create(function() end) end,
    function() return {} end,
    function() return { 1, 2, 3 } end,
    function() return 0 / 0 end,
    function() return setmetatable({}, { __index = function() error("__index must not run") end }) end,
}

describe("payload shapes", function()
    it("never raises for a status of any type", function()
        for _, make in ipairs(strange_values) do
            local value = make()
            local p = rejected(value)
            if type(value) ~= "table" then
                assert.are.equal(1, #p)
                assert.are.equal("", p[1].field)
                assert.are.equal("type", p[1].code)
            end
        end
        rejected(nil)
    end)

    it("never raises for any value in any field", function()
        local places = {
            function(s, v) s.merchant_order_id = v end,
            function(s, v) s.user_id = v end,
            function(s, v) s.external_status = v end,
            function(s, v) s.deeplinks = v end,
            function(s, v) s.deeplinks[1] = v end,
            function(s, v) s.deeplinks[2].link = v end,
            function(s, v) s.deeplinks[2].type = v end,
            function(s, v) s.external_data = v end,
            function(s, v) s.external_data.expired_at = v end,
            function(s, v) s.external_data.title_active_order_card = v end,
            function(s, v) s.external_data.title_call_to_action = v end,
            function(s, v) s.external_data.subtitle_active_order_card = v end,
            function(s, v) s.external_data.need_timer = v end,
            function(s, v) s.external_data.countdown_timer = v end,
            function(s, v) s.extra = v end,
            function(s, v) s.external_data.extra = v end,
        }
        for _, place in ipairs(places) do
            for _, make in ipairs(strange_values) do
                local s = example()
                place(s, make())
                local ok, vok, problems = pcall(ao.validate, s)
                assert(ok, vok)
                if vok == nil then assert.is_table(problems) end
                local eok = pcall(ao.encode, s)
                assert.is_true(eok)
            end
        end
    end)

    it("survives cycles: a table is just a value of the wrong shape", function()
        local s = example()
        s.external_data.self = s
        s.deeplinks[3] = s.deeplinks
        s.deeplinks[1].link = s
        local problems = rejected(s)
        assert.truthy(find(problems, "external_data.self", "unknown_field"))
        assert.truthy(find(problems, "deeplinks[1].link", "type"))
        local t = {}
        t.external_data = t
        t.deeplinks = { t }
        problems = rejected(t)
        assert.truthy(find(problems, "merchant_order_id", "required"))
        assert.truthy(find(problems, "external_data.expired_at", "required"))
        assert.truthy(find(problems, "deeplinks[1].link", "required"))
    end)

    it("looks only one level into deeply nested tables", function()
        local deep = {}
        local cur = deep
        for _ = 1, 100000 do
            cur.external_data = {}
            cur = cur.external_data
        end
        local s = example()
        s.external_data.title_call_to_action = deep
        local p = rejected(s)
        assert.truthy(find(p, "external_data.title_call_to_action", "type"))
        local problems = rejected(deep)
        assert.truthy(find(problems, "external_data.expired_at", "required"))
        assert.truthy(find(problems, "external_data.external_data", "unknown_field"))
    end)

    it("handles huge strings without trouble", function()
        local huge = ("Ж"):rep(5 * 1024 * 1024)     -- 10 MB
        local s = example()
        s.external_data.title_active_order_card = huge
        s.merchant_order_id = huge
        s.deeplinks[1].link = "https://x.kz/" .. huge
        s.external_status = huge
        s.external_data.subtitle_active_order_card = huge .. "\255"
        local problems = rejected(s)
        assert.are.equal("5242880 characters, the limit is 30",
            find(problems, "external_data.title_active_order_card", "too_long").message)
        assert.truthy(find(problems, "merchant_order_id", "too_long"))
        assert.truthy(find(problems, "deeplinks[1].link", "too_long"))
        assert.truthy(find(problems, "external_status", "too_long"))
        assert.truthy(find(problems, "external_data.subtitle_active_order_card", "encoding"))
        -- a huge unknown key is quoted in short in the field path and the message
        s = example()
        s[("k"):rep(1000000)] = 1
        problems = rejected(s)
        assert.are.equal(1, #problems)
        assert.is_true(#problems[1].field < 100)
        assert.are.equal("unknown_field", problems[1].code)
    end)

    it("encodes long valid text when the limits allow it", function()
        local s = example()
        s.external_data.title_active_order_card = ("\"Ж\n"):rep(100000)
        local body = assert(ao.encode(s, { limits = { title = 300000 } }))
        assert.are.equal(s.external_data.title_active_order_card,
            require("cjson").decode(body).external_data.title_active_order_card)
        -- the reused buffer gives back what one big body grew, and still works after
        assert.is_string(ao.encode(example()))
    end)

    it("handles sparse and strange lists", function()
        local link = example().deeplinks[1]
        local p = rejected({ deeplinks = { [1000000000] = link } })
        assert.truthy(find(p, "deeplinks[1]", "required"))
        p = rejected({ deeplinks = { [2 ^ 40] = link } })
        assert.truthy(find(p, "deeplinks[1099511627776]", "unknown_field"))
        p = rejected({ deeplinks = { [-1] = link } })
        assert.truthy(find(p, "deeplinks[-1]", "unknown_field"))
        p = rejected({ deeplinks = { [true] = link } })
        assert.truthy(find(p, "deeplinks[true]", "unknown_field"))
        p = rejected({ deeplinks = { [{}] = link } })
        assert.truthy(find(p, "deeplinks[<table>]", "unknown_field"))
        p = rejected({ deeplinks = { [print] = link } })
        assert.truthy(find(p, "deeplinks[<function>]", "unknown_field"))
        local s = example()
        s.deeplinks = { link, nil, nil, example().deeplinks[2] }
        p = rejected(s)
        assert.truthy(find(p, "deeplinks[2]", "required"))
    end)

    it("never consults metatables: fields come from the table itself", function()
        local calls = 0
        local function spy() calls = calls + 1; return "x" end
        local mt = { __index = spy, __pairs = function() calls = calls + 1; return next, {}, nil end,
                     __len = function() calls = calls + 1; return 0 end,
                     __newindex = spy, __eq = spy, __tostring = spy, __call = spy }
        local s = setmetatable(example(), mt)
        setmetatable(s.deeplinks, mt)
        setmetatable(s.deeplinks[1], mt)
        setmetatable(s.external_data, mt)
        assert.is_true(ao.validate(s))
        assert.is_string(ao.encode(s))
        assert.are.equal(0, calls)
        -- a proxy that only offers its fields through __index is missing them all
        local proxy = setmetatable({}, { __index = example() })
        local p = rejected(proxy)
        assert.truthy(find(p, "merchant_order_id", "required"))
        assert.truthy(find(p, "external_data", "required"))
        -- a protected metatable is no obstacle either
        local locked = setmetatable(example(), { __metatable = "locked", __index = spy })
        assert.is_true(ao.validate(locked))
        assert.are.equal(0, calls)
    end)

    it("handles non-string keys at every level", function()
        local s = example()
        s[1] = "x"
        s[2.5] = "y"
        s[false] = "z"
        s.external_data[{}] = 1
        s.deeplinks[1][1] = "a"
        local p = rejected(s)
        assert.truthy(find(p, "[1]", "unknown_field"))
        assert.truthy(find(p, "[2.5]", "unknown_field"))
        assert.truthy(find(p, "[false]", "unknown_field"))
        assert.truthy(find(p, "external_data[<table>]", "unknown_field"))
        assert.truthy(find(p, "deeplinks[1][1]", "unknown_field"))
    end)

    it("stops collecting after 100 problems and says so", function()
        local s = example()
        for i = 1, 1000 do s["unknown_" .. i] = i end
        local p = rejected(s)
        assert.are.equal(100, #p)
        assert.is_true(p.truncated)
        local many = {}
        for i = 1, 100000 do many[i] = "not a table" end
        s = example()
        s.deeplinks = many
        p = rejected(s)
        assert.are.equal(100, #p)
        assert.is_true(p.truncated)
        assert.are.equal("deeplinks[1]", p[1].field)
        s = example()
        s.deeplinks = {}
        for i = 1, 1000 do s.deeplinks["k" .. i] = i end
        p = rejected(s)
        assert.are.equal(100, #p)
        assert.is_true(p.truncated)
        -- fewer problems: no flag
        p = rejected({})
        assert.is_nil(p.truncated)
    end)

    it("stays correct when finalizers call encode in the middle of encode", function()
        -- In a fresh interpreter (a small heap, so that a collector stepping at every
        -- allocation stays fast): finalizers then run inside encode and call encode
        -- with the same options, which must take a scratch buffer, not the one in use.
        local script = os.tmpname()
        local f = assert(io.open(script, "w"))
        f:write([=[
            local ao = require "choco.active_order"
            local function example()
                return { merchant_order_id = "WEE-11122", user_id = 1234567, external_status = "created",
                    deeplinks = { { link = "https://rahmetapp.kz/1", type = "active_order_card" } },
                    external_data = { expired_at = "2021-10-20 16:49:36", title_active_order_card = "Ожидает",
                        title_call_to_action = "К заказу", need_timer = false, countdown_timer = false } }
            end
            local expected = ao.encode(example())
            local seen = 0
            local function on_gc()
                seen = seen + 1
                assert(ao.encode(example()) == expected)
                assert(select(2, ao.encode({ x = 1 })))
            end
            local function make_garbage()
                if newproxy then
                    local proxy = newproxy(true)
                    getmetatable(proxy).__gc = on_gc
                    return proxy
                end
                return setmetatable({}, { __gc = on_gc })
            end
            local bad = example()
            bad.external_data.need_timer = "yes"
            bad.a, bad.b, bad.c = 1, 2, 3
            collectgarbage("setpause", 0)
            collectgarbage("setstepmul", 1000)
            for _ = 1, 3000 do
                make_garbage()
                assert(ao.encode(example()) == expected)
                local _, problems = ao.encode(bad)
                assert(#problems == 4)
            end
            collectgarbage("setpause", 200)
            collectgarbage()
            io.write("ok ", seen)
        ]=])
        f:close()
        local interpreter = os.getenv("AO_LUA") or "lua"
        local p = assert(io.popen(interpreter .. " " .. script .. " 2>&1"))
        local out = p:read("*a")
        p:close()
        os.remove(script)
        local seen = tonumber(out:match("^ok (%d+)$"))
        assert(seen, out)
        assert.is_true(seen > 1000)
    end)

    it("keeps fields and messages valid UTF-8 whatever the caller's bytes", function()
        local s = example()
        s["bad\255key\192"] = 1
        s[("ключ"):rep(30)] = 2                         -- cut after 48 bytes, between letters
        s.external_status = "\237\160\128 status"
        s.external_data.expired_at = ("ж"):rep(30) .. "\255"
        s.deeplinks[1].type = "\n" .. ("я"):rep(40)
        local problems = rejected(s)
        assert.are.equal(5, #problems)
        -- the walk itself is the UTF-8 checker: every field and message must pass as a title
        local opts = { limits = { title = 1000 } }
        for _, p in ipairs(problems) do
            for _, text in ipairs { p.field, p.message } do
                local probe = example()
                probe.external_data.title_active_order_card = text
                assert(ao.validate(probe, opts), text)
            end
        end
    end)

    it("works inside coroutines", function()
        local co = coroutine.wrap(function()
            local body = ao.encode(example())
            coroutine.yield(body)
            return ao.validate({})
        end)
        assert.is_string(co())
        assert.is_nil(co())
    end)

    it("leaves the caller's tables untouched", function()
        local s = example()
        s.external_data.title_active_order_card = ("Ж"):rep(40)
        s.extra = 1
        ao.validate(s)
        ao.encode(s)
        assert.are.equal(("Ж"):rep(40), s.external_data.title_active_order_card)
        assert.are.equal(1, s.extra)
        local copy = example()
        ao.encode(copy)
        assert.same(example(), copy)
    end)
end)
