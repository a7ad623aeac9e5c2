"""The widget's tables, in the core's `metadata` so Alembic and the test fixtures see them.

Migrations: `bridge/store/migrations/versions/w001_widget.py` and `w002_widget_guards.py` must match these
definitions.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, Index, Integer, String, Table, Text, UniqueConstraint

from bridge.store.schema import Id, metadata

__all__ = ["widget_blocklist", "widget_form_tokens", "widget_hits", "widget_requests", "widget_sites"]

# One row per site that may embed the widget. `config` is the JSON of `widget.settings.SiteConfig`
# (origins, group, line, schedule, texts, look, limits); `secret` signs the widget's form tokens.
widget_sites = Table(
    "widget_sites",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("config", Text, nullable=False),
    Column("secret", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# One row per callback request. `status` is the request's life:
#   scheduled (outside hours) | queued (dial now) | dialling (claimed, command being sent)
#   | calling (command accepted, outcome pending) | retry (an attempt failed, next at next_attempt_at)
#   | done (the visitor was connected) | failed (no attempts left, or refused by the PBX)
# `phase` is what the visitor is told while calling: calling_managers | connecting | connected.
widget_requests = Table(
    "widget_requests",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("token", String(64), nullable=False),
    Column("site_key", String(64), nullable=False),
    Column("phone", String(32), nullable=False),  # E.164
    Column("visitor_id", String(64), nullable=True),
    Column("ip", String(64), nullable=True),
    Column("lang", String(8), nullable=True),
    Column("page_url", Text, nullable=True),
    Column("referrer", Text, nullable=True),
    Column("utm", Text, nullable=False, default="{}"),  # JSON object
    Column("status", String(16), nullable=False),
    Column("phase", String(24), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False, default=1),
    Column("next_attempt_at", Float, nullable=True),
    Column("claimed_until", Float, nullable=True),
    Column("command_id", String(160), nullable=True),
    Column("entry_id", String(160), nullable=True),
    Column("last_result", Integer, nullable=True),
    Column("failure", String(64), nullable=True),
    Column("dialled_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("token", name="uq_widget_requests_token"),
)
Index("ix_widget_requests_due", widget_requests.c.status, widget_requests.c.next_attempt_at)
Index("ix_widget_requests_command", widget_requests.c.command_id)
# The daily cap counts a site's distinct numbers since midnight.
Index("ix_widget_requests_site_created", widget_requests.c.site_key, widget_requests.c.created_at)

# Accepted requests per limit scope ("ip", "number", "visitor", "site") and key, for sliding-window
# abuse limits shared by every worker process. Old rows are pruned by the scheduler.
widget_hits = Table(
    "widget_hits",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("scope", String(16), nullable=False),
    Column("key", String(200), nullable=False),
    Column("at", Float, nullable=False),
)
Index("ix_widget_hits_lookup", widget_hits.c.scope, widget_hits.c.key, widget_hits.c.at)
Index("ix_widget_hits_at", widget_hits.c.at)

# Form tokens that served an accepted request (sha256 of the token): each token is good for one request.
# Rows older than the tokens' 12-hour life are pruned by the scheduler.
widget_form_tokens = Table(
    "widget_form_tokens",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("site_key", String(64), nullable=False),
    Column("used_at", Float, nullable=False),
)
Index("ix_widget_form_tokens_used_at", widget_form_tokens.c.used_at)

# Numbers (E.164) and IP addresses or networks that may not request callbacks, on every site.
widget_blocklist = Table(
    "widget_blocklist",
    metadata,
    Column("kind", String(8), primary_key=True),  # phone | ip
    Column("value", String(64), primary_key=True),
    Column("reason", Text, nullable=True),
    Column("created_at", Float, nullable=False),
)
