"""The live call panel the widget frames inside amoCRM: ``GET /connectors/amocrm/widget/panel?lang=ru|en``.

A page of callbridge's own (so it talks to callbridge same-origin, with no CORS), framed only by the
account's pages (``frame-ancestors``). It signs in with the hub token the framing widget gets for the
current amoCRM user (``/widget/session``, handed over by ``postMessage`` from the account's origin), or,
as a fallback, with the employee's callbridge access code (``callbridge token --extension 101``); either
is traded at ``/operator/api/session`` for the hub's address and short-lived connection tokens.
It shows the operator page's live popups (``/operator/static/live.js``): the
caller's card with the amoCRM contact link while the phone rings, closed when a colleague answers, the
call's progress for whoever took it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, make_response, render_template, request

if TYPE_CHECKING:
    from connectors.amocrm.connector import AmoCrmConnector

TEXTS = {
    "ru": {
        "sign_in": "callbridge: войдите кодом доступа, чтобы видеть звонки здесь.",
        "code": "Код доступа",
        "button": "Войти",
        "refused": "Код не подошёл или истёк; попросите у администратора новый.",
    },
    "en": {
        "sign_in": "callbridge: sign in with your access code to see calls here.",
        "code": "Access code",
        "button": "Sign in",
        "refused": "The code was refused or has expired; ask the administrator for a new one.",
    },
}
# CallbridgeLive's labels in Russian (its own defaults are English).
LABELS_RU = {
    "incoming": "Входящий звонок",
    "outgoing": "Ваш звонок набирается",
    "at": " на ",
    "hidden": "скрытый номер",
    "manager": "Менеджер: ",
    "deals": "Открытые сделки: ",
    "orders": "Последние заказы",
    "looking": "Ищем звонящего…",
    "unknown": "Неизвестный номер",
    "onPhone": "Разговор",
    "answeredBy": "Ответил ",
    "transferred": "Переведён с {from} на {to}",
    "missed": "Пропущенный звонок",
    "ended": "Звонок завершён",
    "callback": "Просят перезвонить",
    "on": " на ",
    "call": "Позвонить",
    "live": "на связи",
    "reconnecting": "переподключение…",
    "close": "Закрыть",
}


def register_panel(blueprint: Blueprint, connector: AmoCrmConnector) -> None:
    origin = connector.settings.origin

    @blueprint.get("/widget/panel")
    def panel() -> Any:
        lang = "en" if request.args.get("lang") == "en" else "ru"
        config = {"labels": LABELS_RU if lang == "ru" else {}, "texts": TEXTS[lang], "account": origin}
        page = render_template("amocrm/panel.html", lang=lang, texts=TEXTS[lang], config=config)
        response = make_response(page)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; "
            f"img-src 'self' data:; frame-ancestors 'self' {origin}"
        )
        return response
