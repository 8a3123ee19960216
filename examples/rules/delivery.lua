-- Restaurant delivery: what the customer's card says from order to door.
-- Internal states are the ones our kitchen system sends; statuses are the
-- names registered with Choco. Links are written relative to base_link.

base_link = "https://rahmetapp.kz/webapp/delivery"

defaults {
    button = "К заказу",
    card_link = "/orders/{order_id}",
    button_link = "/orders/{order_id}?tab=status",
    expires = "2h",
}

status "created" {
    when = { "new", "awaiting_payment" },
    title = "Заказ оформлен",
    subtitle = "Ждём подтверждения ресторана",
    expires = "30m",
}

status "cooking" {
    when = { "accepted", "cooking" },
    title = "Готовим ваш заказ",
    timer = "count_up",
}

status "on_the_way" {
    when = { "courier_picked_up", "on_the_way" },
    title = "{courier.name|Курьер} в пути",
    button = "Где курьер?",
    button_link = "/orders/{order_id}/map?courier={courier.id}",
    timer = "count_down",
    expires = field "eta",
}

status "delivered" {
    when = "delivered",
    title = "Заказ доставлен",
    subtitle = "Приятного аппетита!",
    button = "Оценить заказ",
    button_link = "/orders/{order_id}/review",
    expires = "1h",
    final = true,
}

status "cancelled" {
    when = { "cancelled", "rejected_by_restaurant" },
    title = "Заказ отменён",
    subtitle = "{cancel_reason|Свяжитесь с поддержкой}",
    button = "Подробнее",
    expires = "1h",
    final = true,
    cancel = true,
}
