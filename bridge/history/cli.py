"""`callbridge import-history --from YYYY-MM-DD --to YYYY-MM-DD`: import Mango's call history now."""

from __future__ import annotations

from datetime import date
from typing import Any

import click

from bridge.history import jobs
from bridge.history.importer import HistoryImporter
from bridge.history.periods import CHUNK_DAYS, PeriodError, check_period, parse_day, split, zone
from bridge.history.runner import effective_client_factory
from bridge.settings_store import SettingsStore


def _day(value: str, name: str) -> date:
    try:
        return parse_day(value, name)
    except PeriodError as exc:
        raise click.BadParameter(str(exc).removeprefix(f"{name}: "), param_hint=name) from None


@click.command("import-history")
@click.option("--from", "date_from", required=True, metavar="YYYY-MM-DD", help="The first day to import.")
@click.option(
    "--to", "date_to", required=True, metavar="YYYY-MM-DD", help="The last day to import (included)."
)
@click.option(
    "--timezone",
    "tz_name",
    default=None,
    help="The days are days in this time zone (default: the panel's time zone, Europe/Moscow).",
)
@click.pass_obj
def import_history(obj: Any, date_from: str, date_to: str, tz_name: str | None) -> None:
    """Import the call history of a period from Mango (stats/request) into the call log.

    Calls already in the store are kept as they are, so running it again is safe. Imported calls are
    not sent to the CRMs.
    """
    first, last = _day(date_from, "--from"), _day(date_to, "--to")
    engine = obj.engine
    saved = SettingsStore(engine, obj.config)
    tz_name = tz_name or saved.panel().timezone
    try:
        tz = zone(tz_name)
        check_period(first, last, tz)
    except PeriodError as exc:
        raise click.UsageError(str(exc)) from None
    total = len(split(first, last, tz, CHUNK_DAYS))
    stale_after = obj.config.history.stale_seconds
    for stopped in jobs.take_over_stale(engine, stale_after=stale_after):
        click.echo(f"job #{stopped.id} ({stopped.date_from}..{stopped.date_to}) failed: {stopped.error}")
    try:
        job = jobs.start_now(engine, first, last, tz_name, "cli", stale_after=stale_after)
    except jobs.JobConflict as exc:
        raise click.ClickException(str(exc)) from None

    with click.progressbar(length=total, label=f"importing {first}..{last}", show_pos=True) as bar:
        shown = 0

        def advance(current: jobs.Job) -> None:
            nonlocal shown
            if current.chunks_done > shown:
                bar.update(current.chunks_done - shown)
                shown = current.chunks_done

        importer = HistoryImporter(
            engine,
            effective_client_factory(obj.config, engine, saved),
            on_progress=advance,
            heartbeat_every=jobs.heartbeat_every(stale_after),
        )
        final = importer.run(job)
    summary = (
        f"job #{final.id} {final.state}: {final.date_from}..{final.date_to} ({final.timezone}), "
        f"{final.rows_seen} report rows, {final.calls_imported} calls imported, "
        f"{final.calls_skipped} already known"
    )
    if final.state != jobs.DONE:
        raise click.ClickException(f"{summary}. {final.error}")
    click.echo(summary)
