"""A real rsyslogd on loopback ports, for tests that must see what a receiver gets.

Each instance writes its own config, pid file, work dir and output file under a temp
directory, so it never touches the system's syslog. It listens on UDP, plain TCP and TLS
(gnutls driver, certificates made here with ``cryptography``) and writes every received
message's raw text, one line per message. ``stop()``/``start()`` restart it on the same
ports, for outage tests. Needs the Debian packages ``rsyslog`` and ``rsyslog-gnutls``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
GTLS_MODULE = Path("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so")


def available() -> bool:
    """True when rsyslogd and its gnutls driver are installed (tests skip otherwise)."""
    return os.access(RSYSLOGD, os.X_OK) and GTLS_MODULE.exists()


# --- certificates ---------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """Paths of a throwaway CA, a server cert for 127.0.0.1/localhost and a client cert."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: a client trusting it must fail


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name = (
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0])]) if issuer else name
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage_ext = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage_ext, critical=True)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def make_pki(directory: Path, client_name: str = "mi-client") -> Pki:
    """Write a CA, a server and a client certificate (EC P-256) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _cert("mi-test-ca", ca_key, None, ca=True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    srv_cert = _cert(
        "localhost",
        srv_key,
        ("mi-test-ca", ca_key),
        sans=sans,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli_cert = _cert(
        client_name,
        cli_key,
        ("mi-test-ca", ca_key),
        sans=[x509.DNSName(client_name)],
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_cert = _cert("mi-other-ca", other_key, None, ca=True)
    pem = serialization.Encoding.PEM
    files = {
        "ca.pem": ca_cert.public_bytes(pem),
        "server.pem": srv_cert.public_bytes(pem),
        "server.key": _key_pem(srv_key),
        "client.pem": cli_cert.public_bytes(pem),
        "client.key": _key_pem(cli_key),
        "other-ca.pem": other_cert.public_bytes(pem),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
        (directory / name).chmod(0o600)
    d = directory
    return Pki(
        d / "ca.pem",
        d / "server.pem",
        d / "server.key",
        d / "client.pem",
        d / "client.key",
        d / "other-ca.pem",
    )


# --- ports ----------------------------------------------------------------------------


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port the kernel just considered free (TCP or UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _bound_ports(table: str, state: str) -> set[int]:
    """Ports in /proc/net/{tcp,udp} on 127.0.0.1 or 0.0.0.0 in the given hex state."""
    ports: set[int] = set()
    with open(f"/proc/net/{table}") as fh:
        next(fh)
        for line in fh:
            fields = line.split()
            addr, port = fields[1].split(":")
            if fields[3] == state and addr in ("0100007F", "00000000"):
                ports.add(int(port, 16))
    return ports


def listening(tcp: list[int], udp: list[int]) -> bool:
    """True when every TCP port is in LISTEN and every UDP port is bound."""
    return set(tcp) <= _bound_ports("tcp", "0A") and set(udp) <= _bound_ports("udp", "07")


# --- RFC 5424 parsing for assertions --------------------------------------------------

_HEADER = re.compile(
    r"^<(?P<pri>\d{1,3})>(?P<version>\d{1,2}) (?P<timestamp>\S+) (?P<host>\S+) "
    r"(?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
)
_SD_PARAM = re.compile(r'([^\s=\]"]+)="((?:[^"\\]|\\.)*)"')


def _sd_end(text: str, start: int) -> int:
    """Index of the ``]`` closing the SD element that opens at ``start``."""
    j, in_quote = start + 1, False
    while True:
        c = text[j]
        if in_quote and c == "\\":
            j += 2
            continue
        if c == '"':
            in_quote = not in_quote
        elif c == "]" and not in_quote:
            return j
        j += 1


def _parse_sd(text: str) -> tuple[dict[str, dict[str, str]], str]:
    """Parse ``[id k="v"...]...`` at the start of ``text``; return (elements, rest)."""
    if text.startswith("-"):
        return {}, text[1:]
    elements: dict[str, dict[str, str]] = {}
    pos = 0
    while pos < len(text) and text[pos] == "[":
        end = _sd_end(text, pos)
        sd_id, _, params = text[pos + 1 : end].partition(" ")
        elements[sd_id] = {k: re.sub(r"\\(.)", r"\1", v) for k, v in _SD_PARAM.findall(params)}
        pos = end + 1
    return elements, text[pos:]


def parse_5424(line: str) -> dict[str, Any]:
    """Split one RFC 5424 message into its fields (SD as a dict of dicts, BOM removed)."""
    m = _HEADER.match(line)
    if m is None:
        raise ValueError(f"not RFC 5424: {line[:80]!r}")
    out: dict[str, Any] = m.groupdict()
    out["pri"] = int(out["pri"])
    sd, rest = _parse_sd(line[m.end() :])
    out["sd"] = sd
    msg = rest[1:] if rest.startswith(" ") else rest
    out["msg"] = msg.removeprefix("\ufeff")
    out["bom"] = msg.startswith("\ufeff")  # 0.1 sent one; now there is none
    return out


# --- the daemon -----------------------------------------------------------------------

_CONF = """\
global(workDirectory="{work}" maxMessageSize="64k"
       defaultNetstreamDriverCAFile="{ca}"
       defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}")
module(load="imudp")
module(load="imtcp" maxSessions="50")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}" name="tcp")
input(type="imtcp" address="127.0.0.1" port="{tls}" name="tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="{auth}")
module(load="mmpstrucdata")
module(load="mmjsonparse")
template(name="raw" type="string" string="%rawmsg%\\n")
template(name="meta" type="string" string="%inputname% %fromhost-ip% %pri% %msgid%\\n")
template(name="parsed" type="string" string="%$!all-json%\\n")
action(type="omfile" file="{out}" template="raw")
action(type="omfile" file="{meta}" template="meta")
# what a SIEM pipeline gets: SD via mmpstrucdata, MSG via mmjsonparse with no cookie
action(type="mmpstrucdata")
action(type="mmjsonparse" cookie="")
if $parsesuccess == "OK" then {{
    action(type="omfile" file="{parsed}" template="parsed")
}} else {{
    action(type="omfile" file="{rejected}" template="raw")
}}
"""


class Rsyslog:
    """Context manager around one private rsyslogd; see the module docstring."""

    def __init__(self, directory: Path, *, require_client_cert: bool = False) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pki = make_pki(directory / "pki")
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.tcp_port = free_port()
        self.tls_port = free_port()
        self.out = directory / "messages.log"
        self.meta_out = directory / "meta.log"
        self.parsed_out = directory / "parsed.json"
        self.rejected_out = directory / "rejected.log"
        self.conf = directory / "rsyslog.conf"
        self.pidfile = directory / "rsyslogd.pid"
        self.proc: subprocess.Popen[bytes] | None = None
        work = directory / "work"
        work.mkdir(exist_ok=True)
        auth = "x509/certvalid" if require_client_cert else "anon"
        self.conf.write_text(
            _CONF.format(
                work=work,
                ca=self.pki.ca,
                cert=self.pki.server_cert,
                key=self.pki.server_key,
                udp=self.udp_port,
                tcp=self.tcp_port,
                tls=self.tls_port,
                auth=auth,
                out=self.out,
                meta=self.meta_out,
                parsed=self.parsed_out,
                rejected=self.rejected_out,
            )
        )

    def url(self, transport: str) -> str:
        """The sender URL of one listener: ``udp``, ``tcp`` or ``tls``."""
        port = {"udp": self.udp_port, "tcp": self.tcp_port, "tls": self.tls_port}[transport]
        return f"{transport}://127.0.0.1:{port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start rsyslogd (again) on the same ports; return once all three listen (a shared
        CI machine under load can take seconds to start it)."""
        if self.proc is not None:
            return
        self.pidfile.unlink(missing_ok=True)
        log = (self.dir / "rsyslogd.stderr").open("ab")
        self.proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            cwd=self.dir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not listening([self.tcp_port, self.tls_port], [self.udp_port]):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rsyslogd did not start: {self.stderr()[-2000:]}")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop rsyslogd (SIGTERM, then SIGKILL); its output file stays."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr(self) -> str:
        path = self.dir / "rsyslogd.stderr"
        return path.read_text(errors="replace") if path.exists() else ""

    def messages(self) -> list[str]:
        """Every message received so far, in arrival order (raw text, BOM kept)."""
        if not self.out.exists():
            return []
        text = self.out.read_bytes().decode("utf-8", errors="strict")
        return text.splitlines()

    def parsed(self) -> list[dict[str, Any]]:
        """What mmpstrucdata + mmjsonparse (empty cookie) made of each message that parsed:
        the JSON body's fields at the top, the SD under ``rfc5424-sd``."""
        if not self.parsed_out.exists():
            return []
        lines = self.parsed_out.read_bytes().decode("utf-8", errors="strict").splitlines()
        return [json.loads(line) for line in lines]

    def rejected(self) -> list[str]:
        """Raw messages mmjsonparse could not parse (the 0.1 BOM made every one land here)."""
        if not self.rejected_out.exists():
            return []
        return self.rejected_out.read_bytes().decode("utf-8", errors="replace").splitlines()

    def meta(self) -> list[str]:
        """Per message: input name, sender IP, PRI and MSGID as rsyslog saw them."""
        return self.meta_out.read_text().splitlines() if self.meta_out.exists() else []

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 5.0) -> list[str]:
        """Poll ``messages()`` until ``predicate`` holds; return them, or raise on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages()
            if predicate(msgs):
                return msgs
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(msgs)} messages, predicate still false; last: {msgs[-3:]}"
                )
            time.sleep(0.02)

    def __enter__(self) -> Rsyslog:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
