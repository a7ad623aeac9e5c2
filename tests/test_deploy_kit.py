"""The deployment kit in deploy/: the systemd unit passes `systemd-analyze verify`, the Caddyfile `caddy
validate` (and holds what it must either way), the image builds and its health check passes where a
container engine runs, and the compose file puts two instances on PostgreSQL and Redis behind one proxy.
The nginx site runs for real in tests/test_deploy_nginx.py. Where a tool is missing, the test says so."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.daemon import CALLBRIDGE

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "callbridge.service"
CADDYFILE = DEPLOY / "caddy" / "Caddyfile"
CONTAINERFILE = DEPLOY / "Containerfile"
COMPOSE = DEPLOY / "compose" / "compose.yaml"


def unit_settings(text: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file, values in order."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_systemd_unit_runs_callbridge_sandboxed_as_its_own_user() -> None:
    settings = unit_settings(UNIT.read_text())
    assert settings["ExecStart"] == ["/opt/callbridge/venv/bin/callbridge run"]
    assert settings["User"] == ["callbridge"] and settings["Group"] == ["callbridge"]
    assert "CALLBRIDGE_CONFIG=/etc/callbridge/callbridge.toml" in settings["Environment"]
    assert settings["Restart"] == ["always"]
    assert settings["StateDirectory"] == ["callbridge"]
    assert settings["ReadWritePaths"] == ["/var/lib/callbridge"]
    assert settings["WorkingDirectory"] == ["/var/lib/callbridge"]
    for key, value in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectHome": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert settings.get(key) == [value], key


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # The unit as installed, with ExecStart pointing at this checkout's callbridge (verify checks it exists).
    text = UNIT.read_text().replace("/opt/callbridge/venv/bin/callbridge", CALLBRIDGE)
    unit = tmp_path / "callbridge.service"
    unit.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    problems = [line for line in (done.stdout + done.stderr).splitlines() if "callbridge.service" in line]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr
    # systemd's own rating of the sandbox: 0 is fully locked down, 10 wide open; below 2 is "OK".
    rating = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in rating.stderr:  # systemd older than 250 rates only loaded units
        return
    exposure = re.search(r"Overall exposure level for callbridge\.service: ([\d.]+)", rating.stdout)
    assert exposure and float(exposure.group(1)) < 2.0, rating.stdout[-2000:]


def test_the_caddyfile_serves_everything_on_one_address() -> None:
    text = CADDYFILE.read_text()
    assert re.search(r"^\{\$CALLBRIDGE_DOMAIN:calls\.example\.com\} \{$", text, re.MULTILINE)
    ws = re.search(r"handle /ws \{\s*reverse_proxy \{\$CALLBRIDGE_WS_UPSTREAMS:127\.0\.0\.1:8081\}", text)
    assert ws, "the WebSocket hub is proxied at /ws"
    assert re.search(r"handle \{\s*reverse_proxy \{\$CALLBRIDGE_HTTP_UPSTREAMS:127\.0\.0\.1:8080\}", text)
    assert "health_uri /healthz" in text
    # /metrics only from this machine, checked before the catch-all handle.
    metrics = re.search(
        r"@metrics_from_outside \{\s*path /metrics\s*not remote_ip 127\.0\.0\.1/8 ::1\s*\}", text
    )
    assert metrics and text.index("handle @metrics_from_outside") < text.index("handle {")
    directives = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in directives if "trusted_proxies" in line], (
        "no client's X-Forwarded-For is trusted"
    )
    assert text.count("{") == text.count("}")


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy is not installed (apt-get install caddy)")
@pytest.mark.parametrize(
    "upstreams",
    [
        {},
        {
            "CALLBRIDGE_HTTP_UPSTREAMS": "cb-1:8080 cb-2:8080",
            "CALLBRIDGE_WS_UPSTREAMS": "cb-1:8081 cb-2:8081",
        },
    ],
    ids=["one-instance", "compose"],
)
def test_the_caddyfile_passes_caddy_validate(upstreams: dict[str, str], tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path),
        **upstreams,
    }
    done = subprocess.run(
        ["caddy", "validate", "--adapter", "caddyfile", "--config", str(CADDYFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0 and "Valid configuration" in done.stdout + done.stderr, done.stderr


def test_the_containerfile_runs_as_a_user_and_checks_healthz() -> None:
    text = CONTAINERFILE.read_text()
    assert re.search(r"^FROM \S*python:3\.1[1-9]-slim$", text, re.MULTILINE)
    assert re.search(r"^USER callbridge$", text, re.MULTILINE)
    assert text.index("USER callbridge") > text.index("RUN pip install")
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", text, re.MULTILINE)
    assert 'CMD ["callbridge", "run"]' in text
    assert "CALLBRIDGE_DATABASE_URL=sqlite:////var/lib/callbridge/callbridge.db" in text
    for path in re.findall(r"^COPY (\S+)", text, re.MULTILINE):
        assert (ROOT / path).exists(), f"COPY {path}: no such path"
    packages = set(re.findall(r'"(\w+)\*"', (ROOT / "pyproject.toml").read_text()))
    copied = set(re.findall(r"^COPY (\w+) ", text, re.MULTILINE))
    assert packages <= copied, f"packages the image leaves out: {packages - copied}"


def container_engine() -> tuple[str | None, str]:
    """A usable engine (docker or podman) and, when there is none, exactly why."""
    reasons = []
    for engine in ("docker", "podman"):
        if shutil.which(engine) is None:
            reasons.append(f"{engine} is not installed")
            continue
        info = subprocess.run([engine, "info"], capture_output=True, text=True, timeout=60)
        if info.returncode == 0:
            return engine, ""
        last = (info.stderr.strip() or info.stdout.strip()).splitlines()[-1:] or ["no output"]
        reasons.append(f"`{engine} info` failed: {last[0]}")
    return None, "; ".join(reasons)


def test_the_image_builds_and_its_health_check_passes(tmp_path: Path) -> None:
    engine, why = container_engine()
    if engine is None:
        pytest.skip(f"no container engine runs here: {why}")
    tag = f"callbridge-test:{uuid.uuid4().hex[:8]}"
    build = subprocess.run(
        [engine, "build", "-f", str(CONTAINERFILE), "-t", tag, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    name = f"callbridge-test-{uuid.uuid4().hex[:8]}"
    try:
        started = subprocess.run(
            [
                engine,
                "run",
                "-d",
                "--name",
                name,
                "--health-interval",
                "1s",
                "-e",
                "CALLBRIDGE_API_TOKEN=t",
                tag,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert started.returncode == 0, started.stderr
        deadline = time.monotonic() + 90
        status = ""
        while time.monotonic() < deadline and status != "healthy":
            inspect = subprocess.run(
                [engine, "inspect", "--format", "{{.State.Health.Status}}", name],
                capture_output=True,
                text=True,
                timeout=30,
            )
            status = inspect.stdout.strip()
            assert status != "unhealthy", _logs(engine, name)
            time.sleep(0.5)
        assert status == "healthy", _logs(engine, name)
        user = subprocess.run([engine, "exec", name, "id", "-u"], capture_output=True, text=True, timeout=30)
        assert user.stdout.strip() == "10001"
    finally:
        subprocess.run([engine, "rm", "-f", name], capture_output=True, timeout=60)
        subprocess.run([engine, "rmi", "-f", tag], capture_output=True, timeout=60)


def _logs(engine: str, name: str) -> str:
    done = subprocess.run([engine, "logs", name], capture_output=True, text=True, timeout=30)
    return done.stdout[-3000:] + done.stderr[-3000:]


def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def test_compose_runs_two_instances_on_postgresql_and_redis_behind_one_proxy() -> None:
    services = compose()["services"]
    instances = [services["callbridge-1"], services["callbridge-2"]]
    for instance in instances:
        build = instance["build"]
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == CONTAINERFILE
        env = instance["environment"]
        assert env["CALLBRIDGE_DATABASE_URL"].startswith("postgresql+psycopg://callbridge:")
        assert env["CALLBRIDGE_DATABASE_URL"].endswith("@postgres:5432/callbridge")
        assert env["CALLBRIDGE_REDIS_URL"] == "redis://redis:6379/0"
        assert env["CALLBRIDGE_HTTP_TRUSTED_PROXIES"] == "1"
        assert env["CALLBRIDGE_WS_PUBLIC_URL"].endswith("/ws")
        assert "ports" not in instance, "only the proxy is published"
    assert instances[0]["environment"] == instances[1]["environment"]
    assert instances[0]["volumes"] != instances[1]["volumes"], "each instance has its own recordings cache"
    assert services["callbridge-1"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["callbridge-2"]["depends_on"]["callbridge-1"]["condition"] == "service_healthy"

    proxy = services["proxy"]
    mount = proxy["volumes"][0].split(":")
    assert (COMPOSE.parent / mount[0]).resolve() == CADDYFILE and mount[1] == "/etc/caddy/Caddyfile"
    assert proxy["environment"]["CALLBRIDGE_HTTP_UPSTREAMS"].split() == [
        "callbridge-1:8080",
        "callbridge-2:8080",
    ]
    assert proxy["environment"]["CALLBRIDGE_WS_UPSTREAMS"].split() == [
        "callbridge-1:8081",
        "callbridge-2:8081",
    ]
    assert {"postgres", "redis"} <= set(services) and "ports" not in services["postgres"]
    assert (COMPOSE.parent / instances[0]["env_file"]).with_suffix(".env.example").exists()


def test_the_example_environment_names_only_real_settings(tmp_path: Path) -> None:
    example = (COMPOSE.parent / "callbridge.env.example").read_text()
    names = re.findall(r"^(CALLBRIDGE_\w+)=", example, re.MULTILINE)
    reference = subprocess.run(
        [sys.executable, "-m", "bridge", "config", "reference"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert reference.returncode == 0, reference.stderr
    for name in names:
        assert f"`{name}`" in reference.stdout, name
