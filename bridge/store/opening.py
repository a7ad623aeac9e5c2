"""Opening the store at start: the engine and its migrations, with failures said in one plain line.

A database URL that cannot work (a driver that is not installed, a server that does not answer, a file in a
folder that cannot be written, not a URL at all) stops `callbridge run` and every command with a sentence
that names the database (its password hidden) and what to do, never a traceback.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from bridge.store.engine import make_engine
from bridge.store.errors import describe
from bridge.store.migrate import upgrade

# Drivers SQLAlchemy picks for a URL without one, and what to write instead.
_DRIVER_HINTS = {
    "psycopg2": "callbridge ships psycopg 3: write the URL as postgresql+psycopg://...",
    "pymysql": "callbridge stores calls in SQLite or PostgreSQL, not MySQL",
    "MySQLdb": "callbridge stores calls in SQLite or PostgreSQL, not MySQL",
}


class StoreUnavailable(Exception):
    """The store cannot be opened; the message says why in one line."""


def open_store(url: str) -> Engine:
    """The engine for `url`, migrated to the current schema; `StoreUnavailable` when that cannot be."""
    where = _shown(url)
    try:
        engine = make_engine(url)
        upgrade(engine)
    except ModuleNotFoundError as exc:
        hint = _DRIVER_HINTS.get(exc.name or "", f"install it with pip install {exc.name}")
        raise StoreUnavailable(f"database {where}: its driver {exc.name} is not installed ({hint})") from None
    except NoSuchModuleError:
        raise StoreUnavailable(
            f"database {where}: not a kind of database callbridge knows; use sqlite:///FILE or "
            "postgresql+psycopg://USER:PASSWORD@HOST/DATABASE"
        ) from None
    except ArgumentError:
        raise StoreUnavailable(
            f"database.url {where!s} is not a database URL; use sqlite:///FILE or "
            "postgresql+psycopg://USER:PASSWORD@HOST/DATABASE"
        ) from None
    except (DBAPIError, OSError) as exc:
        raise StoreUnavailable(f"cannot open the database {where}: {describe(exc)}") from None
    return engine


def _shown(url: str) -> str:
    """The URL with its password hidden (or a placeholder when it is not a URL)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url[:80])
