-- Rendering events with the example scripts, every status of each, checked
-- field by field; render errors; the order of statuses (allows).

local rules = require "choco.active_order.rules"
local ao = require "choco.active_order"
local cjson = require "cjson"

local ROOT = os.getenv("AO_ROOT") or "."
local NOW = 1795935600 -- 2026-11-29 07:00:00 UTC, 12:00:00 in Almaty (UTC+05:00)

local function load_example(name, opts)
    return assert(rules.load(ROOT .. "/examples/rules/" .. name .. ".lua", opts))
end

local function card(status)
    local links = {}
    for _, d in ipairs(status.deeplinks) do links[d.type] = d.link end
    local x = status.external_data
    return {
        merchant_order_id = status.merchant_order_id,
        user_id = status.user_id,
        external_status = status.external_status,
        button_link = links.active_order_call_to_action,
        card_link = links.active_order_card,
        links = #status.deeplinks,
        expired_at = x.expired_at,
        title = x.title_active_order_card,
        button = x.title_call_to_action,
        subtitle = x.subtitle_active_order_card,
        need_timer = x.need_timer,
        countdown_timer = x.countdown_timer,
    }
end

local function render(loaded, event, now)
    local status, err = loaded:render(event, now or NOW)
    assert(status, err and tostring(err))
    assert.is_true(ao.validate(status, { statuses = loaded:status_names() }))
    return card(status)
end

describe("examples/rules/delivery.lua", function()
    local loaded = load_example("delivery",
        { statuses = { "created", "cooking", "on_the_way", "delivered", "cancelled" } })
    local base = "https://rahmetapp.kz/webapp/delivery/orders/"

    it("created", function()
        assert.are.same({
            merchant_order_id = "D-1", user_id = 42, external_status = "created", links = 2,
            card_link = base .. "D-1", button_link = base .. "D-1?tab=status",
            expired_at = "2026-11-29 12:30:00",
            title = "Заказ оформлен", button = "К заказу", subtitle = "Ждём подтверждения ресторана",
            need_timer = false, countdown_timer = false,
        }, render(loaded, { state = "awaiting_payment", order_id = "D-1", user_id = 42 }))
    end)

    it("cooking", function()
        assert.are.same({
            merchant_order_id = "D-1", user_id = 42, external_status = "cooking", links = 2,
            card_link = base .. "D-1", button_link = base .. "D-1?tab=status",
            expired_at = "2026-11-29 14:00:00",
            title = "Готовим ваш заказ", button = "К заказу",
            need_timer = true, countdown_timer = false,
        }, render(loaded, { state = "accepted", order_id = "D-1", user_id = 42 }))
    end)

    it("on_the_way, with the courier's name and the event's eta", function()
        assert.are.same({
            merchant_order_id = "D-1", user_id = 42, external_status = "on_the_way", links = 2,
            card_link = base .. "D-1", button_link = base .. "D-1/map?courier=77",
            expired_at = "2026-11-29 12:45:00",
            title = "Айдар в пути", button = "Где курьер?",
            need_timer = true, countdown_timer = true,
        }, render(loaded, { state = "on_the_way", order_id = "D-1", user_id = 42, eta = "2026-11-29 12:45:00",
                            courier = { id = 77, name = "Айдар" } }))
    end)

    it("on_the_way, with the default name and an eta in seconds", function()
        local c = render(loaded, { state = "courier_picked_up", order_id = "D-1", user_id = 42, eta = NOW + 600,
                                   courier = { id = "7 7" } })
        assert.are.equal("Курьер в пути", c.title)
        assert.are.equal("2026-11-29 12:10:00", c.expired_at)
        assert.are.equal(base .. "D-1/map?courier=7%207", c.button_link)
    end)

    it("delivered", function()
        assert.are.same({
            merchant_order_id = "D-1", user_id = 42, external_status = "delivered", links = 2,
            card_link = base .. "D-1", button_link = base .. "D-1/review",
            expired_at = "2026-11-29 13:00:00",
            title = "Заказ доставлен", button = "Оценить заказ", subtitle = "Приятного аппетита!",
            need_timer = false, countdown_timer = false,
        }, render(loaded, { state = "delivered", order_id = "D-1", user_id = 42 }))
    end)

    it("cancelled, with and without a reason", function()
        assert.are.same({
            merchant_order_id = "D-1", user_id = 42, external_status = "cancelled", links = 2,
            card_link = base .. "D-1", button_link = base .. "D-1?tab=status",
            expired_at = "2026-11-29 13:00:00",
            title = "Заказ отменён", button = "Подробнее", subtitle = "Ресторан закрыт",
            need_timer = false, countdown_timer = false,
        }, render(loaded, { state = "rejected_by_restaurant", order_id = "D-1", user_id = 42,
                            cancel_reason = "Ресторан закрыт" }))
        assert.are.equal("Свяжитесь с поддержкой",
            render(loaded, { state = "cancelled", order_id = "D-1", user_id = 42 }).subtitle)
    end)

    it("escapes the order id in links but keeps it as it is in the status", function()
        local c = render(loaded, { state = "new", merchant_order_id = "Д 1/2#3", user_id = "42" })
        assert.are.equal("Д 1/2#3", c.merchant_order_id)
        assert.are.equal(42, c.user_id)
        -- {order_id} and {merchant_order_id} are the same value, whichever the event has
        assert.are.same(c, render(loaded, { state = "new", order_id = "Д 1/2#3", user_id = 42 }))
        assert.are.equal(base .. "%D0%94%201%2F2%233", c.card_link)
        assert.are.equal(base .. "%D0%94%201%2F2%233?tab=status", c.button_link)
    end)
end)

describe("examples/rules/pickup.lua", function()
    local loaded = load_example("pickup")
    local base = "https://rahmetapp.kz/webapp/pickup/orders/"

    it("accepted", function()
        assert.are.same({
            merchant_order_id = "P-7", user_id = 5, external_status = "accepted", links = 2,
            card_link = base .. "P-7", button_link = base .. "P-7/code",
            expired_at = "2026-11-29 15:00:00",
            title = "Заказ №118 принят", button = "Показать код", subtitle = "Заберите в Кофейня на Абая",
            need_timer = false, countdown_timer = false,
        }, render(loaded, { state = "accepted", order_id = "P-7", user_id = 5, order_number = 118,
                            place = { name = "Кофейня на Абая" } }))
    end)

    it("preparing, until ready_at given in ISO 8601", function()
        assert.are.same({
            merchant_order_id = "P-7", user_id = 5, external_status = "preparing", links = 2,
            card_link = base .. "P-7", button_link = base .. "P-7/code",
            expired_at = "2026-11-29 12:20:00",
            title = "Собираем заказ", button = "Показать код",
            need_timer = true, countdown_timer = true,
        }, render(loaded, { state = "preparing", order_id = "P-7", user_id = 5, ready_at = "2026-11-29T07:20:00Z" }))
    end)

    it("ready, with a link to a map search", function()
        assert.are.same({
            merchant_order_id = "P-7", user_id = 5, external_status = "ready", links = 2,
            card_link = base .. "P-7",
            button_link = "https://2gis.kz/almaty/search/%D0%90%D0%B1%D0%B0%D1%8F%2010%2F2",
            expired_at = "2026-11-29 13:00:00",
            title = "Можно забирать!", button = "Как пройти", subtitle = "Код выдачи: 4821",
            need_timer = false, countdown_timer = false,
        }, render(loaded, { state = "ready", order_id = "P-7", user_id = 5, pickup_code = "4821",
                            place = { address = "Абая 10/2" } }))
    end)

    it("picked_up", function()
        assert.are.same({
            merchant_order_id = "P-7", user_id = 5, external_status = "picked_up", links = 2,
            card_link = base .. "P-7", button_link = base .. "P-7/review",
            expired_at = "2026-11-29 12:30:00",
            title = "Заказ выдан", button = "Оценить", subtitle = "Спасибо, что выбрали нас",
            need_timer = false, countdown_timer = false,
        }, render(loaded, { state = "closed", order_id = "P-7", user_id = 5 }))
    end)

    it("cancelled", function()
        assert.are.same({
            merchant_order_id = "P-7", user_id = 5, external_status = "cancelled", links = 2,
            card_link = base .. "P-7", button_link = base .. "P-7/code",
            expired_at = "2026-11-29 13:00:00",
            title = "Заказ отменён", button = "Показать код", subtitle = "Деньги вернутся на карту",
            need_timer = false, countdown_timer = false,
        }, render(loaded, { state = "not_picked_up", order_id = "P-7", user_id = 5 }))
    end)
end)

describe("examples/rules/retail.lua", function()
    local loaded = load_example("retail")
    local base = "https://rahmetapp.kz/webapp/shop/orders/"
    -- numbers as lua-cjson gives them (floats on 5.3+)
    local function event(fields)
        local e = cjson.decode('{"order_id": "R-9", "user_id": 1234567}')
        for k, v in pairs(fields) do e[k] = v end
        return e
    end

    it("paid, with numbers from JSON rendered as integers", function()
        assert.are.same({
            merchant_order_id = "R-9", user_id = 1234567, external_status = "paid", links = 2,
            card_link = base .. "R-9", button_link = base .. "R-9",
            expired_at = "2026-11-30 12:00:00",
            title = "Оплачено: 3 товара", button = "Открыть заказ", subtitle = "Сумма 15990 ₸",
            need_timer = false, countdown_timer = false,
        }, render(loaded, event(cjson.decode('{"state": "payment_confirmed", "items_count": 3, "total": 15990}'))))
    end)

    it("assembling", function()
        assert.are.same({
            merchant_order_id = "R-9", user_id = 1234567, external_status = "assembling", links = 2,
            card_link = base .. "R-9", button_link = base .. "R-9",
            expired_at = "2026-11-30 12:00:00",
            title = "Собираем заказ", button = "Открыть заказ", subtitle = "Склад: Алматы",
            need_timer = false, countdown_timer = false,
        }, render(loaded, event { state = "assembling" }))
    end)

    it("shipped", function()
        assert.are.same({
            merchant_order_id = "R-9", user_id = 1234567, external_status = "shipped", links = 2,
            card_link = base .. "R-9", button_link = "https://track.example.kz/parcel/KZ%20123%2F4?lang=ru",
            expired_at = "2026-12-01 18:00:00",
            title = "Передан в доставку", button = "Отследить",
            need_timer = true, countdown_timer = true,
        }, render(loaded, event { state = "shipped",
                                  tracking = { number = "KZ 123/4", delivery_by = "2026-12-01T18:00:00+05:00" } }))
    end)

    it("delivered", function()
        assert.are.same({
            merchant_order_id = "R-9", user_id = 1234567, external_status = "delivered", links = 2,
            card_link = base .. "R-9", button_link = base .. "R-9",
            expired_at = "2026-11-29 14:00:00",
            title = "Заказ у вас", button = "Открыть заказ", subtitle = "Есть вопросы? Напишите нам",
            need_timer = false, countdown_timer = false,
        }, render(loaded, event { state = "delivered" }))
    end)

    it("returned", function()
        assert.are.same({
            merchant_order_id = "R-9", user_id = 1234567, external_status = "returned", links = 2,
            card_link = base .. "R-9", button_link = base .. "R-9",
            expired_at = "2026-11-30 12:00:00",
            title = "Возврат оформлен", button = "Открыть заказ", subtitle = "Деньги вернутся за 3 дня",
            need_timer = false, countdown_timer = false,
        }, render(loaded, event { state = "cancelled" }))
    end)

    it("gives user_id as an integer the core encodes without a fraction", function()
        local status = assert(loaded:render(event { state = "delivered" }, NOW))
        if math.type then assert.are.equal("integer", math.type(status.user_id)) end
        assert.matches('"user_id":1234567,', assert(ao.encode(status)), 1, true)
    end)
end)

describe("rules:render", function()
    local loaded = load_example("delivery")

    it("catches a title that becomes 31 characters after filling", function()
        local name30 = ("Б"):rep(23) -- 23 + " в пути" = 30
        local ok = assert(loaded:render({ state = "on_the_way", order_id = 1, user_id = 1, eta = NOW + 60,
                                          courier = { id = 1, name = name30 } }, NOW))
        assert.are.equal(name30 .. " в пути", ok.external_data.title_active_order_card)
        local s, err = loaded:render({ state = "on_the_way", order_id = 1, user_id = 1, eta = NOW + 60,
                                       courier = { id = 1, name = name30 .. "Б" } }, NOW)
        assert.is_nil(s)
        assert.are.equal("rules", err.kind)
        assert.are.equal("render", err.code)
        assert.are.equal("on_the_way", err.status)
        assert.matches('^status "on_the_way", title: ".*" is 31 characters after filling; the limit is 30$',
            err.message)
    end)

    it("names every field that cannot be filled", function()
        local s, err = loaded:render({ state = "on_the_way" }, NOW)
        assert.is_nil(s)
        local fields = {}
        for _, p in ipairs(err.problems) do fields[#fields + 1] = p.field end
        assert.are.same({ "card_link", "button_link", "merchant_order_id", "user_id", "expires" }, fields)
        assert.matches("button_link: missing value for {order_id}, {courier.id}", err.message, 1, true)
    end)

    it("reports an event without a state, and a state no status has", function()
        local s, err = loaded:render({ order_id = 1, user_id = 1 }, NOW)
        assert.is_nil(s)
        assert.are.equal("no_state", err.code)
        s, err = loaded:render({ state = "teleported", order_id = 1, user_id = 1 }, NOW)
        assert.is_nil(s)
        assert.are.equal("unknown_state", err.code)
        assert.matches('"teleported"', err.message)
        assert.is_nil(loaded:render({ state = cjson.null, order_id = 1, user_id = 1 }, NOW))
    end)

    it("reports an expiry field that is not a time", function()
        local s, err = loaded:render({ state = "on_the_way", order_id = 1, user_id = 1, eta = "soon",
                                       courier = { id = 1 } }, NOW)
        assert.is_nil(s)
        assert.matches('status "on_the_way", expires: eta: "soon" is not a time', err.message, 1, true)
    end)

    it("returns what the C core refuses, naming the status and the field", function()
        local s, err = loaded:render({ state = "new", order_id = "D-1", user_id = 0 }, NOW)
        assert.is_nil(s)
        assert.are.equal("invalid_status", err.code)
        assert.matches('^status "created", user_id: ', err.message)
        assert.are.equal("user_id", err.validation[1].field)
    end)

    it("uses the zone it is given", function()
        local west = load_example("delivery", { utc_offset = "+03:00" })
        local s = assert(west:render({ state = "new", order_id = 1, user_id = 1 }, NOW))
        assert.are.equal("2026-11-29 10:30:00", s.external_data.expired_at)
    end)

    it("counts from os.time() by default", function()
        local before = os.time()
        local s = assert(loaded:render({ state = "new", order_id = 1, user_id = 1 }))
        local t = require("choco.active_order.time")
        local at = assert(t.parse(s.external_data.expired_at, t.DEFAULT_UTC_OFFSET))
        assert.is_true(at >= before + 1800 and at <= os.time() + 1800)
    end)

    it("does not change the event", function()
        local event = { state = "delivered", order_id = "D-1", user_id = 42 }
        loaded:render(event, NOW)
        assert.are.same({ state = "delivered", order_id = "D-1", user_id = 42 }, event)
    end)

    it("raises on programmer errors", function()
        assert.has_error(function() loaded:render(nil) end)
        assert.has_error(function() loaded:render({}, "now") end)
    end)
end)

describe("rules:allows", function()
    local delivery = load_example("delivery")
    local retail = load_example("retail")

    it("allows steps forward and refuses steps back", function()
        assert.is_true(delivery:allows("created", "cooking"))
        assert.is_true(delivery:allows("created", "delivered"))
        local ok, why = delivery:allows("on_the_way", "cooking")
        assert.is_false(ok)
        assert.matches('"cooking" comes before "on_the_way"', why, 1, true)
    end)

    it("allows anything first and the same status again", function()
        assert.is_true(delivery:allows(nil, "on_the_way"))
        assert.is_true(delivery:allows("on_the_way", "on_the_way"))
    end)

    it("allows a cancel status from any status that is not final", function()
        for _, from in ipairs { "created", "cooking", "on_the_way" } do
            assert.is_true(delivery:allows(from, "cancelled"), from)
        end
        local ok, why = delivery:allows("delivered", "cancelled")
        assert.is_false(ok)
        assert.matches("final", why)
        assert.is_false((delivery:allows("cancelled", "created")))
    end)

    it("uses explicit ranks", function()
        assert.is_true(retail:allows("assembling", "shipped"))
        assert.is_false((retail:allows("shipped", "assembling")))
        assert.is_true(retail:allows("shipped", "returned"))
        assert.are.same({ "paid", "assembling", "shipped", "delivered", "returned" }, retail:status_names())
    end)

    it("refuses unknown statuses", function()
        assert.is_false((delivery:allows("created", "teleported")))
        assert.is_false((delivery:allows("teleported", "created")))
    end)
end)
