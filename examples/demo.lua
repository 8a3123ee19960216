-- `make demo`: start the bundled gateway emulator, push one order through its
-- whole life and a second order that is cancelled, and show for each step what
-- was sent, what the customer's card would show, and what the gateway answered.
-- The emulator is always stopped, also when a step fails.

local ao = require "choco.active_order"
local launcher = require "choco.active_order.emulator.launcher"
local cjson = require "cjson"

local STATUSES = { "created", "paid", "cooking", "delivering", "delivered", "cancelled" }
local CLIENT_ID, CLIENT_SECRET = "demo-merchant", "demo-secret"
local KZ_OFFSET = 5 * 3600 -- Kazakhstan: UTC+05:00

-- "YYYY-MM-DD HH:MM:SS" in Kazakhstan time, `seconds` from now.
local function kz_time_in(seconds)
    return os.date("!%Y-%m-%d %H:%M:%S", os.time() + KZ_OFFSET + seconds)
end

local function order_status(order_id, user_id, step)
    local base = "https://rahmetapp.kz/webapp/delivery/orders/" .. order_id
    return {
        merchant_order_id = order_id,
        user_id = user_id,
        external_status = step.status,
        deeplinks = {
            { link = base, type = "active_order_card" },
            { link = base .. (step.button_path or "?tab=status"), type = "active_order_call_to_action" },
        },
        external_data = {
            expired_at = kz_time_in(step.expires_in or 7200),
            title_active_order_card = step.title,
            title_call_to_action = step.button,
            subtitle_active_order_card = step.subtitle,
            need_timer = step.timer ~= nil,
            countdown_timer = step.timer == "countdown",
        },
    }
end

local LIFE = {
    { status = "created", title = "Заказ оформлен", button = "К заказу",
      subtitle = "Ждём подтверждения ресторана", expires_in = 1800 },
    { status = "paid", title = "Заказ оплачен", button = "К заказу", subtitle = "Передали заказ на кухню" },
    { status = "cooking", title = "Готовим ваш заказ", button = "К заказу", timer = "elapsed" },
    { status = "delivering", title = "Курьер Айдос в пути", button = "Где курьер?", button_path = "/map",
      timer = "countdown", expires_in = 2400 },
    { status = "delivered", title = "Заказ доставлен", button = "Оценить заказ", button_path = "/review",
      subtitle = "Приятного аппетита!", expires_in = 3600 },
}

local CANCELLED = {
    { status = "created", title = "Заказ оформлен", button = "К заказу",
      subtitle = "Ждём подтверждения ресторана", expires_in = 1800 },
    { status = "cancelled", title = "Заказ отменён", button = "Подробнее",
      subtitle = "Ресторан не может принять заказ", expires_in = 3600 },
}

local function utf8_len(s)
    local _, n = s:gsub("[^\128-\191]", "")
    return n
end

local function pad(s, width)
    return s .. string.rep(" ", math.max(0, width - utf8_len(s)))
end

-- The card as the app would draw it: title, subtitle (only without a timer),
-- timer, button, and where each tap leads.
local function card_lines(status)
    local d = status.external_data
    local links = {}
    for _, l in ipairs(status.deeplinks) do links[l.type] = l.link end
    local lines = { d.title_active_order_card }
    if d.need_timer then
        lines[#lines + 1] = d.countdown_timer and "⏱ counting down to " .. d.expired_at or "⏱ time since the order"
    elseif d.subtitle_active_order_card then
        lines[#lines + 1] = d.subtitle_active_order_card
    end
    lines[#lines + 1] = "[ " .. d.title_call_to_action .. " ]"
    local width = 0
    for _, l in ipairs(lines) do width = math.max(width, utf8_len(l)) end
    local out = { "  ┌" .. string.rep("─", width + 2) .. "┐" }
    for _, l in ipairs(lines) do out[#out + 1] = "  │ " .. pad(l, width) .. " │" end
    out[#out + 1] = "  └" .. string.rep("─", width + 2) .. "┘"
    out[#out + 1] = "  card tap   -> " .. tostring(links.active_order_card)
    out[#out + 1] = "  button tap -> " .. tostring(links.active_order_call_to_action)
    out[#out + 1] = "  shown until " .. d.expired_at .. " (Kazakhstan time)"
    return table.concat(out, "\n")
end

-- A few fields of the gateway's answer (the card's record on its side).
local function gateway_summary(data)
    local parts = {}
    for _, k in ipairs { "id", "merchant_order_id", "external_status_id", "expired_at", "updated_at" } do
        local v = data[k]
        if type(v) == "number" and v == math.floor(v) then v = string.format("%d", v) end
        if v ~= nil and v ~= cjson.null then parts[#parts + 1] = k .. "=" .. tostring(v) end
    end
    return table.concat(parts, ", ")
end

local function push_life(client, order_id, user_id, steps)
    print(("== order %s (user %d)"):format(order_id, user_id))
    for i, step in ipairs(steps) do
        local status = order_status(order_id, user_id, step)
        print(("-- step %d: %s"):format(i, step.status))
        print("sent:    PUT /orders/v2/preorder/external/status")
        print("         " .. assert(client:encode(status)))
        print("card:")
        print(card_lines(status))
        local data, meta = client:push(status)
        if not data then
            print("gateway: FAILED " .. tostring(meta))
            return false
        end
        print(("gateway: ok in %.1f ms (%d attempt%s): %s"):format(meta.duration * 1000, meta.attempts,
            meta.attempts == 1 and "" or "s", gateway_summary(data)))
    end
    print()
    return true
end

local function main(emu)
    print("gateway emulator listening at " .. emu.url)
    print()
    local client = assert(ao.new {
        base_url = emu.url, client_id = CLIENT_ID, client_secret = CLIENT_SECRET, statuses = STATUSES,
    })
    print("client: " .. tostring(client))
    print()
    local ok = push_life(client, "DEMO-1001", 424242, LIFE)
    ok = push_life(client, "DEMO-1002", 515151, CANCELLED) and ok
    client:close()
    return ok
end

local emu, err = launcher.start { statuses = STATUSES, client_id = CLIENT_ID, client_secret = CLIENT_SECRET }
if not emu then
    io.stderr:write("demo: cannot start the gateway emulator: ", tostring(err), "\n")
    os.exit(1)
end
local ran, result = pcall(main, emu)
emu:stop()
print("gateway emulator stopped")
if not ran then
    io.stderr:write("demo: ", tostring(result), "\n")
    os.exit(1)
end
if not result then os.exit(1) end
