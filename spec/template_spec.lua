-- Templates: placeholders, defaults, literal braces, escaping by position in a
-- link (checked against a percent-decoder written here, independently of the
-- module), and errors that name every missing value.

local template = require "choco.active_order.template"
local cjson = require "cjson"

-- An independent decoder: %XX (either case of hex) to the byte; anything else
-- kept. Returns nil for a malformed escape.
local function percent_decode(s)
    local out, i = {}, 1
    while i <= #s do
        local c = s:sub(i, i)
        if c == "%" then
            local hex = s:sub(i + 1, i + 2)
            if not hex:match("^%x%x$") then return nil end
            out[#out + 1] = string.char(tonumber(hex, 16))
            i = i + 3
        else
            out[#out + 1] = c
            i = i + 1
        end
    end
    return table.concat(out)
end

-- What RFC 3986 lets stand unencoded in each position (as this library documents it).
local ALLOWED = {
    path = "[%w%-%._~!%$&'%(%)%*%+,;=:@]",
    query = "[%w%-%._~!%$'%(%)%*,;:@/%?]",
    fragment = "[%w%-%._~!%$&'%(%)%*%+,;=:@/%?]",
}

local function assert_well_formed(encoded, position)
    local i = 1
    while i <= #encoded do
        local c = encoded:sub(i, i)
        if c == "%" then
            assert.truthy(encoded:sub(i + 1, i + 2):match("^[0-9A-F][0-9A-F]$"),
                "bad escape at " .. i .. " in " .. encoded)
            i = i + 3
        else
            assert.truthy(c:match(ALLOWED[position]), ("%q must not stand unencoded in the %s of %s")
                :format(c, position, encoded))
            i = i + 1
        end
    end
end

local VALUES = {
    "Алматы",
    "two words",
    "fish & chips",
    "a=b&c=d",
    "#hash",
    "a/b/c",
    "100%",
    "50% off?",
    "🍕 пицца",
    "1+1",
    "Қазақстан, Абай даңғылы 10/2",
    "~user_name-1.0",
    "%D0%AF", -- already looks escaped: must be escaped again, not trusted
}

-- Render `value` into a link at `position` and return the encoded piece.
local LINKS = {
    path = { "https://rahmetapp.kz/orders/{v}/map", "^https://rahmetapp%.kz/orders/(.-)/map$" },
    query = { "https://rahmetapp.kz/orders?q={v}&tab=3", "^https://rahmetapp%.kz/orders%?q=(.-)&tab=3$" },
    fragment = { "https://rahmetapp.kz/orders#{v}", "^https://rahmetapp%.kz/orders#(.*)$" },
}

describe("template escaping in links", function()
    for position, link in pairs(LINKS) do
        local compiled = assert(template.compile(link[1], { kind = "link" }))
        for _, value in ipairs(VALUES) do
            it(position .. ": " .. value, function()
                local rendered = assert(compiled:render { v = value })
                local piece = rendered:match(link[2])
                assert.is_string(piece, rendered)
                assert_well_formed(piece, position)
                assert.are.equal(value, percent_decode(piece))
            end)
        end
    end

    it("encodes Cyrillic as UTF-8 percent-escapes with upper-case hex", function()
        local c = assert(template.compile("https://a.kz/{v}?q={v}", { kind = "link" }))
        assert.are.equal("https://a.kz/%D0%90%D0%BB%D0%BC%D0%B0%D1%82%D1%8B?q=%D0%90%D0%BB%D0%BC%D0%B0%D1%82%D1%8B",
            c:render { v = "Алматы" })
    end)

    it("writes a space as %20 everywhere, never +", function()
        local c = assert(template.compile("https://a.kz/{v}?q={v}#{v}", { kind = "link" }))
        assert.are.equal("https://a.kz/a%20b?q=a%20b#a%20b", c:render { v = "a b" })
    end)

    it("keeps what each position allows", function()
        local c = assert(template.compile("https://a.kz/{v}?q={v}#{v}", { kind = "link" }))
        -- path: & = + : @ stay; query: & = + are encoded, / ? stay; fragment: / ? & stay, # goes
        assert.are.equal("https://a.kz/a&b=c+d:e@f%2Fg%3Fh%23i"
            .. "?q=a%26b%3Dc%2Bd:e@f/g?h%23i"
            .. "#a&b=c+d:e@f/g?h%23i", c:render { v = "a&b=c+d:e@f/g?h#i" })
    end)

    it("treats a placeholder after a literal '?' as a query value and after '#' as a fragment", function()
        local c = assert(template.compile("https://a.kz/p?x=1#frag/{v}", { kind = "link" }))
        assert.are.equal("https://a.kz/p?x=1#frag/a?b%20c", c:render { v = "a?b c" })
    end)

    it("encodes numbers as their integer text", function()
        local c = assert(template.compile("https://a.kz/o/{id}?n={n}", { kind = "link" }))
        assert.are.equal("https://a.kz/o/12345?n=2.5", c:render { id = 12345.0, n = 2.5 })
    end)

    it("refuses a placeholder in the scheme or host", function()
        local c, err = template.compile("https://{city}.rahmetapp.kz/x", { kind = "link" })
        assert.is_nil(c)
        assert.are.equal("template", err.code)
        assert.are.equal(9, err.position)
        assert.matches("scheme or host", err.message)
        assert.is_nil((template.compile("https://a.kz{port}/x", { kind = "link" })))
    end)

    it("allows a placeholder right after the host's slash", function()
        local c = assert(template.compile("https://a.kz/{path}", { kind = "link" }))
        assert.are.equal("https://a.kz/x%2Fy", c:render { path = "x/y" })
    end)
end)

describe("template text", function()
    it("inserts values as they are in titles", function()
        local c = assert(template.compile("{courier.name} везёт заказ №{id} & «{extra}»"))
        assert.are.equal("Айдар / A&B везёт заказ №7 & «50% #1»",
            c:render { courier = { name = "Айдар / A&B" }, id = 7, extra = "50% #1" })
    end)

    it("uses the default after | when a value is missing", function()
        local c = assert(template.compile("{courier.name|Курьер} в пути"))
        assert.are.equal("Курьер в пути", c:render {})
        assert.are.equal("Курьер в пути", c:render { courier = {} })
        assert.are.equal("Курьер в пути", c:render { courier = { name = "" } })
        assert.are.equal("Курьер в пути", c:render { courier = { name = cjson.null } })
        assert.are.equal("Ерлан в пути", c:render { courier = { name = "Ерлан" } })
    end)

    it("allows an empty default, so a value may be left out on purpose", function()
        local c = assert(template.compile("Заказ{suffix|}"))
        assert.are.equal("Заказ", c:render {})
    end)

    it("encodes a default like any value in a link", function()
        local c = assert(template.compile("https://a.kz/?city={city|Нур-Султан}", { kind = "link" }))
        assert.are.equal("https://a.kz/?city=%D0%9D%D1%83%D1%80-%D0%A1%D1%83%D0%BB%D1%82%D0%B0%D0%BD", c:render {})
    end)

    it("writes {{ and }} as literal braces", function()
        local c = assert(template.compile("{{id}} = {id}, }}{{"))
        assert.are.equal("{id} = 5, }{", c:render { id = 5 })
        assert.are.same({ "id" }, c.placeholders)
    end)

    it("renders integral numbers without a fraction on every Lua", function()
        local c = assert(template.compile("{a} {b} {c} {d} {e}"))
        assert.are.equal("7 1.5 1000000000000000 -3 true", c:render { a = 7.0, b = 1.5, c = 1e15, d = -3, e = true })
    end)

    it("reads array items by number", function()
        local c = assert(template.compile("{items.1.name} и ещё {more}"))
        assert.are.equal("Пицца и ещё 2", c:render { items = { { name = "Пицца" } }, more = 2 })
    end)

    it("is compiled once and rendered many times", function()
        local c = assert(template.compile("Заказ {id}"))
        for i = 1, 100 do assert.are.equal("Заказ " .. i, c:render { id = i }) end
        assert.is_false(c.is_fixed)
        assert.are.equal("Заказ ", c.fixed_text)
        assert.is_true(assert(template.compile("Готово")).is_fixed)
    end)
end)

describe("template errors", function()
    it("names every missing placeholder, never renders an empty string", function()
        local c = assert(template.compile("https://a.kz/{order_id}/{courier.id}?n={courier.name}&x={x|1}",
            { kind = "link" }))
        local s, err = c:render { courier = {} }
        assert.is_nil(s)
        assert.are.equal("rules", err.kind)
        assert.are.equal("missing_value", err.code)
        assert.are.same({ "{order_id}", "{courier.id}", "{courier.name}" }, err.missing)
        assert.matches("{order_id}, {courier.id}, {courier.name}", err.message, 1, true)
    end)

    it("refuses values that are not text", function()
        local c = assert(template.compile("{a} {b}"))
        local s, err = c:render { a = { 1 }, b = 0 / 0 }
        assert.is_nil(s)
        assert.are.equal("bad_value", err.code)
        assert.matches("{a} is a table", err.message, 1, true)
        assert.matches("{b} is not a finite number", err.message, 1, true)
    end)

    local BROKEN = {
        { "Заказ {id", 7, "without its closing" },
        { "Заказ id}", 9, "lone '}'" },
        { "{}", 1, "empty placeholder" },
        { "{ | x}", 1, "empty placeholder" },
        { "a {order id}", 3, "not a field name" },
        { "{a..b}", 1, "not a field name" },
        { "{a{b}}", 1, "without its closing" },
        { "{-x}", 1, "not a field name" },
    }
    for _, case in ipairs(BROKEN) do
        it("reports the position in " .. case[1], function()
            local c, err = template.compile(case[1])
            assert.is_nil(c)
            assert.are.equal("template", err.code)
            assert.are.equal(case[2], err.position)
            assert.matches(case[3], err.message, 1, true)
        end)
    end

    it("raises on programmer errors", function()
        assert.has_error(function() template.compile(nil) end)
        assert.has_error(function() template.compile("x", { kind = "html" }) end)
        assert.has_error(function() assert(template.compile("x")):render(nil) end)
    end)
end)
