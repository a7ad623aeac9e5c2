"""Import employees from Mango's `config/users/request` into the core's `employees` table."""

from __future__ import annotations

import json
import time

from sqlalchemy import Engine, insert, update

from bridge.pbx.mango.client import MangoClient
from bridge.store.schema import employees


def import_employees(engine: Engine, client: MangoClient) -> int:
    """Upsert every employee that has an extension; returns how many."""
    users = [u for u in client.users() if u.extension]
    now = time.time()
    with engine.begin() as conn:
        for user in users:
            values = {
                "name": user.name,
                "email": user.email,
                "department": user.department,
                "position": user.position,
                "mango_user_id": user.user_id,
                "numbers": json.dumps([n.number for n in user.numbers]),
                "updated_at": now,
            }
            done = conn.execute(
                update(employees).where(employees.c.extension == user.extension).values(**values)
            ).rowcount
            if not done:
                conn.execute(insert(employees).values(extension=user.extension, **values))
    return len(users)
