"""Alembic environment: uses the engine handed over by `bridge.store.migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from bridge.addons import load_addon_tables
from bridge.store.schema import metadata

load_addon_tables()  # the add-ons' tables join `metadata`, so Alembic sees every table
config = context.config
engine = config.attributes.get("engine") or create_engine(config.get_main_option("sqlalchemy.url"))

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
