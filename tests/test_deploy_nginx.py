"""`deploy/nginx/callbridge.conf` in front of `callbridge run`, over TLS, as docs/deploy.md installs it.

Debian's nginx (installed by `make test`, target `nginx`) runs the site file rendered for a throwaway
self-signed certificate on free loopback ports. Through it: a signed Mango webhook, the panel's login, the
widget's script and requests, whose per-address limits hold per real client address (clients connect from
different loopback addresses; what a client writes in X-Forwarded-For itself changes nothing), a live popup
over `wss://.../ws`, and `/metrics` only from this machine and with its token. One daemon for the module.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from requests.adapters import HTTPAdapter
from sqlalchemy import select
from websockets.sync.client import connect

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator.poster import Poster
from bridge.store.engine import make_engine
from tests.daemon import API_KEY, API_SALT, API_TOKEN, die_with_parent, free_port
from tests.fakes.realtime_client import DEMO_NAME, demo_env
from tests.test_admin_support import PASSWORD, csrf_of
from tests.test_realtime_e2e import cli_token, split_at_ringing
from tests.test_widget_e2e import SHOP, Bridge, start_bridge
from tests.waiting import wait_until
from widget.tables import widget_requests

SITE_FILE = Path(__file__).resolve().parent.parent / "deploy" / "nginx" / "callbridge.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
METRICS_TOKEN = "metrics-token-0123456789"
MANGO_SOURCE = "127.0.0.2"  # Mango, as the proxy sees it (mango.allowed_ips)
SIMULATOR = "127.0.0.1"  # the widget's calls: the Mango simulator posts their events to the daemon itself
VISITOR, NEIGHBOUR = "127.0.0.3", "127.0.0.4"  # two website visitors

if not os.access(NGINX, os.X_OK):
    _reason = "nginx is not installed (apt-get install nginx; `make test` installs it when run as root)"
    if os.environ.get("CI"):
        raise RuntimeError(f"the nginx test cannot run in CI: {_reason}")
    pytest.skip(_reason, allow_module_level=True)


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    else:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


def self_signed(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway authority, and a certificate it signed for 127.0.0.1 and localhost with its key (PEM)."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("callbridge test CA", ca_key, x509.Name([]), ca_key, ca=True)
    ca = _certificate("callbridge test CA", ca_key, ca.subject, ca_key, ca=True)
    cert = _certificate("localhost", key, ca.subject, ca_key, ca=False)
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


def replace_once(text: str, old: str, new: str) -> str:
    """`text` with `old` replaced; the site file must hold it, or the test is out of date with it."""
    assert old in text, f"deploy/nginx/callbridge.conf no longer has {old!r}"
    return text.replace(old, new)


def render_site(http_port: int, ws_port: int, tls_port: int, plain_port: int, cert: Path, key: Path) -> str:
    """The site file as an admin installs it, with our ports and certificate in place of the examples."""
    site = SITE_FILE.read_text()
    site = replace_once(site, "server 127.0.0.1:8080;", f"server 127.0.0.1:{http_port};")
    site = replace_once(site, "server 127.0.0.1:8081;", f"server 127.0.0.1:{ws_port};")
    site = replace_once(site, "/etc/letsencrypt/live/calls.example.com/fullchain.pem", str(cert))
    site = replace_once(site, "/etc/letsencrypt/live/calls.example.com/privkey.pem", str(key))
    site = replace_once(site, "listen 443 ssl http2;", f"listen 127.0.0.1:{tls_port} ssl http2;")
    site = replace_once(site, "listen 80;", f"listen 127.0.0.1:{plain_port};")
    return re.sub(r"^\s*listen \[::\].*\n", "", site, flags=re.MULTILINE)  # no IPv6 in every sandbox


def nginx_conf(directory: Path, site: Path) -> str:
    """A main nginx.conf that keeps every file of this nginx in `directory` and includes the site."""
    temp = " ".join(
        f"{kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;" if os.geteuid() == 0 else ""  # workers as root here: the test's files are private
    return (
        f"{user} daemon off; worker_processes 1; pid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} info;\n"
        "events { worker_connections 512; }\n"
        f"http {{ access_log {directory / 'access.log'}; {temp}\n  include {site};\n}}\n"
    )


@dataclass
class Proxy:
    """nginx with the site file in front of the module's daemon."""

    bridge: Bridge
    port: int
    plain_port: int
    ca: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def session(self, source: str = "127.0.0.1") -> requests.Session:
        """An HTTPS session that trusts the test certificate and connects from `source`."""
        http = requests.Session()
        http.trust_env = False  # REQUESTS_CA_BUNDLE would win over `verify`
        http.verify = str(self.ca)
        adapter = _FromAddress(source)
        http.mount("https://", adapter)
        http.mount("http://", adapter)
        return http


class _FromAddress(HTTPAdapter):
    """Connections from a chosen loopback address: another client, as nginx sees it."""

    def __init__(self, source: str) -> None:
        self._source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self._source, 0)
        super().init_poolmanager(*args, **kwargs)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    workdir = tmp_path_factory.mktemp("nginx-proxy")
    env = demo_env(
        CALLBRIDGE_HTTP_TRUSTED_PROXIES="1",
        CALLBRIDGE_HTTP_METRICS_TOKEN=METRICS_TOKEN,
        CALLBRIDGE_MANGO_ALLOWED_IPS=f"{MANGO_SOURCE},{SIMULATOR}",
    )
    bridges = start_bridge(f"sqlite:///{workdir / 'callbridge.db'}", workdir, env)
    bridge = next(bridges)
    try:
        yield from _nginx_in_front(bridge, workdir)
    finally:
        bridges.close()  # stops the daemon and its fakes


def _nginx_in_front(bridge: Bridge, workdir: Path) -> Iterator[Proxy]:
    bridge.daemon.create_user("admin", PASSWORD)
    ca, cert, key = self_signed(workdir)
    tls_port, plain_port = free_port(), free_port()
    site = workdir / "callbridge.conf"
    ws_port = int(bridge.daemon.env["CALLBRIDGE_WS_PORT"])
    site.write_text(render_site(bridge.daemon.port, ws_port, tls_port, plain_port, cert, key))
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_conf(workdir, site))
    args = [NGINX, "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(conf)]
    checked = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    with (workdir / "nginx.out").open("ab") as log:
        nginx = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent()
        )
    found = Proxy(bridge, tls_port, plain_port, ca)
    try:
        probe = found.session()
        wait_until(lambda: _answers(probe, f"{found.url}/healthz"), "nginx in front of callbridge", 15)
        yield found
    finally:
        nginx.terminate()
        try:
            nginx.wait(10)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait(10)


def _answers(http: requests.Session, url: str) -> bool:
    try:
        return http.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_a_signed_mango_webhook_is_stored_and_only_mangos_address_is_let_in(proxy: Proxy) -> None:
    scenario = scenarios.build("incoming_answered", seed=41, extensions=("102",), run="18")
    with Poster(f"{proxy.url}/mango", API_KEY, API_SALT, session=proxy.session(MANGO_SOURCE)) as mango:
        report = mango.play(scenario.notifications)
    assert not report.errors, report.summary()
    api = proxy.session()
    api.headers["Authorization"] = f"Bearer {API_TOKEN}"

    def closed() -> dict[str, Any] | None:
        answer = api.get(f"{proxy.url}/api/calls/{quote(scenario.entry_id, safe='')}", timeout=10)
        return answer.json() if answer.status_code == 200 and answer.json()["closed"] else None

    assert wait_until(closed, "the call, read through the proxy", 15)["answered_by"] == "102"

    # Another address is refused: callbridge sees the real source, not the proxy's 127.0.0.1 and not
    # what the sender claims in X-Forwarded-For.
    other = proxy.session(VISITOR)
    other.headers["X-Forwarded-For"] = MANGO_SOURCE
    with Poster(f"{proxy.url}/mango", API_KEY, API_SALT, session=other) as stranger:
        refused = stranger.post(scenario.notifications[0])
    assert refused.status == 403 and "source address not allowed" in refused.body


def test_the_panel_logs_in_through_the_proxy(proxy: Proxy) -> None:
    panel = proxy.session(VISITOR)
    page = panel.get(f"{proxy.url}/admin/login", timeout=10)
    assert page.status_code == 200 and 'name="password"' in page.text
    done = panel.post(
        f"{proxy.url}/admin/login",
        data={"username": "admin", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        headers={"Referer": f"{proxy.url}/admin/login"},
        allow_redirects=False,
        timeout=10,
    )
    assert done.status_code == 302, done.text
    assert panel.get(f"{proxy.url}/admin/", timeout=10).status_code == 200
    # Plain HTTP is sent to HTTPS.
    plain = requests.get(
        f"http://127.0.0.1:{proxy.plain_port}/admin/login", allow_redirects=False, timeout=10
    )
    assert plain.status_code == 301 and plain.headers["Location"].startswith("https://")


def form_tokens(http: requests.Session, proxy: Proxy, site: str, count: int) -> list[str]:
    """What a visitor's browser gets when the form shows (`count` times), after a human pause."""
    tokens = []
    for _ in range(count):
        config = http.get(
            f"{proxy.url}/widget/config", params={"site": site}, headers={"Origin": SHOP}, timeout=10
        )
        assert config.status_code == 200, config.text
        tokens.append(config.json()["form_token"])
    time.sleep(1.05)  # the site asks for at least 1 s between showing the form and sending it
    return tokens


def widget_request(http: requests.Session, proxy: Proxy, token: str, phone: str) -> requests.Response:
    """The visitor sends the form with `phone`."""
    body = {"phone": phone, "form_token": token, "visitor_id": f"v-{phone[-4:]}", "lang": "en"}
    return http.post(
        f"{proxy.url}/widget/callback",
        params={"site": "nginx-site"},
        json={**body, "page": f"{SHOP}/"},
        headers={"Origin": SHOP},
        timeout=15,
    )


def test_the_widget_limits_each_real_client_address(proxy: Proxy) -> None:
    proxy.bridge.add_site(
        "nginx-site", "--hours", "daily 00:00-24:00", "--min-fill", "1",
        "--limit", "ip=2/600", "--limit", "network=100/600", "--limit", "visitor=100/600",
    )  # fmt: skip
    visitor, neighbour = proxy.session(VISITOR), proxy.session(NEIGHBOUR)
    script = visitor.get(f"{proxy.url}/widget/callback.js", timeout=10)
    assert script.status_code == 200 and "javascript" in script.headers["Content-Type"]

    mine, theirs = (
        form_tokens(visitor, proxy, "nginx-site", 4),
        form_tokens(neighbour, proxy, "nginx-site", 1),
    )
    codes = [widget_request(visitor, proxy, mine[i], f"+7916555071{i}").status_code for i in range(2)]
    assert codes == [202, 202]
    limited = widget_request(visitor, proxy, mine[2], "+79165550712")
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    # Writing another address into X-Forwarded-For does not escape the limit: nginx appends the real one.
    visitor.headers["X-Forwarded-For"] = "198.51.100.7"
    assert widget_request(visitor, proxy, mine[3], "+79165550713").status_code == 429
    # A second visitor (another address, same proxy) has a limit of its own.
    assert widget_request(neighbour, proxy, theirs[0], "+79165550714").status_code == 202

    engine = make_engine(proxy.bridge.daemon.env["CALLBRIDGE_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            query = select(widget_requests.c.phone, widget_requests.c.ip).where(
                widget_requests.c.site_key == "nginx-site"
            )
            stored = {phone: ip for phone, ip in conn.execute(query)}
    finally:
        engine.dispose()
    assert stored == {"+79165550710": VISITOR, "+79165550711": VISITOR, "+79165550714": NEIGHBOUR}


def test_a_live_popup_arrives_over_wss(proxy: Proxy) -> None:
    token = cli_token(proxy.bridge.daemon, "--extension", "101")
    tls = ssl.create_default_context(cafile=str(proxy.ca))
    url = f"wss://127.0.0.1:{proxy.port}/ws?token={token}"
    with connect(url, ssl=tls, compression=None, open_timeout=5) as hub:
        assert json.loads(hub.recv(timeout=5))["type"] == "hello"
        scenario = scenarios.build("incoming_answered", seed=42, extensions=("101",), run="18")
        ringing, _rest = split_at_ringing(scenario)
        with Poster(f"{proxy.url}/mango", API_KEY, API_SALT, session=proxy.session(MANGO_SOURCE)) as mango:
            assert not mango.play(ringing).errors
        deadline = time.monotonic() + 10
        while True:
            message = json.loads(hub.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("type") == "call.ringing" and message["entry_id"] == scenario.entry_id:
                break
    assert message["extension"] == "101"
    assert message["card"]["name"] == DEMO_NAME


def test_metrics_only_from_this_machine_and_with_the_token(proxy: Proxy) -> None:
    local, remote = proxy.session(), proxy.session(VISITOR)
    url = f"{proxy.url}/metrics"
    bearer = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    assert remote.get(url, headers=bearer, timeout=10).status_code == 403  # nginx's rule
    assert local.get(url, timeout=10).status_code == 401  # callbridge's token
    wrong = local.get(url, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401 and METRICS_TOKEN not in wrong.text
    answer = local.get(url, headers=bearer, timeout=10)
    assert answer.status_code == 200 and "callbridge_calls" in answer.text
