"""Reading the shop's database: a read-only engine, and SQL built from the declarative mapping.

Every statement here is a SELECT built with SQLAlchemy Core from validated identifiers (no text is
pasted into SQL). Phone numbers are found in two steps: a coarse SQL filter (the digits of the stored
text contain the caller's last 10 digits) and an exact check in Python (`match_level`), so free text like
"8 (916) 123-45-67, доб. 12" matches while "…91612345670…" in some other number does not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import phonenumbers
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url

from bridge.connector_api.phones import MatchKeys, match_keys
from connectors.shop import phpdata
from connectors.shop.config import EntityMap, Ref, parse_ref

# ------------------------------------------------------------------------------------------ engine

SQLITE_DIGITS = "callbridge_digits"
_NON_DIGITS = re.compile(r"\D")


def _sqlite_digits(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return _NON_DIGITS.sub("", str(value))


def read_only_url(raw: str) -> URL:
    """The URL as given, except SQLite, which is opened as ``file:...?mode=ro`` (never created)."""
    url = make_url(raw)
    if url.get_backend_name() == "sqlite":
        path = url.database or ""
        if not path.startswith("file:"):
            path = f"file:{path}"
        if "mode=" not in path:
            path += ("&" if "?" in path else "?") + "mode=ro"
        url = url.set(database=path, query={**url.query, "uri": "true"})
    elif url.get_backend_name() == "mysql" and url.get_driver_name() in ("mysqldb", "pymysql", ""):
        url = url.update_query_dict({"charset": url.query.get("charset", "utf8mb4")})
    return url


def read_only_engine(raw_url: str, timeout: float = 5.0) -> Engine:
    """An engine whose every session is read-only on the database's side, not only by our good manners.

    * MariaDB/MySQL: ``SET SESSION TRANSACTION READ ONLY`` on each new connection (writes fail with
      "Cannot execute statement in a READ ONLY transaction"), plus a statement time limit;
    * PostgreSQL: ``default_transaction_read_only=on`` and ``statement_timeout`` as connection options;
    * SQLite: the file is opened with ``mode=ro`` and ``PRAGMA query_only``.
    """
    url = read_only_url(raw_url)
    backend = url.get_backend_name()
    connect_args: dict[str, Any] = {}
    millis = int(timeout * 1000)
    if backend == "postgresql":
        connect_args = {
            "connect_timeout": max(1, int(timeout)),
            "options": f"-c default_transaction_read_only=on -c statement_timeout={millis}",
        }
    elif backend == "mysql":
        connect_args = {"connect_timeout": max(1, int(timeout))}
        if url.get_driver_name() == "pymysql":
            connect_args |= {"read_timeout": max(1, int(timeout) * 2), "write_timeout": max(1, int(timeout))}
    elif backend == "sqlite":
        connect_args = {"timeout": timeout, "check_same_thread": False}
    try:
        engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True, pool_recycle=1800)
    except ModuleNotFoundError as exc:
        hint = {"mysql": "PyMySQL (pip install pymysql)", "postgresql": "psycopg (pip install psycopg)"}
        raise ValueError(
            f"database_url: the driver for {backend} is not installed: {exc.name}; "
            f"install {hint.get(backend, exc.name)}"
        ) from None

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_conn: Any, _record: Any) -> None:
        if backend == "sqlite":
            dbapi_conn.create_function(SQLITE_DIGITS, 1, _sqlite_digits, deterministic=True)
            dbapi_conn.execute("PRAGMA query_only = ON")
        elif backend == "mysql":
            cursor = dbapi_conn.cursor()
            try:
                cursor.execute("SET SESSION TRANSACTION READ ONLY")
                try:  # MariaDB's per-statement limit, in seconds; MySQL spells it differently
                    cursor.execute(f"SET SESSION max_statement_time = {float(timeout)}")
                except Exception:
                    cursor.execute(f"SET SESSION max_execution_time = {millis}")
            finally:
                cursor.close()

    return engine


def session_is_read_only(conn: sa.Connection) -> bool:
    """Ask the database whether this session refuses writes."""
    backend = conn.dialect.name
    if backend == "postgresql":
        return conn.execute(sa.text("SHOW transaction_read_only")).scalar() == "on"
    if backend in ("mysql", "mariadb"):
        for variable in ("@@session.transaction_read_only", "@@session.tx_read_only"):
            try:
                return bool(int(conn.execute(sa.text(f"SELECT {variable}")).scalar() or 0))
            except sa.exc.DBAPIError:
                continue
        return False
    if backend == "sqlite":
        return bool(conn.execute(sa.text("PRAGMA query_only")).scalar())
    return False


# ---------------------------------------------------------------------------------- phone matching

_CHUNK = re.compile(r"\+?\(?\d[\d\s().\-\u2010-\u2015]{4,}\d")
LEVELS = ("E.164", "national number", "last 10 digits")


def needle(keys: MatchKeys) -> str | None:
    """The digits searched for in the database: the last 10, or the whole national number if shorter."""
    if keys.national and len(keys.national) < 10:
        return keys.national
    return keys.last10 or keys.national


def match_level(text: Any, wanted: MatchKeys, region: str) -> int | None:
    """How well a stored value matches the caller: 0 = E.164, 1 = national number, 2 = last 10 digits.

    A value may hold several numbers in free text ("8 (916) 123-45-67, +7 495 111-22-33 (office)"):
    each number-looking run is compared on its own.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        text = phpdata.scalar_text(text) if not isinstance(text, bytes) else text.decode("utf-8", "replace")
        if text is None:
            return None
    best: int | None = None
    for chunk in _CHUNK.findall(text[:2000]):
        keys = match_keys(chunk, region)
        if wanted.e164 and keys.e164 == wanted.e164:
            return 0
        if wanted.national and keys.national == wanted.national:
            best = 1
        elif wanted.last10 and keys.last10 == wanted.last10:
            best = 2 if best is None else best
        elif (
            wanted.last10 and len(_NON_DIGITS.sub("", chunk)) > 15 and wanted.last10 in chunk.replace(" ", "")
        ):
            best = 2 if best is None else best  # numbers run together: "89161234567 89161112233"
    return best


def exact_forms(wanted: MatchKeys, region: str) -> list[str]:
    """The spellings searched by ``phone_match = "exact"`` (index-friendly equality)."""
    forms: list[str] = []
    if wanted.e164:
        parsed = phonenumbers.parse(wanted.e164)
        forms += [
            wanted.e164,
            wanted.e164.lstrip("+"),
            phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
            phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL),
            str(parsed.national_number),
        ]
        if parsed.country_code == 7:  # Russia and Kazakhstan write the trunk prefix 8
            forms.append("8" + str(parsed.national_number))
    elif wanted.last10:
        forms.append(wanted.last10)
    return list(dict.fromkeys(forms))


# ------------------------------------------------------------------------------------------- SQL


def spread_pattern(digits: str) -> str:
    """``%9%1%6%...%`` : matches every text whose digits contain `digits` (and some more)."""
    return "%" + "%".join(digits) + "%"


def digits_of(expr: Any, dialect: str) -> Any:
    """A SQL expression for the digits of `expr` (its text with everything else removed)."""
    text: Any = sa.cast(expr, sa.String)
    if dialect == "postgresql":
        return sa.func.regexp_replace(sa.cast(expr, sa.Text), "[^0-9]", "", "g")
    if dialect in ("mysql", "mariadb"):
        return sa.func.regexp_replace(text, "[^0-9]", "")
    if dialect == "sqlite":
        return getattr(sa.func, SQLITE_DIGITS)(expr)
    for sep in (" ", "-", "(", ")", "+", "."):
        text = sa.func.replace(text, sep, "")
    return text


@dataclass
class Selected:
    """One field of a SELECT: the reference and its label in the result rows."""

    ref: Ref
    label: str


class EntitySql:
    """SELECT statements over one mapped entity (customers or orders)."""

    def __init__(self, emap: EntityMap, schema: str | None, dialect: str) -> None:
        self.emap = emap
        self.dialect = dialect
        self.schema = schema
        refs = emap.refs()
        main_cols = {emap.id_column, *emap.where, *(c for j in emap.joins for c in j.on)}
        main_cols |= {r.column for r in refs if r.column and r.alias is None}
        self.main = sa.table(emap.table, *(sa.column(c) for c in sorted(main_cols)), schema=schema).alias("e")
        self.joined: dict[str, Any] = {}
        for j in emap.joins:
            cols = (
                set(j.on.values()) | set(j.where) | {r.column for r in refs if r.alias == j.name and r.column}
            )
            self.joined[j.name] = sa.table(
                j.table, *(sa.column(c) for c in sorted(cols)), schema=schema
            ).alias(f"j_{j.name}")
        self._meta_aliases: dict[str, Any] = {}

    @property
    def id(self) -> Any:
        return self.main.c[self.emap.id_column]

    def _meta_table(self, alias: str) -> Any:
        m = self.emap.meta
        assert m is not None
        return sa.table(
            m.table,
            sa.column(m.owner_column),
            sa.column(m.key_column),
            sa.column(m.value_column),
            schema=self.schema,
        ).alias(alias)

    def filters(self) -> list[Any]:
        out = []
        for column, value in self.emap.where.items():
            out.append(_equals(self.main.c[column], value))
        return out

    def base_from(self) -> Any:
        frm: Any = self.main
        for j in self.emap.joins:
            target = self.joined[j.name]
            conds = [self.main.c[left] == target.c[right] for left, right in j.on.items()]
            conds += [_equals(target.c[col], value) for col, value in j.where.items()]
            cond = sa.and_(*conds)
            frm = frm.outerjoin(target, cond)
        return frm

    def expr(self, ref: Ref, frm: Any) -> tuple[Any, Any]:
        """The SQL expression for `ref` and the FROM clause extended with the outer join it needs."""
        if ref.is_meta:
            m = self.emap.meta
            assert m is not None
            alias = self._meta_aliases.get(ref.meta_key or "")
            if alias is None:
                alias = self._meta_table(f"m{len(self._meta_aliases)}")
                self._meta_aliases[ref.meta_key or ""] = alias
                frm = frm.outerjoin(
                    alias, sa.and_(alias.c[m.owner_column] == self.id, alias.c[m.key_column] == ref.meta_key)
                )
            return alias.c[m.value_column], frm
        table = self.main if ref.alias is None else self.joined[ref.alias]
        assert ref.column is not None
        return table.c[ref.column], frm

    def select_fields(self, refs: Sequence[Ref]) -> tuple[Any, list[Selected]]:
        """SELECT id and every ref, with the outer joins they need (the WHERE is added by the caller)."""
        self._meta_aliases = {}
        frm = self.base_from()
        columns = [self.id.label("id")]
        selected: list[Selected] = []
        seen: dict[str, str] = {}
        for ref in refs:
            key = ref.meta_key if ref.is_meta else f"{ref.alias}.{ref.column}"
            key = f"{'meta' if ref.is_meta else 'col'}:{key}"
            if key not in seen:
                expr, frm = self.expr(ref, frm)
                seen[key] = f"f{len(seen)}"
                columns.append(expr.label(seen[key]))
            selected.append(Selected(ref, seen[key]))
        return sa.select(*columns).select_from(frm), selected

    def phone_candidates(self, ref: Ref, wanted: MatchKeys, region: str, mode: str, limit: int) -> Any:
        """SELECT id, value for rows whose `ref` field may hold the number (checked later in Python)."""
        self._meta_aliases = {}
        if ref.is_meta:  # inner join: only rows that have the key at all
            m = self.emap.meta
            assert m is not None
            alias = self._meta_table("mp")
            value = alias.c[m.value_column]
            frm = self.base_from().join(
                alias, sa.and_(alias.c[m.owner_column] == self.id, alias.c[m.key_column] == ref.meta_key)
            )
        else:
            frm = self.base_from()
            value, frm = self.expr(ref, frm)
        stmt = sa.select(self.id.label("id"), value.label("value")).select_from(frm).where(*self.filters())
        if mode == "exact" and ref.php_path is None:
            forms = exact_forms(wanted, region)
            if not forms:
                return None
            stmt = stmt.where(value.in_(forms))
        else:
            digits = needle(wanted)
            if not digits:
                return None
            # `digits` holds digits only: nothing to escape in the LIKE patterns. The first is a cheap
            # superset (the digits in order, anything between) that spares most rows the second,
            # exact one: the digits-normalising function costs microseconds per row, LIKE nanoseconds.
            stmt = stmt.where(
                sa.cast(value, sa.String).like(spread_pattern(digits)),
                digits_of(value, self.dialect).like(f"%{digits}%"),
            )
        # No ORDER BY: it makes MariaDB walk the entity's primary key instead of the meta_key index
        # (measured 3-4x slower with 20,000 customers). Beyond `limit` rows, which ones come back is
        # the database's choice.
        return stmt.limit(limit)


def _equals(column: Any, value: Any) -> Any:
    return column.in_(value) if isinstance(value, list) else column == value


def decode(ref: Ref, raw: Any) -> Any:
    """A fetched cell as the value the reference means (PHP-decoded and picked when it says ``|php:``)."""
    if raw is None:
        return None
    if ref.php_path is not None:
        data = phpdata.loads(raw)
        return phpdata.pick(data, ref.php_path) if ref.php_path else data
    if isinstance(raw, bytes | bytearray | memoryview):
        return bytes(raw).decode("utf-8", "replace")
    return raw


def refs_of(texts: Iterable[str | None]) -> list[Ref]:
    return [parse_ref(t) for t in texts if t]
