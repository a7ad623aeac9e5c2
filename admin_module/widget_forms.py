"""The panel's form for one widget site, turned into a `widget.settings.SiteConfig`, and the block list form.

The form only carries the values; every rule about them is the widget's own (`SiteConfig`, `parse_interval`,
`check_key`), and the widget's error messages are put back on the fields they concern.
"""

from __future__ import annotations

import re
from typing import Any, get_args

from flask_wtf import FlaskForm
from pydantic import ValidationError
from wtforms import BooleanField, HiddenField, SelectMultipleField, StringField, TextAreaField
from wtforms.validators import Length, Optional

from bridge.connector_api.phones import InvalidPhoneNumber, to_e164
from widget.schedule import WEEKDAYS, ScheduleError, parse_interval
from widget.settings import NUMBER_TYPES, Colours, Limit, Limits, SiteConfig, check_key
from widget.sites import BLOCK_KINDS, Site
from widget.texts import DEFAULT_TEXTS, LANGUAGES

__all__ = [
    "COLOURS",
    "DAILY_CAP",
    "LIMIT_PARTS",
    "LIMIT_SCOPES",
    "MAIN_TEXTS",
    "MIN_FILL",
    "NUMBER_TYPES",
    "NUMBER_TYPES_SHOWN",
    "OTHER_TEXTS",
    "BlockForm",
    "FieldErrors",
    "SiteForm",
    "block_entry",
    "choices",
    "fill",
    "hours_field",
    "limit_field",
    "site_config",
    "text_field",
]

FieldErrors = dict[str, list[str]]

COLOURS: tuple[str, ...] = tuple(Colours.model_fields)
TEXT_KEYS_ORDERED: tuple[str, ...] = tuple(DEFAULT_TEXTS["ru"])
# The headline and the message after a request: what a site owner changes first; the rest are folded away.
MAIN_TEXTS: tuple[str, ...] = ("title", "subtitle", "after_open", "after_closed")
OTHER_TEXTS: tuple[str, ...] = tuple(key for key in TEXT_KEYS_ORDERED if key not in MAIN_TEXTS)
_SPLIT = re.compile(r"[\s,;]+")
# The abuse limits: each scope's `Limit` (count per seconds), and the least time to fill the form.
LIMIT_SCOPES: tuple[str, ...] = tuple(
    name for name, info in Limits.model_fields.items() if info.annotation is Limit
)
LIMIT_PARTS: tuple[str, ...] = tuple(Limit.model_fields)
MIN_FILL = "min_fill_seconds"
DAILY_CAP = "daily_numbers"
# Posted with the number type boxes (a hidden field), so "none ticked" is told apart from "not on the page".
NUMBER_TYPES_SHOWN = "number_types_shown"


def hours_field(day: str) -> str:
    return f"hours_{day}"


def text_field(lang: str, key: str) -> str:
    return f"text_{lang}_{key}"


def limit_field(scope: str, part: str = "") -> str:
    """`limit_per_ip_count`, `limit_per_ip_seconds`, ...; `limit_min_fill_seconds` without a part."""
    return f"limit_{scope}_{part}" if part else f"limit_{scope}"


def choices(name: str) -> tuple[str, ...]:
    """The allowed values of a `SiteConfig` literal field (mode, language, position)."""
    return get_args(SiteConfig.model_fields[name].annotation)


class SiteForm(FlaskForm):
    """One site. Weekday hours (`hours_mon` ...) and texts (`text_ru_title` ...) are added below."""

    key = StringField("key", validators=[Optional(), Length(max=64)])
    enabled = BooleanField("enabled", default=True)
    name = StringField("name", validators=[Optional(), Length(max=200)])
    mode = StringField("mode", default="compact", validators=[Length(max=20)])
    countdown = StringField("countdown", default="30", validators=[Length(max=10)])
    language = StringField("language", default="auto", validators=[Length(max=10)])
    position = StringField("position", default="bottom-right", validators=[Length(max=20)])
    origins = TextAreaField("origins", validators=[Optional(), Length(max=8000)])
    group = StringField("group", validators=[Length(max=32)])
    line = StringField("line", validators=[Length(max=128)])
    region = StringField("region", validators=[Optional(), Length(max=8)])
    countries = StringField("countries", validators=[Optional(), Length(max=500)])
    number_types = SelectMultipleField("number_types", choices=list(NUMBER_TYPES), validate_choice=False)
    number_types_shown = HiddenField(NUMBER_TYPES_SHOWN)
    timezone = StringField("timezone", default="Europe/Moscow", validators=[Length(max=64)])
    holidays = TextAreaField("holidays", validators=[Optional(), Length(max=8000)])
    retries = StringField("retries", default="1", validators=[Length(max=10)])
    retry_delay_seconds = StringField("retry_delay_seconds", default="120", validators=[Length(max=10)])
    colour_accent = StringField("colour_accent", validators=[Length(max=16)])
    colour_accent_text = StringField("colour_accent_text", validators=[Length(max=16)])
    colour_background = StringField("colour_background", validators=[Length(max=16)])
    colour_text = StringField("colour_text", validators=[Length(max=16)])


for _day in WEEKDAYS:
    setattr(SiteForm, hours_field(_day), StringField(hours_field(_day), validators=[Length(max=200)]))
for _lang in LANGUAGES:
    for _key in TEXT_KEYS_ORDERED:
        # The widget limits a text to 500 characters; this only bounds what the panel reads.
        _name = text_field(_lang, _key)
        setattr(SiteForm, _name, StringField(_name, validators=[Length(max=2000)]))
for _name in [limit_field(s, p) for s in LIMIT_SCOPES for p in LIMIT_PARTS] + [
    limit_field(MIN_FILL),
    limit_field(DAILY_CAP),
]:
    setattr(SiteForm, _name, StringField(_name, validators=[Length(max=20)]))


def fill(form: SiteForm, site: Site | None) -> None:
    """Put a site's settings (or a new site's defaults) into the form."""
    defaults = SiteConfig.model_construct()
    config = site.config if site is not None else defaults
    form.key.data = site.key if site is not None else ""
    form.enabled.data = site.enabled if site is not None else True
    for name in ("name", "mode", "language", "position", "timezone"):
        getattr(form, name).data = getattr(config, name)
    for name in ("countdown", "retries", "retry_delay_seconds"):
        getattr(form, name).data = str(getattr(config, name))
    form.group.data = getattr(config, "group", "") if site is not None else ""
    form.line.data = getattr(config, "line", "") if site is not None else ""
    form.region.data = config.region or ""
    form.countries.data = ", ".join(config.countries)
    form.number_types.data = list(config.number_types)
    form.origins.data = "\n".join(config.origins)
    form.holidays.data = "\n".join(day.isoformat() for day in config.holidays)
    for name in COLOURS:
        getattr(form, f"colour_{name}").data = getattr(config.colours, name)
    for day in WEEKDAYS:
        getattr(form, hours_field(day)).data = ", ".join(config.hours.get(day, []))
    for lang in LANGUAGES:
        for key in TEXT_KEYS_ORDERED:
            getattr(form, text_field(lang, key)).data = config.texts.get(lang, {}).get(key, "")
    for scope in LIMIT_SCOPES:
        for part in LIMIT_PARTS:
            getattr(form, limit_field(scope, part)).data = str(getattr(getattr(config.limits, scope), part))
    getattr(form, limit_field(MIN_FILL)).data = f"{config.limits.min_fill_seconds:g}"
    getattr(form, limit_field(DAILY_CAP)).data = str(config.limits.daily_numbers)


def _hours(form: SiteForm, errors: FieldErrors) -> dict[str, list[str]]:
    hours: dict[str, list[str]] = {}
    for day in WEEKDAYS:
        parts = [p.strip() for p in (getattr(form, hours_field(day)).data or "").split(",") if p.strip()]
        for part in parts:
            try:
                parse_interval(part)
            except ScheduleError as exc:
                errors.setdefault(hours_field(day), []).append(f"{day}: {exc}")
        if parts:
            hours[day] = parts
    return hours


def _texts(form: SiteForm) -> dict[str, dict[str, str]]:
    """Overrides only: an empty field, or one equal to the default, uses the widget's default text."""
    texts: dict[str, dict[str, str]] = {}
    for lang in LANGUAGES:
        for key in TEXT_KEYS_ORDERED:
            value = (getattr(form, text_field(lang, key)).data or "").strip()
            if value and value != DEFAULT_TEXTS[lang][key]:
                texts.setdefault(lang, {})[key] = value
    return texts


def _limits(form: SiteForm, base: dict[str, Any], errors: FieldErrors, missing: str) -> dict[str, Any]:
    """The limits over the saved ones: a field not posted keeps its value, one posted empty is missing."""
    saved = {**Limits().model_dump(), **base.get("limits", {})}
    limits: dict[str, Any] = {scope: dict(saved[scope]) for scope in LIMIT_SCOPES}
    limits[MIN_FILL] = saved[MIN_FILL]
    limits[DAILY_CAP] = saved[DAILY_CAP]
    fields = [
        (limits[scope], part, limit_field(scope, part)) for scope in LIMIT_SCOPES for part in LIMIT_PARTS
    ]
    singles = [(limits, key, limit_field(key)) for key in (MIN_FILL, DAILY_CAP)]
    for target, key, name in [*fields, *singles]:
        field = getattr(form, name)
        if not field.raw_data:
            continue
        value = (field.data or "").strip()
        if value:
            target[key] = value
        else:
            errors.setdefault(name, []).append(missing)
    return limits


def _data(form: SiteForm, base: dict[str, Any], errors: FieldErrors, missing: str) -> dict[str, Any]:
    data = dict(base)
    for name in ("name", "mode", "language", "position", "group", "line", "timezone"):
        data[name] = (getattr(form, name).data or "").strip()
    for name in ("countdown", "retries", "retry_delay_seconds"):
        data[name] = (getattr(form, name).data or "").strip()
    data["region"] = (form.region.data or "").strip() or None
    if form.countries.raw_data:  # not on the page: the saved countries stay
        data["countries"] = [item for item in _SPLIT.split(form.countries.data or "") if item]
    if form.number_types_shown.raw_data:  # the boxes were on the page: none ticked is an error
        data["number_types"] = list(form.number_types.data or [])
    data["origins"] = [item for item in _SPLIT.split(form.origins.data or "") if item]
    data["holidays"] = [item for item in _SPLIT.split(form.holidays.data or "") if item]
    data["colours"] = {
        **base.get("colours", {}),
        **{name: (getattr(form, f"colour_{name}").data or "").strip() for name in COLOURS},
    }
    data["hours"] = _hours(form, errors)
    data["texts"] = _texts(form)
    data["limits"] = _limits(form, base, errors, missing)
    return data


def _message(error: dict[str, Any], data: dict[str, Any], missing: str) -> str:
    if error["type"] == "missing":
        return missing
    message = str(error["msg"]).removeprefix("Value error, ")
    loc = error["loc"]
    if len(loc) == 2 and loc[0] == "holidays" and isinstance(loc[1], int):
        message = f"{data['holidays'][loc[1]]!r}: {message}"
    return message


def _field(loc: tuple[Any, ...]) -> str:
    head = str(loc[0]) if loc else "site"
    if head == "limits" and len(loc) > 1:
        return limit_field(str(loc[1]), str(loc[2]) if len(loc) > 2 else "")
    return f"colour_{loc[1]}" if head == "colours" and len(loc) > 1 else head


def _text_errors(data: dict[str, Any], errors: FieldErrors) -> None:
    """Name the text fields the widget refused (the widget reports the `texts` setting as a whole)."""
    for lang, texts in data["texts"].items():
        for key, value in texts.items():
            try:
                SiteConfig.model_validate({"group": "1", "line": "1", "texts": {lang: {key: value}}})
            except ValidationError as exc:
                message = _message(exc.errors()[0], data, "")
                errors.setdefault(text_field(lang, key), []).append(f"{lang}.{key}: {message}")


def site_config(
    form: SiteForm, base: dict[str, Any], *, new: bool, missing: str
) -> tuple[SiteConfig | None, FieldErrors]:
    """The validated config for the form over `base` (the saved settings, or {} for a new site).

    Limit fields that were not posted keep their saved values. `missing` is the message for a required
    value left empty. Returns the config, or None and messages per field.
    """
    form.validate()  # lengths only (and the CSRF token, which the blueprint has checked already)
    errors: FieldErrors = {name: list(messages) for name, messages in form.errors.items()}
    if new:
        try:
            check_key((form.key.data or "").strip())
        except ValueError as exc:
            errors.setdefault("key", []).append(str(exc))
    data = _data(form, base, errors, missing)
    try:
        config = SiteConfig.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            field = _field(error["loc"])
            if field == "hours" and any(name.startswith("hours_") for name in errors):
                continue  # already named per weekday
            if field == "texts":
                _text_errors(data, errors)
                continue
            errors.setdefault(field, []).append(_message(error, data, missing))
        if not errors:
            errors["site"] = [str(exc)]
        return None, errors
    return (None, errors) if errors else (config, errors)


class BlockForm(FlaskForm):
    """One block list entry: a phone number (in any format) or an IP address/network, and why."""

    kind = StringField("kind", default="phone", validators=[Length(max=8)])
    value = StringField("value", validators=[Length(max=64)])
    reason = StringField("reason", validators=[Optional(), Length(max=500)])


def block_entry(form: BlockForm, region: str, messages: dict[str, str]) -> tuple[str, str, FieldErrors]:
    """The entry's kind and value to store (a number in E.164, as the CLI and the widget write it).

    `messages` holds the texts for "missing", "kind", "nul" and "phone" (followed by the parser's reason).
    An IP address is checked by `widget.sites.block` itself, so it is returned as typed.
    """
    form.validate()
    errors: FieldErrors = {name: list(problems) for name, problems in form.errors.items()}
    kind = (form.kind.data or "").strip()
    value = (form.value.data or "").strip()
    for name in ("value", "reason"):
        if "\x00" in (getattr(form, name).data or ""):
            errors.setdefault(name, []).append(messages["nul"])
    if errors:
        return kind, value, errors
    if kind not in BLOCK_KINDS:
        errors.setdefault("kind", []).append(messages["kind"])
    elif not value:
        errors.setdefault("value", []).append(messages["missing"])
    elif kind == "phone":
        try:
            value = to_e164(value, region)
        except InvalidPhoneNumber as exc:
            errors.setdefault("value", []).append(f"{messages['phone']} {exc}")
    return kind, value, errors
