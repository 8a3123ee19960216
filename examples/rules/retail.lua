-- Retail: an online shop order shipped by a delivery service.

base_link = "https://rahmetapp.kz/webapp/shop"

defaults {
    button = "Открыть заказ",
    card_link = "/orders/{order_id}",
    button_link = "/orders/{order_id}",
    expires = "1d",
}

status "paid" {
    when = { "paid", "payment_confirmed" },
    title = "Оплачено: {items_count} товара",
    subtitle = "Сумма {total} ₸",
}

status "assembling" {
    when = "assembling",
    title = "Собираем заказ",
    subtitle = "Склад: {warehouse|Алматы}",
}

status "shipped" {
    when = "shipped",
    title = "Передан в доставку",
    button = "Отследить",
    button_link = "https://track.example.kz/parcel/{tracking.number}?lang=ru",
    timer = "count_down",
    expires = field "tracking.delivery_by",
    rank = 30,
}

status "delivered" {
    when = "delivered",
    title = "Заказ у вас",
    subtitle = "Есть вопросы? Напишите нам",
    expires = "2h",
    final = true,
    rank = 40,
}

status "returned" {
    when = { "returned", "cancelled" },
    title = "Возврат оформлен",
    subtitle = "{refund_note|Деньги вернутся за 3 дня}",
    final = true,
    cancel = true,
    rank = 50,
}
