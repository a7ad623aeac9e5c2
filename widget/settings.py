"""A site's widget settings: who may embed it, whom it calls, when, how it looks, and its abuse limits.

Stored as JSON in `widget_sites.config` (edited by `callbridge widget ...` and later the admin panel) and
validated by `SiteConfig` on every read and write, so a bad value is refused with the key that is wrong.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from widget.schedule import Schedule, ScheduleError, parse_interval, timezone
from widget.texts import LANGUAGES, TEXT_KEYS

_KEY = re.compile(r"^[A-Za-z0-9_-]{3,64}$")
_SHORT_NUMBER = re.compile(r"^[0-9]{1,16}$")
_COLOUR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")

POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left")
# Number types a site may allow (`phonenumbers` names, lower case). Premium rate, shared cost, personal,
# UAN, VoIP, pager, voicemail, satellite and international networks, and unknown types are never dialled.
NUMBER_TYPES = ("mobile", "fixed_line", "fixed_line_or_mobile", "toll_free")
NumberType = Literal["mobile", "fixed_line", "fixed_line_or_mobile", "toll_free"]
DEFAULT_NUMBER_TYPES: tuple[NumberType, ...] = ("mobile", "fixed_line", "fixed_line_or_mobile")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Limit(_Model):
    """At most `count` accepted requests per `seconds` (a sliding window)."""

    count: int = Field(ge=1, le=100_000)
    seconds: int = Field(ge=1, le=7 * 86400)


class Limits(_Model):
    """Abuse limits, counted over accepted requests and shared by every worker process (in the store)."""

    per_ip: Limit = Limit(count=5, seconds=600)
    per_number: Limit = Limit(count=3, seconds=3600)
    per_visitor: Limit = Limit(count=3, seconds=600)
    per_network: Limit = Limit(count=10, seconds=600)  # one /24 (IPv4) or /56 (IPv6) network
    per_site: Limit = Limit(count=120, seconds=60)
    min_fill_seconds: float = Field(default=3.0, ge=0, le=600)  # widget shown -> request sent, at least
    daily_numbers: int = Field(default=100, ge=0, le=100_000)  # distinct numbers a day; 0 = no cap


class Colours(_Model):
    accent: str = "#1f7a4d"  # the button and the submit button
    accent_text: str = "#ffffff"
    background: str = "#ffffff"
    text: str = "#1d1d1f"

    @field_validator("*")
    @classmethod
    def _colour(cls, value: str) -> str:
        if not _COLOUR.match(value):
            raise ValueError("use a hex colour such as #1f7a4d")
        return value


def normalise_origin(text: str) -> str:
    """'https://Shop.example.com/' -> 'https://shop.example.com'; scheme://host[:port] only."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an origin: write it as https://shop.example.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{text!r}: an origin has no path, query or credentials")
    default_port = {"http": 80, "https": 443}[parts.scheme]
    port = f":{parts.port}" if parts.port and parts.port != default_port else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{port}"


class SiteConfig(_Model):
    """Everything about one site that embeds the widget."""

    name: str = ""
    origins: list[str] = Field(default_factory=list)  # pages that may use the widget (CORS)
    group: str  # the managers' group short number, rung first
    line: str  # the company line (DID) the visitor sees calling
    region: str | None = None  # for numbers without a country code; None = the daemon's default
    countries: list[str] = Field(default_factory=list)  # countries dialled; empty = the region only
    number_types: list[NumberType] = Field(default_factory=lambda: list(DEFAULT_NUMBER_TYPES))
    timezone: str = "Europe/Moscow"
    hours: dict[str, list[str]] = Field(
        default_factory=lambda: {day: ["09:00-18:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
    )
    holidays: list[date] = Field(default_factory=list)
    countdown: int = Field(default=30, ge=5, le=600)
    retries: int = Field(default=1, ge=0, le=10)  # further attempts when a call fails
    retry_delay_seconds: int = Field(default=120, ge=5, le=86400)
    language: Literal["auto", "ru", "en"] = "auto"
    mode: Literal["compact", "full"] = "compact"  # the first state; the visitor's choice is remembered
    position: Literal["bottom-right", "bottom-left", "top-right", "top-left"] = "bottom-right"
    colours: Colours = Field(default_factory=Colours)
    texts: dict[str, dict[str, str]] = Field(default_factory=dict)  # {"ru": {"title": ...}, "en": {...}}
    limits: Limits = Field(default_factory=Limits)

    @field_validator("origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        return sorted({normalise_origin(item) for item in value})

    @field_validator("group")
    @classmethod
    def _group(cls, value: str) -> str:
        value = str(value).strip()
        if not _SHORT_NUMBER.match(value):
            raise ValueError("the managers' group is its short number in the PBX, e.g. 200")
        return value

    @field_validator("line")
    @classmethod
    def _line(cls, value: str) -> str:
        value = str(value).strip()
        if not value or len(value) > 128:
            raise ValueError("the line is the company number (DID) Mango calls from, e.g. 74951234567")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not re.match(r"^[A-Za-z]{2}$", value):
            raise ValueError("a region is a two-letter country code such as RU")
        return value.upper()

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: list[str]) -> list[str]:
        codes = [str(item).strip().upper() for item in value if str(item).strip()]
        for code in codes:
            if not re.match(r"^[A-Z]{2}$", code):
                raise ValueError(f"{code!r}: a country is a two-letter code such as RU")
        return sorted(set(codes))

    @field_validator("number_types")
    @classmethod
    def _number_types(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("allow at least one number type, e.g. mobile")
        return [kind for kind in NUMBER_TYPES if kind in value]

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            timezone(value)
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        try:
            for intervals in value.values():
                for text in intervals:
                    parse_interval(text)
            Schedule.build("UTC", value)
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None
        return {day: list(intervals) for day, intervals in value.items() if intervals}

    @field_validator("texts")
    @classmethod
    def _texts(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for lang, texts in value.items():
            if lang not in LANGUAGES:
                raise ValueError(f"texts are given per language: {', '.join(LANGUAGES)}")
            unknown = set(texts) - TEXT_KEYS
            if unknown:
                raise ValueError(f"unknown text key(s): {', '.join(sorted(unknown))}")
            for text in texts.values():
                if len(text) > 500:
                    raise ValueError("a text is at most 500 characters")
        return value

    @model_validator(mode="after")
    def _holidays_sorted(self) -> SiteConfig:
        self.holidays = sorted(set(self.holidays))
        return self

    def schedule(self) -> Schedule:
        return Schedule.build(self.timezone, self.hours, self.holidays)


def check_key(key: str) -> str:
    """A site key: 3-64 letters, digits, '-' or '_' (it appears in the embed tag)."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError("a site key is 3-64 letters, digits, '-' or '_'")
    return key
