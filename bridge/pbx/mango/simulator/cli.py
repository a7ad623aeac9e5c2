"""`callbridge simulate`: play Mango calls into a running bridge, or run the fake Mango command API."""

from __future__ import annotations

import json
import random
import sys
from typing import Any

import click

from bridge.text_table import shorten, table


def _secret(value: Any) -> str:
    if value is None:
        return ""
    getter = getattr(value, "get_secret_value", None)
    return str(getter() if getter is not None else value)


def _config(ctx: click.Context) -> Any:
    """The daemon's settings when `callbridge` loaded them (ctx.obj.config), else None."""
    obj = ctx.obj
    if obj is None:
        return None
    try:
        return getattr(obj, "config", None)
    except Exception:  # no valid config: the options must then say everything
        return None


def _defaults(ctx: click.Context) -> tuple[str | None, str, str]:
    """(bridge_url, api_key, api_salt) from the config, where there is one."""
    config = _config(ctx)
    if config is None:
        return None, "", ""
    bridge_url = None
    http = getattr(config, "http", None)
    if http is not None and getattr(http, "port", None):
        host = str(getattr(http, "host", "") or "127.0.0.1")
        if host in ("0.0.0.0", "::", "[::]", ""):
            host = "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        bridge_url = f"http://{host}:{http.port}/mango"
    mango = getattr(config, "mango", None)
    return bridge_url, _secret(getattr(mango, "api_key", "")), _secret(getattr(mango, "api_salt", ""))


@click.command("simulate")
@click.argument("scenario_names", metavar="[SCENARIO]...", nargs=-1)
@click.option("--all", "play_all", is_flag=True, help="Play every scenario.")
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and exit.")
@click.option(
    "--bridge-url",
    envvar="CALLBRIDGE_SIMULATE_BRIDGE_URL",
    help="The bridge's Mango receiver, e.g. http://127.0.0.1:8080/mango (default: from the config).",
)
@click.option("--api-key", envvar="CALLBRIDGE_MANGO_API_KEY", help="vpbx_api_key (default: from the config).")
@click.option(
    "--api-salt", envvar="CALLBRIDGE_MANGO_API_SALT", help="vpbx_api_salt (default: from the config)."
)
@click.option("--count", default=1, show_default=True, type=click.IntRange(min=1), help="Calls per scenario.")
@click.option("--shuffle", is_flag=True, help="Deliver the events of the run in random order.")
@click.option(
    "--duplicate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Probability that an event is sent twice.",
)
@click.option(
    "--concurrency", default=1, show_default=True, type=click.IntRange(min=1), help="Sender threads."
)
@click.option("--rate", type=click.FloatRange(min=0.0, min_open=True), help="Cap on events per second.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the calls and the delivery.")
@click.option(
    "--fixed-ids",
    is_flag=True,
    help="Give the calls the same ids on every run (from --seed). By default each run has fresh ids, "
    "since the bridge ignores a call it has already seen.",
)
@click.option("--burst", type=click.IntRange(min=1), help="Play N events made of many generated calls.")
@click.option("--customer", default="79161234567", show_default=True, help="Caller number of the scenarios.")
@click.option("--timeout", default=10.0, show_default=True, type=float, help="Seconds per HTTP request.")
@click.option(
    "--report", "report_path", type=click.Path(dir_okay=False), help="Write every send as JSON here."
)
@click.option("-q", "--quiet", is_flag=True, help="Print the summary only.")
@click.option(
    "--serve-commands", is_flag=True, help="Run the fake Mango command API in the foreground until Ctrl-C."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Command API bind address.")
@click.option("--port", default=8090, show_default=True, type=int, help="Command API port (0 = any free).")
@click.option(
    "--pace",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0.0),
    help="Command API: real seconds per call second for the events it sends (0 = at once; 1 = real time).",
)
@click.option(
    "--ivr-wait",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0.0),
    help="Command API: seconds an ivr_then_route call waits in the IVR for commands/route.",
)
@click.pass_context
def simulate(
    ctx: click.Context,
    scenario_names: tuple[str, ...],
    play_all: bool,
    list_only: bool,
    bridge_url: str | None,
    api_key: str | None,
    api_salt: str | None,
    count: int,
    shuffle: bool,
    duplicate: float,
    concurrency: int,
    rate: float | None,
    seed: int,
    fixed_ids: bool,
    burst: int | None,
    customer: str,
    timeout: float,
    report_path: str | None,
    quiet: bool,
    serve_commands: bool,
    host: str,
    port: int,
    pace: float,
    ivr_wait: float,
) -> None:
    """Play Mango Office calls into the bridge, as Mango would send them.

    \b
    Examples:
      callbridge simulate incoming_answered
      callbridge simulate --all --count 3 --shuffle --duplicate 0.3
      callbridge simulate --burst 2000 --concurrency 8 --report burst.json
      callbridge simulate --serve-commands --port 8090   # then CALLBRIDGE_MANGO_API_URL=http://127.0.0.1:8090/vpbx/
    """
    from bridge.pbx.mango import scenarios

    if list_only:
        for name in scenarios.SCENARIO_NAMES:
            click.echo(name)
        return
    unknown = [n for n in scenario_names if n not in scenarios.SCENARIO_NAMES]
    if unknown:
        raise click.BadParameter(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(scenarios.SCENARIO_NAMES)}",
            param_hint="SCENARIO",
        )
    default_url, default_key, default_salt = _defaults(ctx)
    bridge_url = bridge_url or default_url
    api_key = api_key or default_key
    api_salt = api_salt or default_salt
    if not api_key or not api_salt:
        raise click.UsageError(
            "no Mango API key and salt: pass --api-key/--api-salt or set CALLBRIDGE_MANGO_API_KEY/_SALT"
        )
    names = list(scenarios.SCENARIO_NAMES) if play_all else list(scenario_names)
    run = "" if fixed_ids else scenarios.fresh_run()

    if serve_commands:
        _serve(bridge_url, api_key, api_salt, host, port, pace, seed, run, names, count, customer, quiet,
               ivr_wait)  # fmt: skip
        return
    if not bridge_url:
        raise click.UsageError("no bridge URL: pass --bridge-url (e.g. http://127.0.0.1:8080/mango)")
    if not names and not burst:
        raise click.UsageError("name a scenario, or pass --all or --burst N (see --list)")

    calls: list[tuple[str, Any]] = []
    for repeat in range(count):
        for i, name in enumerate(names):
            call_seed = seed * 1_000_003 + repeat * len(names) + i
            calls.append((name, scenarios.build(name, seed=call_seed, customer=customer, run=run)))
    if burst:
        from .generate import generate_calls

        calls.extend((s.name, s) for s in generate_calls(burst, seed=seed, run=run))
    _play(calls, bridge_url, api_key, api_salt, shuffle, duplicate, concurrency, rate, seed, timeout,
          report_path, quiet)  # fmt: skip


def _play(
    calls: list[tuple[str, Any]],
    bridge_url: str,
    api_key: str,
    api_salt: str,
    shuffle: bool,
    duplicate: float,
    concurrency: int,
    rate: float | None,
    seed: int,
    timeout: float,
    report_path: str | None,
    quiet: bool,
) -> None:
    from .poster import Poster

    notifications = []
    owner: list[int] = []  # notification index -> call index
    for call_index, (_, scenario) in enumerate(calls):
        notifications.extend(scenario.notifications)
        owner.extend([call_index] * len(scenario.notifications))
    if not quiet:
        click.echo(f"playing {len(calls)} call(s), {len(notifications)} event(s) into {bridge_url}")
    with Poster(bridge_url, api_key, api_salt, timeout=timeout) as poster:
        report = poster.play(
            notifications,
            shuffle=shuffle,
            duplicate=duplicate,
            concurrency=concurrency,
            rng=random.Random(seed),
            rate=rate,
        )
    per_call: dict[int, list[Any]] = {}
    for send in report.sends:
        per_call.setdefault(owner[send.index], []).append(send)
    if not quiet:
        rows = []
        for call_index, (name, scenario) in enumerate(calls):
            sends = per_call.get(call_index, [])
            failures = sorted({s.error for s in sends if s.error})
            acked = sum(1 for s in sends if s.acked)
            counts = [str(len(scenario.notifications)), str(len(sends)), str(acked)]
            rows.append([name, scenario.entry_id, *counts, shorten("; ".join(failures[:3]), 80)])
        click.echo(table(["scenario", "entry_id", "events", "sent", "acked", "errors"], rows))
    if report_path:
        with open(report_path, "w", encoding="utf-8") as fh:
            json.dump(report.to_dict(), fh, ensure_ascii=False, indent=1)
    click.echo(report.summary())
    if report.errors:
        sys.exit(1)


def _serve(
    bridge_url: str | None,
    api_key: str,
    api_salt: str,
    host: str,
    port: int,
    pace: float,
    seed: int,
    run: str,
    names: list[str],
    count: int,
    customer: str,
    quiet: bool,
    ivr_wait: float,
) -> None:
    from bridge.pbx.mango import scenarios

    from .command_server import CommandServer, ReceivedCommand

    def show(record: ReceivedCommand) -> None:
        if quiet:
            return
        answer = record.result if record.result is not None else f"HTTP {record.status}"
        body = json.dumps(record.json, ensure_ascii=False)[:160] if record.json is not None else ""
        click.echo(f"<- /vpbx/{record.path} {body} -> {answer}")

    server = CommandServer(
        api_key,
        api_salt,
        bridge_url=bridge_url,
        host=host,
        port=port,
        rng=random.Random(seed) if run == "" else random.Random(),  # fresh ids unless --fixed-ids
        pace=pace,
        on_command=show,
    )
    server.start()
    click.echo(f"Mango command API simulator on {server.url}")
    click.echo(f"  point the bridge at it: CALLBRIDGE_MANGO_API_URL={server.url}")
    click.echo(f"  results and events go to: {bridge_url or '(nowhere: pass --bridge-url)'}")
    for repeat in range(count):
        for i, name in enumerate(names):
            call_seed = seed * 1_000_003 + repeat * len(names) + i
            if name == "ivr_then_route":  # wait in the IVR: the bridge decides where the call goes
                call_id = server.ring_ivr(customer=customer, wait=ivr_wait, seed=call_seed, run=run)
                click.echo(f"-> {name}: call {call_id} waits {ivr_wait:g}s in the IVR for commands/route")
                continue
            scenario = scenarios.build(name, seed=call_seed, customer=customer, run=run)
            server.play(scenario.notifications)
            click.echo(f"-> played {name} entry={scenario.entry_id}")
    click.echo("Ctrl-C to stop")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
