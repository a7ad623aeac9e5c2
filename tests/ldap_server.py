"""A real OpenLDAP `slapd` (Debian's package) for the directory tests: its own configuration, database,
schemas (core, cosine, inetorgperson, nis) and a self-signed CA, on free loopback ports (`ldap://` with
StartTLS, and `ldaps://`). It dies with the test process.

Without slapd the tests skip and say why; in CI (`CI` set) a missing slapd is an error, so they can never be
skipped silently there. `make test` installs it (`make slapd`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ldap3 import MODIFY_REPLACE, Connection, Server

from tests.daemon import die_with_parent, free_port

SLAPD = "/usr/sbin/slapd"
SCHEMAS = Path("/etc/ldap/schema")
MODULES = Path("/usr/lib/ldap")
BASE = "dc=example,dc=com"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
ROOT_DN = f"cn=admin,{BASE}"
ROOT_PASSWORD = "root-secret"
SERVICE_DN = f"cn=callbridge,ou=service,{BASE}"
SERVICE_PASSWORD = "service-secret-1"

MISSING = None
if not Path(SLAPD).exists():
    MISSING = f"OpenLDAP's slapd is not installed ({SLAPD}); `make slapd` installs Debian's package"
elif not (SCHEMAS / "inetorgperson.schema").exists():
    MISSING = f"slapd's schemas are missing from {SCHEMAS}"
if MISSING and os.environ.get("CI"):
    raise RuntimeError(f"directory tests cannot run in CI: {MISSING}")

requires_slapd = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


def _certificates(folder: Path) -> None:
    """ca.pem, and server.pem / server.key for 127.0.0.1 and localhost signed by it."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "callbridge test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _config(folder: Path) -> str:
    schemas = "\n".join(
        f"include {SCHEMAS / name}.schema" for name in ("core", "cosine", "inetorgperson", "nis")
    )
    return f"""{schemas}
modulepath {MODULES}
moduleload back_mdb
pidfile {folder}/slapd.pid
argsfile {folder}/slapd.args
TLSCACertificateFile {folder}/ca.pem
TLSCertificateFile {folder}/server.pem
TLSCertificateKeyFile {folder}/server.key
sizelimit unlimited
database mdb
maxsize 268435456
suffix "{BASE}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {folder}/db
index objectClass eq
index uid eq
index member eq
access to attrs=userPassword by self write by anonymous auth by * none
access to * by users read by * none
"""


class LdapServer:
    """One slapd; `url` (plain, for StartTLS), `ldaps_url`, `ca_file`; helpers to change the directory."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="slapd-"))
        (self.folder / "db").mkdir()
        _certificates(self.folder)
        (self.folder / "slapd.conf").write_text(_config(self.folder))
        self.port, self.tls_port = free_port(), free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.ldaps_url = f"ldaps://127.0.0.1:{self.tls_port}"
        self.ca_file = str(self.folder / "ca.pem")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> LdapServer:
        log = (self.folder / "slapd.log").open("wb")
        self.process = subprocess.Popen(
            [SLAPD, "-h", f"{self.url}/ {self.ldaps_url}/", "-f", str(self.folder / "slapd.conf"), "-d", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited:\n{(self.folder / 'slapd.log').read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.tls_port), timeout=0.5):
                    pass
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError("slapd did not start listening in time")
        self._seed()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def admin(self) -> Connection:
        """A connection bound as the root DN (plain loopback: test set-up only)."""
        return Connection(Server(self.url), ROOT_DN, ROOT_PASSWORD, auto_bind=True)

    def _seed(self) -> None:
        with self.admin() as conn:
            self._add(conn, BASE, ["dcObject", "organization"], {"o": "Example", "dc": "example"})
            for ou in ("people", "groups", "service"):
                self._add(conn, f"ou={ou},{BASE}", ["organizationalUnit"], {"ou": ou})
            self._add(
                conn,
                SERVICE_DN,
                ["organizationalRole", "simpleSecurityObject"],
                {"cn": "callbridge", "userPassword": SERVICE_PASSWORD},
            )

    @staticmethod
    def _add(conn: Connection, dn: str, classes: list[str], attributes: dict[str, object]) -> None:
        if not conn.add(dn, classes, attributes):
            raise RuntimeError(f"could not add {dn}: {conn.result}")

    def add_person(
        self,
        uid: str,
        *,
        name: str,
        extension: str | None = None,
        email: str | None = None,
        department: str | None = None,
        position: str | None = None,
        password: str | None = None,
        base: str = PEOPLE,
        conn: Connection | None = None,
    ) -> str:
        dn = f"uid={uid},{base}"
        attributes: dict[str, object] = {"uid": uid, "cn": name, "sn": name.split()[-1], "displayName": name}
        optional = {
            "telephoneNumber": extension,
            "mail": email,
            "departmentNumber": department,
            "title": position,
            "userPassword": password,
        }
        attributes.update({k: v for k, v in optional.items() if v is not None})
        if conn is not None:
            self._add(conn, dn, ["inetOrgPerson"], attributes)
        else:
            with self.admin() as own:
                self._add(own, dn, ["inetOrgPerson"], attributes)
        return dn

    def add_unit(self, name: str, parent: str = PEOPLE) -> str:
        """A new organizational unit (each test its own, so tests sharing the server stay apart)."""
        dn = f"ou={name},{parent}"
        with self.admin() as conn:
            self._add(conn, dn, ["organizationalUnit"], {"ou": name})
        return dn

    def modify(self, dn: str, **attributes: str | None) -> None:
        changes = {k: [(MODIFY_REPLACE, [] if v is None else [v])] for k, v in attributes.items()}
        with self.admin() as conn:
            if not conn.modify(dn, changes):
                raise RuntimeError(f"could not modify {dn}: {conn.result}")

    def delete(self, dn: str) -> None:
        with self.admin() as conn:
            if not conn.delete(dn):
                raise RuntimeError(f"could not delete {dn}: {conn.result}")

    def add_group(self, cn: str, members: Iterable[str]) -> str:
        dn = f"cn={cn},{GROUPS}"
        with self.admin() as conn:
            self._add(conn, dn, ["groupOfNames"], {"cn": cn, "member": list(members) or [ROOT_DN]})
        return dn

    def set_members(self, group_dn: str, members: Iterable[str]) -> None:
        with self.admin() as conn:
            conn.modify(group_dn, {"member": [(MODIFY_REPLACE, list(members) or [ROOT_DN])]})


@pytest.fixture(scope="module")
def slapd() -> Iterator[LdapServer]:
    """One slapd per test module, stopped at teardown."""
    if MISSING:
        pytest.skip(MISSING)
    server = LdapServer().start()
    try:
        yield server
    finally:
        server.stop()
