"""`callbridge deliveries ...`: look at the outbox and replay dead deliveries.

The group takes the engine from the click context (``ctx.obj.engine``), which the main CLI sets up.
"""

from __future__ import annotations

import time
from typing import Any

import click
import sqlalchemy as sa

from bridge.outbox.queries import STATUSES, DeliveryRow, counts, list_deliveries, retry_deliveries
from bridge.text_table import shorten as _shorten
from bridge.text_table import table as _table
from bridge.text_table import when as _when

__all__ = ["deliveries"]


def _engine(ctx: click.Context) -> sa.Engine:
    engine = getattr(ctx.obj, "engine", None)
    if not isinstance(engine, sa.Engine):
        raise click.UsageError("no database configured (the command needs ctx.obj.engine)")
    return engine


def _row_cells(row: DeliveryRow) -> list[str]:
    if row.status == "done":
        when = _when(row.delivered_at)
    elif row.status == "pending":
        when = _when(row.next_attempt_at)
    else:
        when = "-"
    return [
        str(row.id),
        row.connector,
        _shorten(row.entry_id, 24),
        row.event_type,
        row.status,
        str(row.attempts),
        when,
        _shorten(row.last_error, 60),
    ]


@click.group("deliveries")
def deliveries() -> None:
    """Outbox deliveries to connectors: list them, replay dead ones."""


@deliveries.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only rows with this status.")
@click.option("--connector", help="Only rows for this connector (e.g. webhook).")
@click.option("--call", "entry_id", help="Only rows of this call (Mango entry_id).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.pass_context
def list_command(
    ctx: click.Context, status: str | None, connector: str | None, entry_id: str | None, limit: int
) -> None:
    """List deliveries, newest first. WHEN is the delivery time (done) or the next attempt (pending)."""
    engine = _engine(ctx)
    rows = list_deliveries(engine, status=status, connector=connector, entry_id=entry_id, limit=limit)
    if not rows:
        click.echo("No deliveries match.")
    else:
        headers = ["ID", "CONNECTOR", "CALL", "TYPE", "STATUS", "ATTEMPTS", "WHEN (UTC)", "LAST ERROR"]
        click.echo(_table(headers, [_row_cells(r) for r in rows]))
    totals: dict[str, Any] = counts(engine)
    click.echo(
        f"\nIn the outbox: {totals['pending']} pending ({totals['due']} due), "
        f"{totals['done']} done, {totals['dead']} dead."
    )


@deliveries.command("retry")
@click.option("--id", "ids", type=int, multiple=True, help="A dead delivery to replay (repeatable).")
@click.option("--all-dead", is_flag=True, help="Replay every dead delivery (of --connector, if given).")
@click.option("--connector", help="Only deliveries for this connector.")
@click.pass_context
def retry_command(ctx: click.Context, ids: tuple[int, ...], all_dead: bool, connector: str | None) -> None:
    """Put dead deliveries back in the queue with a fresh retry budget."""
    if not ids and not all_dead:
        raise click.UsageError("say which deliveries: --id N (repeatable) or --all-dead")
    if ids and all_dead:
        raise click.UsageError("use either --id or --all-dead, not both")
    engine = _engine(ctx)
    n = retry_deliveries(engine, ids=list(ids) if ids else None, connector=connector, now=time.time())
    if n == 0:
        click.echo("No dead deliveries matched; nothing was requeued.")
    else:
        noun = "delivery" if n == 1 else "deliveries"
        click.echo(f"Requeued {n} dead {noun}; the dispatcher will send them shortly.")
    if ids and n < len(set(ids)):
        click.echo("Some ids were not dead (or do not exist) and were left alone.", err=True)
