"""The receiver configurations we ship (docs/), run as shipped against the real `watch`
(issue 9 item 6): only host paths, ports and certificate files are put in for the test.

* docs/rsyslog-receiver.conf: mutual TLS (x509/name), mmpstrucdata + mmjsonparse, the
  events.json a SIEM shipper reads; a monitor without a client certificate gets nothing in.
* docs/rsyslog-debian-dropin.conf under Debian's own stock /etc/rsyslog.conf: SD and MSG
  kept whole in their own file, nothing in auth.log.
* docs/syslog-ng-receiver.conf: mutual TLS, json-parser, events.json.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from integrity.syslog import SyslogSender
from tests import ecs_check, rsyslog_harness
from tests.rsyslog_harness import RSYSLOGD, Pki, free_port, listening, make_pki, parse_5424
from tests.siem_harness import SyslogNg, Watch, sandbox_host, syslog_ng_available, wait_until

pytestmark = pytest.mark.slow

DOCS = Path(__file__).resolve().parent.parent / "docs"
MONITOR = "mx1.example.org"  # listed in the shipped permittedPeer


def _tls_config(pki: Pki) -> str:
    return (
        f'ca_file = "{pki.ca}"\ncert_file = "{pki.client_cert}"\n'
        f'key_file = "{pki.client_key}"\nhostname = "{MONITOR}"\n'
    )


def _receiver_body(line: str) -> dict[str, object]:
    """An events.json line; the receiver added observer.ip and labels.sequence_id."""
    body: dict[str, object] = json.loads(line)
    assert problems_but_receiver(body) == [], body
    return body


def problems_but_receiver(body: dict[str, object]) -> list[str]:
    extra = dict(body)
    observer = extra.pop("observer", None)
    assert observer is not None and observer == {"ip": "127.0.0.1"}, observer
    return ecs_check.problems(extra)


@contextmanager
def rsyslogd(conf: Path, tcp_ports: list[int]) -> Iterator[subprocess.Popen[bytes]]:
    """rsyslogd in the foreground on a config; checked with -N1 first."""
    check = subprocess.run([RSYSLOGD, "-N1", "-f", str(conf)], capture_output=True, timeout=60)
    assert check.returncode == 0, check.stderr.decode(errors="replace")
    log = (conf.parent / "rsyslogd.stderr").open("ab")
    proc = subprocess.Popen([RSYSLOGD, "-n", "-f", str(conf), "-i", str(conf.parent / "pid")],
                            stdout=log, stderr=log, cwd=conf.parent)  # fmt: skip
    log.close()
    try:
        wait_until(lambda: listening(tcp_ports, []) or proc.poll() is not None, 10, "rsyslogd")
        assert proc.poll() is None, (conf.parent / "rsyslogd.stderr").read_text()
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _stopped(events: Path) -> bool:
    """The monitor's stop event (its last message) is in events.json."""
    return any(
        json.loads(line)["event"].get("dataset") == "mail_integrity.lifecycle"
        and json.loads(line)["event"]["action"] == "stop"
        for line in _lines(events)
    )


@pytest.mark.skipif(not rsyslog_harness.available(), reason="rsyslog + rsyslog-gnutls missing")
def test_shipped_rsyslog_receiver_with_mutual_tls(tmp_path):
    """docs/rsyslog-receiver.conf as shipped: a monitor with cert_file/key_file delivers
    parsed ECS JSON to events.json and raw lines per host; one without a certificate is
    refused, backs off, and logs the failure once."""
    pki = make_pki(tmp_path / "pki", client_name=MONITOR)
    logs = tmp_path / "log"
    tcp, tls = free_port(), free_port()
    text = (DOCS / "rsyslog-receiver.conf").read_text()
    for old, new in [
        ("/etc/rsyslog-tls/ca.pem", str(pki.ca)),
        ("/etc/rsyslog-tls/server.pem", str(pki.server_cert)),
        ("/etc/rsyslog-tls/server.key", str(pki.server_key)),
        ("/var/log/mail-integrity", str(logs)),
        ('port="514"', f'port="{tcp}"'),
        ('port="6514"', f'port="{tls}"'),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    (tmp_path / "work").mkdir()
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(f'global(workDirectory="{tmp_path / "work"}")\n' + text)
    base = tmp_path / "host"
    sandbox_host(base)
    with rsyslogd(conf, [tcp, tls]):
        with Watch(base, f"tls://127.0.0.1:{tls}", _tls_config(pki)):
            (base / "root/usr/sbin/sendmail").chmod(0o2755)
            wait_until(lambda: "MI-SETID-ADDED" in "".join(_lines(logs / "events.json")), 20,
                       "no finding in events.json")  # fmt: skip
        # no client certificate: the TLS handshake succeeds, then the server drops us
        anonymous = SyslogSender(f"tls://127.0.0.1:{tls}", outbox_path=None, hostname="anon",
                                 ca_file=str(pki.ca), backoff=(0.05, 0.5))  # fmt: skip
        with capture_logs() as events:
            anonymous.start()
            anonymous.send("critical", "MI-ANON", {}, {"message": "should not arrive"})
            assert not anonymous.flush(2.0)
            anonymous.close(0.1)
        wait_until(lambda: _stopped(logs / "events.json"), 10, "no stop event")
    bodies = [_receiver_body(line) for line in _lines(logs / "events.json")]
    assert any(b.get("rule") == {"id": "MI-SETID-ADDED", "name": "Setid added",  # type: ignore[comparison-overlap]
                             "category": "permissions", "ruleset": "mail-integrity"}
               for b in bodies)  # fmt: skip
    assert all(b["host"] == {"name": MONITOR} for b in bodies)
    seqs = [int(b["labels"]["sequence_id"]) for b in bodies]  # type: ignore[index]
    assert seqs == list(range(1, len(seqs) + 1))
    raw = _lines(logs / f"{MONITOR}.log")
    assert len(raw) == len(bodies) and all(not parse_5424(r)["bom"] for r in raw)
    assert not (logs / "unparsed.log").exists()
    assert not (logs / "anon.log").exists()
    assert "MI-ANON" not in (logs / "events.json").read_text()
    warnings = [e for e in events if e["log_level"] == "warning"]
    assert len(warnings) == 1, events


DEBIAN_RSYSLOG_CONF = Path("/etc/rsyslog.conf")


@pytest.mark.skipif(
    not rsyslog_harness.available() or not DEBIAN_RSYSLOG_CONF.exists(),
    reason="rsyslog (with Debian's stock /etc/rsyslog.conf) missing",
)
def test_debian_dropin_keeps_structured_data_and_msg(tmp_path):
    """Under Debian's own stock rsyslog.conf, the drop-in writes our messages whole
    (SD and JSON MSG) to their own file, and auth.log gets none of them."""
    stock = DEBIAN_RSYSLOG_CONF.read_text()
    logs, dropins, work = tmp_path / "log", tmp_path / "rsyslog.d", tmp_path / "work"
    for d in (logs, dropins, work):
        d.mkdir()
    assert "$IncludeConfig /etc/rsyslog.d/*.conf" in stock and "/var/log/auth.log" in stock
    # the host's own inputs (journal socket, kernel log) are not ours to take over
    stock = re.sub(r'(?m)^module\(load="im(uxsock|klog)"\).*$', "", stock)
    stock = stock.replace("/etc/rsyslog.d/", f"{dropins}/").replace("/var/log/", f"{logs}/")
    stock = re.sub(r"(?m)^\$WorkDirectory .*$", f"$WorkDirectory {work}", stock)
    stock = re.sub(r"(?m)^\$FileGroup .*$", "", stock)
    stock = stock.replace(":omusrmsg:*", f"{logs}/emerg.log")
    dropin = (DOCS / "rsyslog-debian-dropin.conf").read_text()
    assert "/var/log/mail-integrity.log" in dropin
    dropin = dropin.replace("/var/log/", f"{logs}/").replace(' fileGroup="adm"', "")
    (dropins / "10-mail-integrity.conf").write_text(dropin)
    port = free_port()
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(f'module(load="imtcp")\ninput(type="imtcp" port="{port}")\n' + stock)
    base = tmp_path / "host"
    sandbox_host(base)
    with rsyslogd(conf, [port]):
        with Watch(base, f"tcp://127.0.0.1:{port}"):
            (base / "root/usr/sbin/sendmail").chmod(0o2755)
            wait_until(lambda: "MI-SETID-ADDED" in "".join(_lines(logs / "mail-integrity.log")),
                       20, "nothing in mail-integrity.log")  # fmt: skip
        # control: another program's authpriv message still takes the stock path to auth.log
        sshd = SyslogSender(f"tcp://127.0.0.1:{port}", outbox_path=None, hostname="other",
                            app_name="sshd")  # fmt: skip
        sshd.start()
        sshd.send("info", "-", {}, {"message": "session opened"})
        wait_until(lambda: "sshd" in "".join(_lines(logs / "auth.log")), 10, "no auth.log")
        sshd.close(2.0)
    lines = _lines(logs / "mail-integrity.log")
    finding = next(line for line in lines if " MI-SETID-ADDED " in line)
    assert '[mi@32473 path="/usr/sbin/sendmail" rule="MI-SETID-ADDED"' in finding
    body = json.loads(finding.split('"] ', 2)[-1].split("] ", 1)[-1])
    assert ecs_check.problems(body) == [] and body["file"]["path"] == "/usr/sbin/sendmail"
    assert "\ufeff" not in "".join(lines)
    auth = "".join(_lines(logs / "auth.log"))
    assert "session opened" in auth and "mail-integrity" not in auth and "MI-" not in auth


@pytest.mark.skipif(not syslog_ng_available(), reason="syslog-ng not unpacked")
def test_shipped_syslog_ng_receiver_with_mutual_tls(tmp_path):
    """docs/syslog-ng-receiver.conf as shipped: TLS with a client certificate required,
    json-parser, events.json with the ECS body, raw lines per host."""
    pki = make_pki(tmp_path / "pki", client_name=MONITOR)
    logs = tmp_path / "log"
    tcp, tls = free_port(), free_port()
    text = (DOCS / "syslog-ng-receiver.conf").read_text()
    for old, new in [
        ("/etc/syslog-ng/tls/ca.pem", str(pki.ca)),
        ("/etc/syslog-ng/tls/server.pem", str(pki.server_cert)),
        ("/etc/syslog-ng/tls/server.key", str(pki.server_key)),
        ("/var/log/mail-integrity", str(logs)),
        ("port(514)", f'ip("127.0.0.1") port({tcp})'),
        ("port(6514)", f'ip("127.0.0.1") port({tls})'),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    base = tmp_path / "host"
    sandbox_host(base)
    with SyslogNg(tmp_path / "syslog-ng", text, [tcp, tls]) as server:
        with Watch(base, f"tls://127.0.0.1:{tls}", _tls_config(pki)):
            (base / "root/usr/sbin/sendmail").chmod(0o2755)
            wait_until(lambda: "MI-SETID-ADDED" in "".join(_lines(logs / "events.json")), 20,
                       f"no finding in events.json: {server.stderr()[-1500:]}")  # fmt: skip
        wait_until(lambda: _stopped(logs / "events.json"), 10, "no stop event")
    lines = _lines(logs / "events.json")
    bodies = [json.loads(line) for line in lines]
    finding = next(b for b in bodies if b.get("rule", {}).get("id") == "MI-SETID-ADDED")
    assert finding["file"]["path"] == "/usr/sbin/sendmail"
    assert finding["observer"] == {"ip": "127.0.0.1"} and finding["host"]["name"] == MONITOR
    seqs = sorted(int(b["labels"]["sequence_id"]) for b in bodies)
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(_lines(logs / f"{MONITOR}.log")) == len(bodies)
    assert not (logs / "unparsed.log").exists()


@pytest.mark.skipif(
    not rsyslog_harness.available() or not DEBIAN_RSYSLOG_CONF.exists(),
    reason="rsyslog (with Debian's stock /etc/rsyslog.conf) missing",
)
def test_shipped_receiver_and_dropin_validate_under_debians_stock_config(tmp_path):
    """Installed as documented (both files in /etc/rsyslog.d/ of a stock Debian rsyslog),
    `rsyslogd -N1` accepts the whole configuration: no clash with the stock globals."""
    pki = make_pki(tmp_path / "pki")
    dropins = tmp_path / "rsyslog.d"
    dropins.mkdir()
    receiver = (DOCS / "rsyslog-receiver.conf").read_text()
    for old, new in [
        ("/etc/rsyslog-tls/ca.pem", str(pki.ca)),
        ("/etc/rsyslog-tls/server.pem", str(pki.server_cert)),
        ("/etc/rsyslog-tls/server.key", str(pki.server_key)),
    ]:
        receiver = receiver.replace(old, new)
    (dropins / "60-mail-integrity.conf").write_text(receiver)
    (dropins / "10-mail-integrity.conf").write_text(
        (DOCS / "rsyslog-debian-dropin.conf").read_text()
    )
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(DEBIAN_RSYSLOG_CONF.read_text().replace("/etc/rsyslog.d/", f"{dropins}/"))
    check = subprocess.run([RSYSLOGD, "-N1", "-f", str(conf)], capture_output=True, timeout=60)
    out = check.stderr.decode(errors="replace")
    assert check.returncode == 0 and "error" not in out.lower(), out
    assert "End of config validation run" in out
