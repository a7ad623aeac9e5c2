"""Mango's roles in the store: revision a003 renames the stored `manager` role `employee` (and back on a
downgrade); the old name is still accepted when a user is created."""

from __future__ import annotations

import time

from sqlalchemy import select, text

from admin_module.roles import ROLES, can
from admin_module.tables import admin_users
from admin_module.users import create_user, get_user_by_name
from bridge.store.engine import make_engine
from bridge.store.migrate import upgrade


def test_stored_managers_become_employees(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/roles.db")
    try:
        upgrade(engine, "a002")
        now = time.time()
        with engine.begin() as conn:  # the table as a002 left it: plain SQL, not today's table
            for name, role in (("ivan", "manager"), ("anna", "admin"), ("buh", "accountant")):
                conn.execute(
                    text(
                        "INSERT INTO admin_users (username, password_hash, role, lang, created_at,"
                        " updated_at) VALUES (:name, 'x', :role, 'ru', :now, :now)"
                    ),
                    {"name": name, "role": role, "now": now},
                )
        upgrade(engine)
        with engine.connect() as conn:
            rows = dict(conn.execute(select(admin_users.c.username, admin_users.c.role)).all())
            sources = set(conn.execute(select(admin_users.c.source)).scalars())
        assert rows == {"ivan": "employee", "anna": "admin", "buh": "accountant"}
        assert sources == {"local"}
    finally:
        engine.dispose()


def test_the_old_name_is_accepted(engine: object) -> None:
    create_user(engine, "olga", "correct horse battery", "manager")  # type: ignore[arg-type]
    user = get_user_by_name(engine, "olga")  # type: ignore[arg-type]
    assert user is not None and user.role == "employee"
    assert set(ROLES) == {"admin", "employee", "team_leader", "marketer", "accountant"}
    assert can("manager", "recordings") and not can("marketer", "recordings")
    assert can("marketer", "widget") and not can("marketer", "settings") and not can("marketer", "view_calls")
    assert can("team_leader", "team_calls") and not can("employee", "team_calls")
