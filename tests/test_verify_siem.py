"""Standing findings reach the SIEM: from a scheduled verify (through the outbox) and from
`watch` at start. A real rsyslogd on loopback, real child processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrity import api
from integrity.demo import build_sandbox
from tests import rsyslog_harness
from tests.rsyslog_harness import Rsyslog, parse_5424

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not rsyslog_harness.available(), reason="rsyslog/rsyslog-gnutls missing"),
]

HERE = Path(__file__).resolve().parent.parent
DECODER = 'decode: "|/usr/bin/uudecode"\n'


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    with Rsyslog(tmp_path / "rsyslog") as server:
        yield server


@pytest.fixture
def host(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """The sandbox with a decoder alias already there at init: (base, root, arguments)."""
    base = tmp_path / "host"
    base.mkdir()
    root, profiles = build_sandbox(base)
    with (root / "etc/mail/aliases").open("a") as fh:
        fh.write(DECODER)
    api.init(api.Options(root=str(root), db=str(base / "baseline.db"), profiles=("demo",),
                         profile_dirs=(str(profiles),)))
    args = ["--root", str(root), "--db", str(base / "baseline.db"), "--profile", "demo",
            "--profile-dir", str(profiles)]
    return base, root, args


def actions(server: Rsyslog, msgid: str) -> list[str]:
    out = []
    for line in server.messages():
        m = parse_5424(line)
        if m["msgid"] == msgid:
            out.append(json.loads(m["msg"])["mail_integrity"]["alert_state"])
    return out


def wait_actions(server: Rsyslog, msgid: str, n: int, timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = actions(server, msgid)
        if len(got) >= n:
            return got
        time.sleep(0.1)
    return actions(server, msgid)


def verify(args: list[str], config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "integrity", "verify", *args, "--config",
                           str(config), "-q"], capture_output=True, text=True, cwd=HERE,
                          timeout=60)


def test_scheduled_verify_sends_standing_findings_then_resolved(host, rsyslog):
    """verify with [syslog] url: finding, then realert while it lasts, then resolved; the
    outbox sits next to the database; with no url, verify stays offline."""
    base, root, args = host
    config = base / "siem.toml"
    config.write_text(f'[syslog]\nurl = "{rsyslog.url("tcp")}"\n')
    assert verify(args, config).returncode == 8
    assert wait_actions(rsyslog, "MI-ALIAS-DECODE", 1) == ["new"]
    assert (base / "outbox.db").exists()
    assert verify(args, config).returncode == 8
    assert wait_actions(rsyslog, "MI-ALIAS-DECODE", 2) == ["new", "realert"]
    aliases = root / "etc/mail/aliases"
    aliases.write_text(aliases.read_text().replace(DECODER, ""))
    assert verify(args, config).returncode & 8 == 0
    assert wait_actions(rsyslog, "MI-ALIAS-DECODE", 3) == ["new", "realert", "resolved"]
    with aliases.open("a") as fh:
        fh.write(DECODER)
    offline = base / "offline.toml"
    offline.write_text("")
    before = len(rsyslog.messages())
    assert verify(args, offline).returncode & 8
    time.sleep(1.5)
    assert len(rsyslog.messages()) == before


def test_acknowledged_finding_is_not_sent(host, rsyslog):
    """After `update --accept`, a verify sends nothing about the acknowledged finding."""
    base, _, args = host
    config = base / "siem.toml"
    config.write_text(f'[syslog]\nurl = "{rsyslog.url("tcp")}"\n')
    proc = subprocess.run([sys.executable, "-m", "integrity", "update", *args, "--config",
                           str(config), "--accept", "/etc/mail/aliases", "--reason", "known"],
                          capture_output=True, text=True, cwd=HERE, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert verify(args, config).returncode == 0
    time.sleep(1.5)
    assert actions(rsyslog, "MI-ALIAS-DECODE") == []


def test_watch_reports_a_standing_finding_at_start(host, rsyslog):
    """A condition present at init is sent by the daemon's start-up verify, not resolved."""
    from tests.test_daemon import Daemon

    base, root, _ = host
    daemon = Daemon(base, root, base / "profiles", rsyslog.url("tcp"))
    daemon.start()
    try:
        got = wait_actions(rsyslog, "MI-ALIAS-DECODE", 1)
        time.sleep(0.5)
    finally:
        daemon.stop()
    assert got[:1] == ["new"] and "resolved" not in actions(rsyslog, "MI-ALIAS-DECODE")


def test_watch_is_silent_about_its_own_state_and_alerts_on_tampering(tmp_path, rsyslog):
    """Database inside the watched root: the daemon's own writes and an `update` make no
    finding; the state directory made world-writable reaches the SIEM as critical."""
    from tests.test_daemon import Daemon

    base = tmp_path / "own"
    base.mkdir()
    root, profiles = build_sandbox(base)
    profile = profiles / "demo.toml"
    profile.write_text(profile.read_text() + '\n[[file]]\npath = "/var/lib/mail-integrity"\n'
                       'role = "directory"\noptional = true\n')
    state = root / "var/lib/mail-integrity"
    opts = api.Options(root=str(root), db=str(state / "baseline.db"), profiles=("demo",),
                       profile_dirs=(str(profiles),))
    api.init(opts)
    daemon = Daemon(base, root, profiles, rsyslog.url("tcp"))
    daemon.argv[daemon.argv.index("--db") + 1] = str(state / "baseline.db")
    daemon.start()
    try:
        (root / "etc/mail/aliases").chmod(0o640)
        assert wait_actions(rsyslog, "MI-PERM-TIGHTENED", 1) == ["new"]
        api.update(opts, paths=["/etc/mail/aliases"], reason="tightened on purpose")
        time.sleep(1.0)
        assert not [m for m in rsyslog.messages() if "MI-SELF" in parse_5424(m)["msgid"]]
        state.chmod(0o777)
        got = wait_actions(rsyslog, "MI-SELF-STATE-WRITABLE", 1)
    finally:
        state.chmod(0o700)
        daemon.stop()
    assert got == ["new"]
    msg = next(parse_5424(m) for m in rsyslog.messages()
               if parse_5424(m)["msgid"] == "MI-SELF-STATE-WRITABLE")
    assert int(msg["pri"]) % 8 == 2  # crit


def test_watch_realerts_a_standing_finding_until_acknowledged(host, rsyslog):
    """The daemon re-sends the standing finding at its cadence; once acknowledged, it stops."""
    from tests.test_daemon import Daemon

    base, root, _ = host
    daemon = Daemon(base, root, base / "profiles", rsyslog.url("tcp"))
    daemon.config.write_text(daemon.config.read_text().replace(
        "realert_interval = 3600.0", "realert_interval = 1.0"))
    daemon.start()
    try:
        got = wait_actions(rsyslog, "MI-ALIAS-DECODE", 3)
        assert got[0] == "new" and got[1:3] == ["realert", "realert"]
        api.update(api.Options(root=str(root), db=str(base / "baseline.db"),
                               profiles=("demo",), profile_dirs=(str(base / "profiles"),)),
                   paths=["/etc/mail/aliases"], reason="known")
        (root / "etc/mail/sendmail.cf").chmod(0o444)  # an event: the daemon reloads
        time.sleep(2.0)
        settled = len(actions(rsyslog, "MI-ALIAS-DECODE"))
        time.sleep(3.0)
        assert len(actions(rsyslog, "MI-ALIAS-DECODE")) == settled
        assert "resolved" not in actions(rsyslog, "MI-ALIAS-DECODE")
    finally:
        daemon.stop()
