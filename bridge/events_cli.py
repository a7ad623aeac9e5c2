"""`callbridge events ...`: the raw events the processor set aside (quarantined), and putting one back."""

from __future__ import annotations

import time

import click
import sqlalchemy as sa

from bridge.store.raw_events import list_quarantined, quarantine_state, release_quarantined
from bridge.text_table import shorten, table, when

__all__ = ["events"]


def _engine(ctx: click.Context) -> sa.Engine:
    engine = getattr(ctx.obj, "engine", None)
    if not isinstance(engine, sa.Engine):
        raise click.UsageError("no database configured (the command needs ctx.obj.engine)")
    return engine


@click.group("events")
def events() -> None:
    """Raw PBX events: the ones that could not be folded into calls."""


@events.command("quarantined")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.pass_context
def quarantined_command(ctx: click.Context, limit: int) -> None:
    """List quarantined events, newest first, with the reason each could not be folded."""
    rows = list_quarantined(_engine(ctx), limit=limit)
    if not rows:
        click.echo("No quarantined events.")
        return
    cells = [
        [str(r.id), r.path, shorten(r.entry_id, 28) or "-", when(r.received_at), shorten(r.error, 90)]
        for r in rows
    ]
    click.echo(table(["ID", "PATH", "ENTRY_ID", "RECEIVED (UTC)", "ERROR"], cells))
    noun = "event" if len(rows) == 1 else "events"
    click.echo(f"\n{len(rows)} quarantined {noun}; `callbridge events retry ID` folds one again.")


@events.command("retry")
@click.argument("event_id", metavar="ID", type=int)
@click.option(
    "--wait",
    type=click.FloatRange(0, 600),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the daemon to fold it (0: do not wait).",
)
@click.pass_context
def retry_command(ctx: click.Context, event_id: int, wait: float) -> None:
    """Put quarantined event ID back to be folded again, and say how that went."""
    engine = _engine(ctx)
    state = quarantine_state(engine, event_id)
    if state is None:
        raise click.ClickException(f"there is no raw event {event_id}")
    if state[0] != "quarantined":
        raise click.ClickException(f"raw event {event_id} is not quarantined (it is {state[0]})")
    if not release_quarantined(engine, event_id):
        raise click.ClickException(f"raw event {event_id} is no longer quarantined")
    deadline = time.monotonic() + wait
    while True:
        state = quarantine_state(engine, event_id)
        if state is not None and state[0] == "processed":
            click.echo(f"Raw event {event_id} was folded into its call.")
            return
        if state is not None and state[0] == "quarantined":
            raise click.ClickException(f"raw event {event_id} could not be folded again: {state[1]}")
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    click.echo(f"Raw event {event_id} is queued to be folded again; a running daemon folds it shortly.")
