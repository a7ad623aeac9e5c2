"""The history-import job table; it shares the core's metadata (migration `h001`)."""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, String, Table, Text

from bridge.store.schema import Id, metadata

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
