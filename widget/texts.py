"""The widget's default texts in Russian and English. A site overrides any of them in its config.

`{seconds}` is replaced by the countdown, `{when}` by the next time the managers call (formatted by the
widget in the site's time zone and the visitor's language).
"""

from __future__ import annotations

LANGUAGES = ("ru", "en")

DEFAULT_TEXTS: dict[str, dict[str, str]] = {
    "ru": {
        "button": "Перезвоним за {seconds} секунд",
        "title": "Перезвоним за {seconds} секунд",
        "subtitle": "Оставьте номер — менеджер позвонит вам бесплатно",
        "phone_label": "Ваш номер телефона",
        "phone_placeholder": "+7 (___) ___-__-__",
        "submit": "Жду звонка",
        "collapse": "Свернуть",
        "expand": "Заказать обратный звонок",
        "countdown_unit": "сек.",
        "after_open": "Заявка принята. Менеджер позвонит вам в течение {seconds} секунд.",
        "after_closed": "Сейчас нерабочее время. Мы перезвоним вам {when}.",
        "state_calling_managers": "Звоним менеджерам…",
        "state_connecting": "Менеджер ответил — соединяем вас…",
        "state_connected": "Соединили! Возьмите трубку.",
        "state_retry": "Не удалось до вас дозвониться. Попробуем ещё раз {when}.",
        "state_failed": "Мы не смогли до вас дозвониться. Позвоните нам или оставьте номер ещё раз.",
        "again": "Отправить ещё раз",
        "error_phone": "Проверьте номер: например, +7 916 123-45-67",
        "error_rate": "Слишком много заявок. Попробуйте позже.",
        "error_number": "На этот номер мы не перезваниваем. Укажите мобильный или городской номер.",
        "error_token_used": "Эта заявка уже отправлена. Чтобы отправить ещё одну, обновите страницу.",
        "error_daily_cap": (
            "Сегодня мы больше не принимаем заявки на звонок. Позвоните нам или попробуйте завтра."
        ),
        "error_refused": "Заявку не удалось принять.",
        "error_generic": "Не удалось отправить заявку. Попробуйте ещё раз.",
        "privacy": "Нажимая кнопку, вы соглашаетесь на обработку номера для звонка.",
    },
    "en": {
        "button": "We'll call you back in {seconds} seconds",
        "title": "We'll call you back in {seconds} seconds",
        "subtitle": "Leave your number and a manager will call you for free",
        "phone_label": "Your phone number",
        "phone_placeholder": "+1 555 123 4567",
        "submit": "Call me",
        "collapse": "Minimise",
        "expand": "Request a callback",
        "countdown_unit": "sec",
        "after_open": "Request received. A manager will call you within {seconds} seconds.",
        "after_closed": "We are closed now. We will call you back {when}.",
        "state_calling_managers": "Calling our managers…",
        "state_connecting": "A manager answered — connecting you…",
        "state_connected": "Connected! Please pick up your phone.",
        "state_retry": "We could not reach you. We will try again {when}.",
        "state_failed": "We could not reach you. Please call us or leave your number again.",
        "again": "Send again",
        "error_phone": "Please check the number, e.g. +7 916 123-45-67",
        "error_rate": "Too many requests. Please try again later.",
        "error_number": "We do not call this kind of number. Please leave a mobile or landline number.",
        "error_token_used": "This request has already been sent. Reload the page to send another one.",
        "error_daily_cap": "We take no more callback requests today. Please call us or try again tomorrow.",
        "error_refused": "We could not accept this request.",
        "error_generic": "The request could not be sent. Please try again.",
        "privacy": "By pressing the button you agree that we use your number to call you.",
    },
}

TEXT_KEYS = frozenset(DEFAULT_TEXTS["ru"])


def merged_texts(overrides: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The default texts with a site's overrides applied, for every language."""
    return {lang: {**DEFAULT_TEXTS[lang], **overrides.get(lang, {})} for lang in LANGUAGES}


def pick_language(requested: str | None, default: str = "ru") -> str:
    """`ru` or `en` from a language tag such as `en-GB`; the site's default for anything else."""
    tag = (requested or "").strip().lower()[:2]
    return tag if tag in LANGUAGES else (default if default in LANGUAGES else "ru")
