"""Table definitions (SQLAlchemy Core). Migrations under `migrations/versions` must match these."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    true,
)

metadata = MetaData()

# Sqlite autoincrement needs INTEGER PRIMARY KEY; PostgreSQL wants BIGINT identity.
Id = BigInteger().with_variant(Integer(), "sqlite")

raw_events = Table(
    "raw_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("path", String(64), nullable=False),  # "events/call", "result/callback", ...
    Column("dedup_key", String(400), nullable=False, unique=True),
    Column("entry_id", String(160), nullable=True),
    Column("payload", Text, nullable=False),  # the raw `json` form field exactly as signed
    Column("received_at", Float, nullable=False),
    Column("processed_at", Float, nullable=True),
    # Set (with the error) when the processor could not fold the event; it is skipped until retried.
    Column("quarantined_at", Float, nullable=True),
    Column("error", Text, nullable=True),
)
Index("ix_raw_events_entry", raw_events.c.entry_id)
Index("ix_raw_events_unprocessed", raw_events.c.processed_at, raw_events.c.id)
# Only the quarantined rows: a full index on quarantined_at (NULL in almost every row) would tempt
# SQLite's planner to walk it for the processor's "unprocessed and not quarantined" query (migration 0006).
_QUARANTINED = raw_events.c.quarantined_at.is_not(None)
Index(
    "ix_raw_events_quarantined",
    raw_events.c.quarantined_at,
    sqlite_where=_QUARANTINED,
    postgresql_where=_QUARANTINED,
)

calls = Table(
    "calls",
    metadata,
    Column("entry_id", String(160), primary_key=True),
    Column("direction", String(16), nullable=False, default="unknown"),
    Column("status", String(16), nullable=False),  # ringing | answered | ended | missed | unknown
    Column("customer_number", String(128), nullable=True),
    Column("line_number", String(128), nullable=True),
    Column("answered_by", String(32), nullable=True),
    Column("responsible", String(32), nullable=True),
    Column("extensions", Text, nullable=False, default="[]"),  # JSON list
    Column("missed", Boolean, nullable=False, default=False),
    Column("closed", Boolean, nullable=False, default=False),
    # closed by callbridge's timeout (tracker.max_call_seconds) before the PBX told the end
    Column("incomplete", Boolean, nullable=False, default=False, server_default="0"),
    Column("started_at", Float, nullable=True),
    Column("answered_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("duration", Integer, nullable=True),
    Column("talk_seconds", Integer, nullable=True),
    Column("wait_seconds", Integer, nullable=True),
    Column("disconnect_reason", Integer, nullable=True),
    Column("command_id", String(160), nullable=True),
    Column("emitted", Text, nullable=False, default="[]"),  # JSON list of CallEvent keys already emitted
    Column("last_event_at", Float, nullable=True),  # receive time of the newest raw event of the call
    Column("updated_at", Float, nullable=False),
)
Index("ix_calls_started", calls.c.started_at)
Index("ix_calls_open", calls.c.closed, calls.c.last_event_at)
Index("ix_calls_customer", calls.c.customer_number)

legs = Table(
    "legs",
    metadata,
    Column("call_id", String(160), primary_key=True),
    Column("entry_id", String(160), nullable=False),
    Column("state", String(16), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("location", String(32), nullable=True),
    Column("from_extension", String(32), nullable=True),
    Column("from_number", String(128), nullable=True),
    Column("to_extension", String(32), nullable=True),
    Column("to_number", String(128), nullable=True),
    Column("acd_group", String(32), nullable=True),
    Column("taken_from_call_id", String(160), nullable=True),
    Column("disconnect_reason", Integer, nullable=True),
    Column("command_id", String(160), nullable=True),
    Column("appeared_at", Float, nullable=True),
    Column("connected_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("transferred_from", String(32), nullable=True),  # a transfer: the employee it came from
    Column("transfer_kind", String(16), nullable=True),  # blind | consultative
)
Index("ix_legs_entry", legs.c.entry_id)
Index("ix_legs_command", legs.c.command_id)  # the calls a PBX command caused (migration 0007)

recordings = Table(
    "recordings",
    metadata,
    Column("recording_id", String(160), primary_key=True),
    Column("entry_id", String(160), nullable=False),
    Column("call_id", String(160), nullable=True),
    Column("extension", String(32), nullable=True),
    Column("state", String(16), nullable=True),
    Column("completion_code", Integer, nullable=True),
    Column("ready", Boolean, nullable=False, default=False),
    Column("updated_at", Float, nullable=False),
)
Index("ix_recordings_entry", recordings.c.entry_id)

employees = Table(
    "employees",
    metadata,
    Column("extension", String(32), primary_key=True),
    Column("name", String(255), nullable=True),
    Column("email", String(255), nullable=True),
    Column("department", String(255), nullable=True),
    Column("position", String(255), nullable=True),
    Column("mango_user_id", String(64), nullable=True),
    Column("numbers", Text, nullable=False, default="[]"),  # JSON list
    Column("updated_at", Float, nullable=False),
    # Where the row comes from (`mango`, `ldap`), whether the person still works here (a directory sync
    # deactivates, never deletes), their directory entry and the values the directory last gave.
    Column("source", String(16), nullable=False, server_default="mango"),
    Column("active", Boolean, nullable=False, server_default=true()),
    Column("directory_dn", String(1024), nullable=True),
    Column("directory_values", Text, nullable=True),  # JSON object
)

# Each directory (LDAP) sync: when, how it went and what it changed (the panel's Employees page).
directory_syncs = Table(
    "directory_syncs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Column("trigger", String(16), nullable=False),  # schedule | panel | cli
    Column("state", String(12), nullable=False),  # running | done | failed
    Column("created", Integer, nullable=False, default=0),
    Column("updated", Integer, nullable=False, default=0),
    Column("deactivated", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("connector", String(64), nullable=False),
    Column("entry_id", String(160), nullable=False),
    Column("event_type", String(40), nullable=False),
    Column("idempotency_key", String(400), nullable=False),
    Column("payload", Text, nullable=False),  # CallEvent.to_dict() as JSON
    Column("status", String(12), nullable=False, default="pending"),  # pending | done | dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("claimed_until", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float, nullable=True),
    UniqueConstraint("idempotency_key", name="uq_outbox_idempotency_key"),
)
Index("ix_outbox_due", outbox.c.status, outbox.c.next_attempt_at)
Index("ix_outbox_call", outbox.c.connector, outbox.c.entry_id, outbox.c.id)
# The dispatcher looks for fresh caller-card rows to claim ahead of the backlog (migration 0003).
Index("ix_outbox_urgent", outbox.c.connector, outbox.c.status, outbox.c.event_type, outbox.c.created_at)

connector_refs = Table(
    "connector_refs",
    metadata,
    Column("connector", String(64), primary_key=True),
    Column("entry_id", String(160), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

commands = Table(
    "commands",
    metadata,
    Column("command_id", String(160), primary_key=True),
    Column("path", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),  # see bridge.commands.journal (sending ... timed_out)
    Column("sync_result", Integer, nullable=True),
    Column("async_result", Integer, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)
# The journal's timeout sweep: commands still waiting for their result, oldest first (migration 0008).
Index("ix_commands_waiting", commands.c.status, commands.c.updated_at)

connector_state = Table(
    "connector_state",
    metadata,
    Column("connector", String(64), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# The settings saved in the panel, one row per dotted key (`bridge.settings_store`; migration 0007).
admin_settings = Table(
    "admin_settings",
    metadata,
    Column("key", String(64), primary_key=True),  # "mango.api_key", "admin.softphone", ...
    Column("value", Text, nullable=False),  # JSON
    Column("updated_at", Float, nullable=False),
)

# The history-import jobs (`bridge.history.jobs`; migration `h001`).
history_imports = Table(
    "history_imports",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # queued | requesting | waiting | importing | done | failed
    Column("state", String(16), nullable=False),
    Column("date_from", String(10), nullable=False),  # YYYY-MM-DD, first day imported
    Column("date_to", String(10), nullable=False),  # YYYY-MM-DD, last day imported (inclusive)
    Column("timezone", String(64), nullable=False),  # the days are days in this zone
    Column("chunks_total", Integer, nullable=False, default=0),
    Column("chunks_done", Integer, nullable=False, default=0),
    Column("rows_seen", Integer, nullable=False, default=0),  # report rows (one per call leg)
    Column("calls_imported", Integer, nullable=False, default=0),  # new calls written
    Column("calls_skipped", Integer, nullable=False, default=0),  # calls already in the store
    Column("error", Text, nullable=True),  # why it failed, in plain words
    Column("started_by", String(64), nullable=True),  # panel user name, or "cli"
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("updated_at", Float, nullable=False),  # also the heartbeat of a running import
)
Index("ix_history_imports_state", history_imports.c.state, history_imports.c.id)

# Where a call waiting in the IVR was put through, and why (`bridge.routing`; migration 0011): one row per
# call, claimed when its IVR leg appears, so a decision is made once.
call_routes = Table(
    "call_routes",
    metadata,
    Column("entry_id", String(160), primary_key=True),
    Column("ivr_call_id", String(160), nullable=False),
    Column("customer_number", String(128), nullable=True),
    # deciding | undecided | queued | sent | dropped | failed (see bridge.routing.outcomes)
    Column("outcome", String(16), nullable=False),
    Column("extension", String(32), nullable=True),  # the employee chosen
    Column("employee_name", String(255), nullable=True),
    Column("reason", String(24), nullable=True),  # familiar | crm_responsible
    Column("source", String(64), nullable=True),  # the connector that named the responsible
    Column("detail", Text, nullable=True),  # the decision (or why none) in plain words
    Column("command_id", String(160), nullable=True),  # the commands/route sent (the command journal)
    Column("decided_ms", Integer, nullable=True),  # how long the decision took
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)
Index("ix_call_routes_created", call_routes.c.created_at)

# Missed calls followed up (`bridge.followup`; migration 0012): who reached the customer, when and how.
missed_followups = Table(
    "missed_followups",
    metadata,
    Column("entry_id", String(160), primary_key=True),  # the missed call
    Column("by_entry_id", String(160), nullable=False),  # the later answered call
    Column("by_extension", String(32), nullable=True),
    Column("how", String(24), nullable=False),  # employee_called | customer_called
    Column("called_back_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)

# The add-ons' tables (the admin panel's, the widget's) join this metadata when their table modules are
# imported: by the add-ons' own code, or by `bridge.addons.load_addon_tables()` (the migrations do that).
