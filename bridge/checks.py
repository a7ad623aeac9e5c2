"""`callbridge check`: test the Mango credentials and every configured connector, in plain words."""

from __future__ import annotations

from dataclasses import dataclass

import click

from bridge.config import Settings
from bridge.connector_api import DeliveryError
from bridge.connectors_runtime import active, load_connectors, mango_client
from bridge.pbx.port import PbxError
from bridge.registry import ConnectorConfigError


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    message: str


def check_mango(settings: Settings) -> CheckResult:
    if not settings.mango.api_key or not settings.mango.api_salt.get_secret_value():
        return CheckResult("mango", False, "no API key and salt configured (CALLBRIDGE_MANGO_API_KEY, _SALT)")
    try:
        return CheckResult("mango", True, mango_client(settings).check())
    except PbxError as exc:
        return CheckResult("mango", False, str(exc))


def check_connectors(settings: Settings, engine: object) -> list[CheckResult]:
    try:
        connectors = load_connectors(settings, engine)  # type: ignore[arg-type]
    except ConnectorConfigError as exc:
        return [CheckResult(exc.connector, False, str(exc))]
    results = []
    for name, connector in active(connectors).items():  # connectors not enabled are not checked
        try:
            results.append(CheckResult(name, True, connector.check()))
        except DeliveryError as exc:
            results.append(CheckResult(name, False, str(exc)))
        except Exception as exc:  # a connector's unexpected failure is reported, not raised
            results.append(CheckResult(name, False, f"unexpected {type(exc).__name__}: {exc}"))
    return results


@click.command("check")
@click.option("--skip-mango", is_flag=True, help="Do not call Mango (e.g. when testing connectors only).")
@click.pass_obj
def check(obj: object, skip_mango: bool) -> None:
    """Test the Mango credentials and each configured connector's, and report in plain words."""
    settings: Settings = obj.config  # type: ignore[attr-defined]
    results = [] if skip_mango else [check_mango(settings)]
    results += check_connectors(settings, obj.engine)  # type: ignore[attr-defined]
    if not results:
        click.echo("nothing to check: no Mango credentials and no connectors configured")
    for result in results:
        mark = "ok  " if result.ok else "FAIL"
        click.echo(f"{mark} {result.name}: {result.message}")
    if any(not r.ok for r in results):
        raise SystemExit(1)
