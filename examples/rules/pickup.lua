-- Pickup at the counter: the customer comes for the order themselves.

base_link = "https://rahmetapp.kz/webapp/pickup"

defaults {
    button = "Показать код",
    card_link = "/orders/{order_id}",
    button_link = "/orders/{order_id}/code",
    expires = "3h",
}

status "accepted" {
    when = "accepted",
    title = "Заказ №{order_number} принят",
    subtitle = "Заберите в {place.name}",
}

status "preparing" {
    when = "preparing",
    title = "Собираем заказ",
    timer = "count_down",
    expires = field "ready_at",
}

status "ready" {
    when = "ready",
    title = "Можно забирать!",
    subtitle = "Код выдачи: {pickup_code}",
    button = "Как пройти",
    button_link = "https://2gis.kz/almaty/search/{place.address}",
    expires = "1h",
}

status "picked_up" {
    when = { "picked_up", "closed" },
    title = "Заказ выдан",
    subtitle = "Спасибо, что выбрали нас",
    button = "Оценить",
    button_link = "/orders/{order_id}/review",
    expires = "30m",
    final = true,
}

status "cancelled" {
    when = { "cancelled", "not_picked_up" },
    title = "Заказ отменён",
    subtitle = "{cancel_reason|Деньги вернутся на карту}",
    expires = "1h",
    final = true,
    cancel = true,
}
