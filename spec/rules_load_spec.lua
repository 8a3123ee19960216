-- Load-time checks of mapping scripts: each broken script must give the exact
-- problem on the exact line, and a script with many problems gives them all.

local rules = require "choco.active_order.rules"

local REGISTERED = { "created", "cooking", "on_the_way", "delivered", "cancelled" }

local function problems_of(text, opts)
    local loaded, err = rules.load_string(text, "broken.lua", opts or { statuses = REGISTERED })
    assert.is_nil(loaded, "the script should not load")
    assert.are.equal("rules", err.kind)
    assert.are.equal("invalid_script", err.code)
    return err.problems
end

-- { description, script, code, line, words in the message }
local BROKEN = {
    { "a misspelt key in a status", [[
base_link = "https://rahmetapp.kz/webapp/1"
status "created" {
    when = "new",
    titel = "Заказ оформлен",
    title = "Заказ оформлен",
    button = "К заказу", card_link = "/o/{order_id}", button_link = "/o/{order_id}", expires = "30m",
}]], "unknown_key", 4, "unknown key 'titel' in status \"created\" (did you mean 'title'?)" },

    { "a misspelt key in defaults", [[
defaults {
    buton = "К заказу",
}
status "created" { title = "Оформлен", button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2",
    expires = "1h" }]], "unknown_key", 2, "unknown key 'buton' in defaults (did you mean 'button'?)" },

    { "a misspelt word of the script", [[
statsu "created" { title = "x" }]], "unknown_name", 1, "unknown word 'statsu' (did you mean 'status'?)" },

    { "a misspelt setting", [[
base_lnk = "https://rahmetapp.kz"
status "created" { title = "Оформлен", button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2",
    expires = "1h" }]], "unknown_setting", 1, "unknown setting 'base_lnk' (did you mean 'base_link'?)" },

    { "a title template that does not parse", [[
status "created" {
    title = "Заказ {order_id",
    button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2", expires = "1h" }]],
        "template", 2, "title: a '{' without its closing '}'" },

    { "a link template that does not parse", [[
base_link = "https://a.kz"
status "created" {
    title = "Оформлен", button = "Ок", expires = "1h",
    card_link = "/orders/{order id}",
    button_link = "/x" }]], "template", 4, "'order id' is not a field name" },

    { "a fixed title over 30 characters", [[
status "created" {
    title = "Ваш заказ успешно оформлен и принят",
    button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2", expires = "1h" }]],
        "too_long", 2, "is 35 characters; the limit is 30" },

    { "a fixed button over 30 characters", [[
defaults { button = "Нажмите сюда, чтобы открыть заказ" }
status "created" { title = "Оформлен", card_link = "https://a.kz/1", button_link = "https://a.kz/2",
    expires = "1h" }]], "too_long", 1,
        "defaults, button \"Нажмите сюда, чтобы открыть заказ\" is 33 characters" },

    { "a title over 30 characters even without its placeholders", [[
status "created" {
    title = "Заказ {n} оформлен и скоро будет готов",
    button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2", expires = "1h" }]],
        "too_long", 2, "even without its placeholders" },

    { "an internal state mapped to two statuses", [[
defaults { button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2", expires = "1h" }
status "created" { when = { "new", "paid" }, title = "Оформлен" }
status "cooking" {
    title = "Готовим",
    when = { "paid", "cooking" },
}]], "duplicate_state", 5,
        "internal state \"paid\" is mapped to status \"created\" (line 2) and to status \"cooking\"" },

    { "a status that is not registered", [[
defaults { button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2", expires = "1h" }

status "cooked" { title = "Готово" }]], "unregistered", 3,
        "status \"cooked\" is not registered with Choco (did you mean 'cooking'?)" },

    { "a subtitle with a timer", [[
defaults { button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2", expires = "1h" }
status "cooking" {
    title = "Готовим",
    subtitle = "Минут 20",
    timer = "count_down",
}]], "subtitle_with_timer", 5, "a subtitle is shown only without a timer" },

    { "a subtitle from defaults with a timer", [[
defaults { button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2", expires = "1h",
    subtitle = "Спасибо!" }
status "cooking" { title = "Готовим",
    timer = "count_up" }]], "subtitle_with_timer", 4, "subtitle from defaults, subtitle" },

    { "a missing expiry", [[
defaults { button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2" }
status "created" { title = "Оформлен" }
status "cooking" { title = "Готовим", expires = "20m" }]], "missing_expiry", 2,
        "status \"created\" has no expires" },

    { "a duration that is not one", [[
defaults { button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2" }
status "created" {
    title = "Оформлен",
    expires = "30 минут",
}]], "bad_value", 4, "\"30 минут\" is not a duration" },

    { "a relative link without base_link", [[
status "created" { title = "Оформлен", button = "Ок", expires = "1h",
    card_link = "/orders/{order_id}",
    button_link = "https://a.kz/2" }]], "relative_link", 2,
        "card_link \"/orders/{order_id}\" cannot become an absolute URL" },

    { "a base_link that is not absolute", [[
base_link = "rahmetapp.kz/webapp"
status "created" { title = "Оформлен", button = "Ок", expires = "1h", card_link = "/1", button_link = "/2" }]],
        "relative_link", 1, "base_link must be an absolute URL" },

    { "a link whose host is a placeholder", [[
status "created" { title = "Оформлен", button = "Ок", expires = "1h",
    card_link = "https://a.kz/1",
    button_link = "{link}" }]], "relative_link", 3, "button_link \"{link}\" cannot become an absolute URL" },

    { "an unknown timer", [[
defaults { button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2", expires = "1h" }
status "cooking" { title = "Готовим",
    timer = "countdown" }]], "bad_value", 3,
        "\"countdown\" is not a timer; write \"none\", \"count_up\" or \"count_down\" (did you mean 'count_down'?)" },

    { "a missing title", [[
defaults { button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2", expires = "1h" }
status "cooking" { when = "cooking" }]], "missing", 2, "status \"cooking\" has no title" },

    { "a missing link", [[
defaults { button = "Ок", button_link = "https://a.kz/2", expires = "1h" }
status "cooking" { title = "Готовим" }]], "missing", 2,
        "status \"cooking\" has no card_link (give it here or in defaults)" },

    { "a status described twice", [[
defaults { button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2", expires = "1h" }
status "cooking" { title = "Готовим", when = "a" }
status "cooking" { title = "Готовим", when = "b" }]], "duplicate", 3,
        "status \"cooking\" is already described on line 2" },

    { "a status without braces", [[
defaults { button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2", expires = "1h" }
status "cooking"
status "created" { title = "x" }]], "bad_value", 2, "status \"cooking\" needs its description in braces" },

    { "a status without a name", [[
defaults { button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2", expires = "1h" }
status { title = "Готовим" }]], "bad_value", 2, "a status needs its name in quotes" },

    { "a title that is not text", [[
defaults { button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2", expires = "1h" }
status "cooking" {
    title = 42 }]], "bad_value", 3, "title must be text in quotes, not a number" },

    { "final that is not true or false", [[
defaults { button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2", expires = "1h" }
status "delivered" { title = "Доставлен",
    final = "yes" }]], "bad_value", 3, "final must be true or false" },

    { "a field without a name", [[
defaults { button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2" }
status "on_the_way" { title = "Едет",
    expires = field "" }]], "bad_value", 3, "field needs the name of an event field in quotes" },

    { "an empty when", [[
defaults { button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2", expires = "1h" }
status "cooking" { title = "Готовим",
    when = {} }]], "bad_value", 3, "when must be an internal state in quotes" },

    { "a syntax error", [[
defaults { button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2", expires = "1h" }
status "cooking" { title = "Готовим" ,,
}]], "syntax", 2, "unexpected symbol" },

    { "a runtime error", [[
defaults { button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2", expires = "1h" }
local n = nil
status "cooking" { title = "Готовим " .. n }]], "runtime", 3, "attempt to concatenate" },

    { "a script with no status", [[
base_link = "https://a.kz"
]], "missing", 1, "the script describes no status" },
}

describe("rules.load_string reports", function()
    it("at least twenty kinds of broken script", function()
        assert.is_true(#BROKEN >= 20)
    end)

    for _, case in ipairs(BROKEN) do
        local description, script, code, line, words = case[1], case[2], case[3], case[4], case[5]
        it(description .. " (" .. code .. ", line " .. line .. ")", function()
            local problems = problems_of(script)
            local found
            for _, p in ipairs(problems) do
                if p.code == code and p.message:find(words, 1, true) then found = p break end
            end
            if not found then
                local seen = {}
                for _, p in ipairs(problems) do seen[#seen + 1] = rules.format_problem(p) .. " [" .. p.code .. "]" end
                error("expected " .. code .. ": " .. words .. "\ngot:\n" .. table.concat(seen, "\n"))
            end
            assert.are.equal(line, found.line)
            assert.are.equal("broken.lua", found.file)
            assert.are.equal("broken.lua:" .. line .. ": " .. found.message, rules.format_problem(found))
        end)
    end
end)

describe("rules.load_string", function()
    it("reports every problem at once, sorted by line", function()
        local problems = problems_of([[
base_link = "https://rahmetapp.kz/webapp/1"
status "created" {
    when = "new",
    titel = "Заказ оформлен",
    button = "К заказу", card_link = "/o/{order_id}", button_link = "/o/{order_id", expires = "30m",
}
status "cooked" { when = "new", title = "Готово", button = "Ок", card_link = "/1", button_link = "/2",
    timer = "count_up", subtitle = "Скоро", expires = "1h" }
]])
        local got = {}
        for _, p in ipairs(problems) do got[#got + 1] = p.line .. " " .. p.code end
        assert.are.same({
            "2 missing",              -- created has no title
            "4 unknown_key",          -- titel
            "5 template",             -- button_link
            "7 unregistered",         -- cooked
            "7 duplicate_state",      -- "new" twice
            "8 subtitle_with_timer",
        }, got)
    end)

    it("does not check registration when no list is given", function()
        local loaded = assert(rules.load_string([[
status "anything" { title = "x", button = "y", card_link = "https://a.kz", button_link = "https://a.kz",
    expires = 60 }]], "ok.lua"))
        assert.are.same({ "anything" }, loaded:status_names())
        assert.are.equal("anything", loaded:status_for("anything")) -- when defaults to the status name
    end)

    it("accepts defaults written with '='", function()
        assert(rules.load_string([[
defaults = { button = "y", card_link = "https://a.kz", button_link = "https://a.kz", expires = "1h" }
status "paid" { title = "x" }]], "ok.lua"))
    end)

    it("lets a script use local helpers and string functions", function()
        local loaded = assert(rules.load_string([[
local function link(tab) return "https://a.kz/o/{order_id}?tab=" .. tab end
local shout = ("готово"):upper()
defaults { button = "Ок", card_link = link(1), button_link = link(2), expires = "1h" }
for i, name in ipairs { "a", "b", "c" } do
    status(name) { title = name .. " " .. i, rank = 10 * i }
end
status "d" { title = string.format("%s %d", "d", #shout) }
]], "helpers.lua"))
        assert.are.same({ "a", "b", "c", "d" }, loaded:status_names())
    end)

    it("reads a file and reports an unreadable one", function()
        local loaded = assert(rules.load(os.getenv("AO_ROOT") .. "/examples/rules/delivery.lua"))
        assert.are.equal(5, #loaded:status_names())
        local missing, err = rules.load("/nonexistent/rules.lua")
        assert.is_nil(missing)
        assert.are.equal("unreadable", err.code)
        assert.are.equal("/nonexistent/rules.lua", err.problems[1].file)
    end)

    it("raises on programmer errors", function()
        assert.has_error(function() rules.load_string(nil) end)
        assert.has_error(function() rules.load(42) end)
        assert.has_error(function() rules.load_string("", "x", { utc_offset = "five" }) end)
    end)
end)
