"""`StateStore` over the `connector_state` table, with compare-and-set for rotating secrets."""

from __future__ import annotations

import time

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from bridge.store.schema import connector_state


class SqlStateStore:
    """One connector's durable key/value state; safe across threads, processes and instances."""

    def __init__(self, engine: Engine, connector: str) -> None:
        self._engine = engine
        self._connector = connector

    def get(self, key: str) -> tuple[str, int] | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(connector_state.c.value, connector_state.c.version).where(
                    connector_state.c.connector == self._connector, connector_state.c.key == key
                )
            ).first()
        return None if row is None else (row.value, row.version)

    def compare_and_set(self, key: str, value: str, expected_version: int | None) -> int | None:
        now = time.time()
        where = (connector_state.c.connector == self._connector) & (connector_state.c.key == key)
        try:
            with self._engine.begin() as conn:
                if expected_version is None:
                    conn.execute(
                        insert(connector_state).values(
                            connector=self._connector, key=key, value=value, version=1, updated_at=now
                        )
                    )
                    return 1
                result = conn.execute(
                    update(connector_state)
                    .where(where, connector_state.c.version == expected_version)
                    .values(value=value, version=expected_version + 1, updated_at=now)
                )
                return expected_version + 1 if result.rowcount == 1 else None
        except IntegrityError:
            return None
