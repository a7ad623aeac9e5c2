"""Directory sync benchmark (docs/benchmarks.md, "Directory sync"): 5,000 entries from a real OpenLDAP
slapd (the tests' fixture, tests/ldap_server.py: own configuration, self-signed CA, LDAPS) into a fresh
store. Measured: the first sync (every employee created), a second sync with no change (nothing may be
written: no row created, updated or deactivated, `updated_at` untouched), and a sync after 100 changes and
50 removals. Each time is split into reading the directory (paged LDAPS search) and writing the store.

    .venv/bin/python bench/ldap_sync.py [--entries 5000] [--database sqlite|postgresql+psycopg://...]

Prints a table; the same as JSON in bench/results/ldap_sync-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.config.model import LdapSettings  # noqa: E402
from bridge.ldap.sync import read_directory, sync_employees  # noqa: E402
from bridge.store.engine import make_engine  # noqa: E402
from bridge.store.migrate import upgrade  # noqa: E402
from bridge.store.schema import employees  # noqa: E402
from tests.ldap_server import MISSING, PEOPLE, SERVICE_DN, SERVICE_PASSWORD, LdapServer  # noqa: E402


def _populate(server: LdapServer, count: int) -> list[str]:
    dns = []
    with server.admin() as conn:
        for i in range(count):
            dns.append(
                server.add_person(
                    f"u{i:05d}",
                    name=f"Employee {i:05d}",
                    extension=str(10000 + i),
                    email=f"u{i:05d}@example.com",
                    department=f"Dept {i % 40}",
                    position="Operator",
                    conn=conn,
                )
            )
    return dns


def _timed_sync(engine: object, settings: LdapSettings) -> dict[str, float | int]:
    started = time.perf_counter()
    people = read_directory(settings)
    read = time.perf_counter() - started
    result = sync_employees(engine, people, keep_local=settings.keep_local)  # type: ignore[arg-type]
    total = time.perf_counter() - started
    return {
        "entries": len(people),
        "read_s": round(read, 3),
        "write_s": round(total - read, 3),
        "total_s": round(total, 3),
        "created": len(result.created),
        "updated": len(result.updated),
        "deactivated": len(result.deactivated),
        "unchanged": result.unchanged,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--database", default="sqlite")
    args = parser.parse_args()
    if MISSING:
        sys.exit(MISSING)
    folder = Path(tempfile.mkdtemp(prefix="ldap-bench-"))
    url = f"sqlite:///{folder / 'callbridge.db'}" if args.database == "sqlite" else args.database
    engine = make_engine(url)
    upgrade(engine)
    server = LdapServer().start()
    try:
        started = time.perf_counter()
        dns = _populate(server, args.entries)
        populate_s = time.perf_counter() - started
        settings = LdapSettings(
            url=server.ldaps_url,
            ca_file=server.ca_file,
            bind_dn=SERVICE_DN,
            password=SERVICE_PASSWORD,  # type: ignore[arg-type]
            base_dn=PEOPLE,
            filter="(objectClass=inetOrgPerson)",
            fields={
                "extension": "telephoneNumber",
                "name": "displayName",
                "email": "mail",
                "department": "departmentNumber",
                "position": "title",
            },
        )
        runs = {"first": _timed_sync(engine, settings)}
        with engine.connect() as conn:
            stamp = conn.execute(select(func.max(employees.c.updated_at), func.count())).one()
        runs["no_change"] = _timed_sync(engine, settings)
        with engine.connect() as conn:
            after = conn.execute(select(func.max(employees.c.updated_at), func.count())).one()
        untouched = tuple(stamp) == tuple(after)
        for dn in dns[:100]:
            server.modify(dn, title="Senior operator")
        for dn in dns[-50:]:
            server.delete(dn)
        runs["changes"] = _timed_sync(engine, settings)
    finally:
        server.stop()
        engine.dispose()
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "store": engine.dialect.name,
        "entries": args.entries,
        "populate_s": round(populate_s, 1),
        "no_change_wrote_nothing": untouched and runs["no_change"]["unchanged"] == args.entries,
        "runs": runs,
    }
    print(f"{args.entries} entries in slapd (LDAPS, pages of {settings.page_size}); store: {report['store']}")
    print(
        f"{'sync':<10} {'read s':>8} {'write s':>8} {'total s':>8} {'created':>8} {'updated':>8} "
        f"{'deact.':>8} {'unchanged':>9}"
    )
    for name, run in runs.items():
        print(
            f"{name:<10} {run['read_s']:>8} {run['write_s']:>8} {run['total_s']:>8} {run['created']:>8} "
            f"{run['updated']:>8} {run['deactivated']:>8} {run['unchanged']:>9}"
        )
    print(f"second sync wrote nothing: {report['no_change_wrote_nothing']}")
    out = Path(__file__).parent / "results" / f"ldap_sync-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
