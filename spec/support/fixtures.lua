-- Fixtures shared by the specs. Kept free of sockets and nginx so that the
-- payload specs can use it without the emulator's dependencies.

local fixtures = {}

--- The contract's example status (a fresh table each call: specs mutate it).
function fixtures.example()
    return {
        merchant_order_id = "WEE-11122",
        user_id = 1234567,
        external_status = "created",
        deeplinks = {
            { link = "https://rahmetapp.kz/100/orders?tab=3", type = "active_order_call_to_action" },
            { link = "https://rahmetapp.kz/100/orders?tab=5", type = "active_order_card" },
        },
        external_data = {
            expired_at = "2021-10-20 16:49:36",
            title_active_order_card = "Ожидает оплаты",
            title_call_to_action = "К заказу",
            subtitle_active_order_card = "Заказ отменен: товара нет в наличии",
            need_timer = false,
            countdown_timer = false,
        },
    }
end

return fixtures
