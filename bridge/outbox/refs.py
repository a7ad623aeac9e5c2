"""`RefStore` over the `connector_refs` table: vendor ids a connector keeps per call."""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from bridge.store.schema import connector_refs

__all__ = ["SqlRefStore"]


class SqlRefStore:
    """The references of one connector, keyed by (entry_id, key). `put` upserts; each call commits at once.

    Writes are committed immediately, outside any outbox transaction: a vendor id obtained from a call that
    succeeded must survive even if marking the delivery done fails afterwards, so the redelivery finds it.
    """

    def __init__(
        self, engine: sa.Engine, connector_name: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine = engine
        self.connector_name = connector_name
        self._clock = clock

    def get(self, entry_id: str, key: str) -> str | None:
        stmt = sa.select(connector_refs.c.value).where(
            connector_refs.c.connector == self.connector_name,
            connector_refs.c.entry_id == entry_id,
            connector_refs.c.key == key,
        )
        with self.engine.connect() as conn:
            return conn.execute(stmt).scalar_one_or_none()

    def put(self, entry_id: str, key: str, value: str) -> None:
        row = {
            "connector": self.connector_name,
            "entry_id": entry_id,
            "key": key,
            "value": value,
            "updated_at": self._clock(),
        }
        pk = [connector_refs.c.connector, connector_refs.c.entry_id, connector_refs.c.key]
        with self.engine.begin() as conn:
            dialect = conn.dialect.name
            if dialect == "postgresql":
                pg_stmt = postgresql.insert(connector_refs).values(row)
                conn.execute(
                    pg_stmt.on_conflict_do_update(
                        index_elements=pk,
                        set_={"value": pg_stmt.excluded.value, "updated_at": pg_stmt.excluded.updated_at},
                    )
                )
                return
            if dialect == "sqlite":
                lite_stmt = sqlite.insert(connector_refs).values(row)
                conn.execute(
                    lite_stmt.on_conflict_do_update(
                        index_elements=pk,
                        set_={"value": lite_stmt.excluded.value, "updated_at": lite_stmt.excluded.updated_at},
                    )
                )
                return
            updated = conn.execute(
                sa.update(connector_refs)
                .where(*(col == row[col.name] for col in pk))
                .values(value=value, updated_at=row["updated_at"])
            ).rowcount
            if not updated:
                conn.execute(sa.insert(connector_refs).values(row))

    def items(self, entry_id: str) -> dict[str, str]:
        """Every reference kept for one call (for the admin panel and debugging)."""
        stmt = sa.select(connector_refs.c.key, connector_refs.c.value).where(
            connector_refs.c.connector == self.connector_name, connector_refs.c.entry_id == entry_id
        )
        with self.engine.connect() as conn:
            return {key: value for key, value in conn.execute(stmt)}
