"""The `watch` daemon under pressure, end to end: real inotify, real rsyslogd, real users.

Queue entries' attribute changes in real time; a set-uid alert that does not wait for a
huge file being hashed, nor for a user's 20 GB ``.forward``; the degraded mode when the
kernel refuses watches (a lowered inotify watch limit, restored afterwards); and inotify
queue overflows on both descriptors, reported and followed by re-checks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrity import api
from integrity.demo import build_sandbox
from tests import rsyslog_harness
from tests.rsyslog_harness import Rsyslog
from tests.test_daemon import Daemon, parsed, with_msgid

IS_ROOT = os.geteuid() == 0
USER = "mi_watch_u"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not rsyslog_harness.available(), reason="rsyslog/rsyslog-gnutls missing"),
]
needs_root = pytest.mark.skipif(not IS_ROOT, reason="chown, setcap, users and limits need root")

QUEUE_CHILDREN = '[file.children]\ndeny = "g+rwx,o+rwx"\n'
FORWARD_RULE = """
[[file]]
path = "/home/*/.forward"
role = "aliases"
analyzer = "forward"
optional = true
"""


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    with Rsyslog(tmp_path / "rsyslog") as server:
        yield server


@pytest.fixture
def base() -> Iterator[Path]:
    """A work dir others can traverse (the test user must reach his home inside it)."""
    path = Path(tempfile.mkdtemp(prefix="mi_watch_"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def make_host(base: Path, *, extra_rules: str = "") -> tuple[Path, Path, Path]:
    """The demo sandbox, queue entries required to be root's, plus ``extra_rules``."""
    root, profiles = build_sandbox(base)
    demo = profiles / "demo.toml"
    text = demo.read_text().replace(QUEUE_CHILDREN, QUEUE_CHILDREN + 'owner = "root"\n')
    demo.write_text(text + extra_rules)
    return base, root, profiles


def init(base: Path, root: Path, profiles: Path) -> None:
    api.init(api.Options(root=str(root), db=str(base / "baseline.db"), profiles=("demo",),
                         profile_dirs=(str(profiles),)))  # fmt: skip


def start(base: Path, root: Path, profiles: Path, url: str, extra: str = "",
          prefix: list[str] | None = None) -> Daemon:  # fmt: skip
    daemon = Daemon(base, root, profiles, url)
    if extra:
        daemon.config.write_text(daemon.config.read_text().replace("[syslog]", extra + "[syslog]"))
    if prefix:
        daemon.argv = [*prefix, *daemon.argv]
    daemon.start()
    return daemon


def action_of(msg: dict[str, object]) -> str:
    """finding, realert or resolved: ``mail_integrity.alert_state`` since issue 9 gave
    ``event.action`` Elastic's file vocabulary (created, attributes_modified...)."""
    state = json.loads(str(msg["msg"])).get("mail_integrity", {}).get("alert_state", "")
    return "finding" if state == "new" else str(state)


def count(lines: list[str], msgid: str, action: str = "finding") -> int:
    return sum(1 for m in parsed(lines) if m["msgid"] == msgid and action_of(m) == action)


def first_index(lines: list[str], msgid: str, path: str | None = None) -> int | None:
    for i, m in enumerate(parsed(lines)):
        sd = m["sd"].get("mi@32473", {})  # type: ignore[union-attr]
        if m["msgid"] == msgid and (path is None or sd.get("path") == path):
            return i
    return None


@pytest.fixture
def user() -> Iterator[int]:
    """A real unprivileged user, removed afterwards."""
    if not IS_ROOT:
        pytest.skip("useradd needs root")
    subprocess.run(["userdel", USER], capture_output=True, check=False)
    subprocess.run(["useradd", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", USER],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield int(subprocess.run(["id", "-u", USER], capture_output=True, text=True,
                                 check=True).stdout)  # fmt: skip
    finally:
        subprocess.run(["userdel", USER], capture_output=True, check=False)


@needs_root
@pytest.mark.root
@pytest.mark.skipif(not shutil.which("setcap") or not shutil.which("setfacl"),
                    reason="setcap/setfacl missing")  # fmt: skip
def test_queue_entry_attribute_changes_are_seen_in_real_time(base, rsyslog):
    """chmod 4755, chown, setcap, setfacl on queue files and chmod of the queue dir: alerts."""
    base, root, profiles = make_host(base)
    queue = root / "var/spool/mqueue"
    for name in ("qfOWN", "qfCAP", "qfACL"):
        (queue / name).write_text("private mail\n")
        os.chmod(queue / name, 0o600)
    init(base, root, profiles)
    daemon = start(base, root, profiles, rsyslog.url("tcp"))
    try:
        rsyslog.wait_for(with_msgid("MI-LIFECYCLE-START"), 10)
        os.chmod(queue / "qfA1B2C3", 0o4755)
        lines = rsyslog.wait_for(with_msgid("MI-QUEUE-FILE-EXPOSED", "/var/spool/mqueue/qfA1B2C3"),
                                 10)  # fmt: skip
        os.chown(queue / "qfOWN", 65534, 65534)
        rsyslog.wait_for(with_msgid("MI-QUEUE-FILE-OWNER", "/var/spool/mqueue/qfOWN"), 10)
        subprocess.run(["setcap", "cap_net_raw+ep", str(queue / "qfCAP")], check=True)
        rsyslog.wait_for(with_msgid("MI-QUEUE-FILE-CAPABILITY", "/var/spool/mqueue/qfCAP"), 10)
        subprocess.run(["setfacl", "-m", "u:65534:r", str(queue / "qfACL")], check=True)
        lines = rsyslog.wait_for(
            lambda ls: any(m["msgid"] == "MI-QUEUE-FILE-EXPOSED"
                           and m["sd"]["mi@32473"]["path"] == "/var/spool/mqueue/qfACL"
                           and m["sd"]["mi@32473"]["attribute"] == "acl" for m in parsed(ls)),
            10)  # fmt: skip
        os.chmod(queue, 0o755)
        lines = rsyslog.wait_for(
            lambda ls: any(m["sd"].get("mi@32473", {}).get("path") == "/var/spool/mqueue"
                           and m["sd"]["mi@32473"].get("attribute") == "mode"
                           for m in parsed(ls)), 10)  # fmt: skip
        os.chmod(queue / "qfA1B2C3", 0o600)
        rsyslog.wait_for(
            lambda ls: any(m["msgid"] == "MI-QUEUE-FILE-EXPOSED" and action_of(m) == "resolved"
                           for m in parsed(ls)), 10)  # fmt: skip
    finally:
        daemon.stop()
    exposed = [m for m in parsed(lines) if m["msgid"] == "MI-QUEUE-FILE-EXPOSED"]
    assert exposed[0]["sd"]["mi@32473"]["severity"] == "critical"  # type: ignore[index]


def open_by(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds ``path`` open right now."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except OSError:
            continue
    return False


@needs_root
@pytest.mark.root
def test_setuid_alert_arrives_while_a_huge_file_is_being_hashed(base, rsyslog):
    """A 64 GiB root-owned file in /etc/mail is being hashed; a set-uid flip still arrives
    first (the attribute lane never waits for the content lane)."""
    base, root, profiles = make_host(base)
    init(base, root, profiles)
    daemon = start(base, root, profiles, rsyslog.url("tcp"))
    huge = root / "etc/mail/huge.db"
    try:
        rsyslog.wait_for(with_msgid("MI-LIFECYCLE-START"), 10)
        with huge.open("wb") as fh:
            fh.truncate(64 * 2**30)
        assert daemon.proc is not None
        deadline = time.monotonic() + 10
        while not open_by(daemon.proc.pid, huge) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert open_by(daemon.proc.pid, huge), "the content lane never opened the huge file"
        os.chmod(root / "usr/sbin/sendmail", 0o4755)
        lines = rsyslog.wait_for(with_msgid("MI-SETID-ADDED", "/usr/sbin/sendmail"), 20)
        still_hashing = open_by(daemon.proc.pid, huge)
    finally:
        daemon.stop()
    assert first_index(lines, "MI-FILE-ADDED", "/etc/mail/huge.db") is None
    assert still_hashing, "hashing ended before the alert: the test proved nothing"


@needs_root
@pytest.mark.root
def test_users_huge_forward_is_a_finding_and_never_delays_setuid(base, rsyslog, user):
    """A real user grows his .forward to 20 GB (sparse) while root sets the set-uid bit:
    both arrive, the .forward as MI-FILE-OVERSIZED without being read in full."""
    base, root, profiles = make_host(base, extra_rules=FORWARD_RULE)
    home = root / "home" / USER
    home.mkdir(parents=True)
    forward = home / ".forward"
    forward.write_text(f"{USER}@example.org\n")
    os.chown(home, user, user)
    os.chown(forward, user, user)
    os.chmod(forward, 0o644)
    for d in (root, root / "home"):
        os.chmod(d, 0o755)
    init(base, root, profiles)
    daemon = start(base, root, profiles, rsyslog.url("tcp"))
    try:
        rsyslog.wait_for(with_msgid("MI-LIFECYCLE-START"), 10)
        subprocess.run(["runuser", "-u", USER, "--", "truncate", "-s", "20G", str(forward)],
                       check=True)  # fmt: skip
        os.chmod(root / "usr/sbin/sendmail", 0o4755)
        lines = rsyslog.wait_for(
            lambda ls: (
                with_msgid("MI-SETID-ADDED", "/usr/sbin/sendmail")(ls)
                and with_msgid("MI-FILE-OVERSIZED", f"/home/{USER}/.forward")(ls)
            ),
            15,
        )
    finally:
        daemon.stop()
    msg = next(m for m in parsed(lines) if m["msgid"] == "MI-FILE-OVERSIZED")
    assert msg["sd"]["mi@32473"]["severity"] == "high"  # type: ignore[index]


def userns_works() -> bool:
    """Whether this kernel and container let root make a user namespace."""
    if not (shutil.which("unshare") and shutil.which("nsenter")):
        return False
    probe = ["unshare", "--user", "--map-root-user", "sh", "-c",
             "echo 5 > /proc/sys/user/max_inotify_watches"]  # fmt: skip
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def userns_limit(limit: int) -> list[str]:
    """A command prefix: a new user namespace (root mapped to root) whose inotify watch
    limit is ``limit``. The kernel checks every namespace level's limit, so this lowers
    the limit for the daemon alone, never for the rest of the machine."""
    script = f'echo {limit} > /proc/sys/user/max_inotify_watches && exec "$@"'
    return ["unshare", "--user", "--map-root-user", "sh", "-c", script, "sh"]


def set_ns_limit(pid: int, limit: int) -> None:
    subprocess.run(["nsenter", "-U", "-t", str(pid), "sh", "-c",
                    f"echo {limit} > /proc/sys/user/max_inotify_watches"], check=True)  # fmt: skip


@needs_root
@pytest.mark.root
@pytest.mark.skipif(not userns_works(), reason="no user namespaces (unshare) here")
def test_watch_limit_degrades_alerts_once_rescans_and_recovers(base, rsyslog):
    """With 3 watches allowed: binaries are watched (real time), the rest is rescanned
    every second, MI-WATCH-DEGRADED is sent once; a raised limit is picked up (resolved)."""
    base, root, profiles = make_host(base)
    init(base, root, profiles)
    daemon = start(base, root, profiles, rsyslog.url("tcp"),
                   extra="rescan_interval = 1.0\n", prefix=userns_limit(3))  # fmt: skip
    assert daemon.proc is not None
    try:
        lines = rsyslog.wait_for(with_msgid("MI-WATCH-DEGRADED"), 10)
        t0 = time.monotonic()
        os.chmod(root / "usr/sbin/sendmail", 0o4755)
        rsyslog.wait_for(with_msgid("MI-SETID-ADDED", "/usr/sbin/sendmail"), 10)
        binary_latency = time.monotonic() - t0
        os.chmod(root / "var/spool/mqueue/qfA1B2C3", 0o644)  # queue: not watched, rescanned
        rsyslog.wait_for(with_msgid("MI-QUEUE-FILE-EXPOSED", "/var/spool/mqueue/qfA1B2C3"), 10)
        time.sleep(2.5)  # two more rescans and retries: still degraded, not re-alerted
        set_ns_limit(daemon.proc.pid, 10_000)
        lines = rsyslog.wait_for(lambda ls: count(ls, "MI-WATCH-DEGRADED", "resolved") == 1, 10)
        time.sleep(0.3)
        os.chmod(root / "etc/mail/authinfo", 0o644)  # now watched again: real time
        lines = rsyslog.wait_for(with_msgid("MI-SECRET-READABLE", "/etc/mail/authinfo"), 10)
    finally:
        daemon.stop()
    assert count(lines, "MI-WATCH-DEGRADED") == 1
    assert binary_latency < 5.0  # watched, not waiting for a rescan


INOTIFY_QUEUE = Path("/proc/sys/fs/inotify/max_queued_events")


def overflow(a: Path, b: Path) -> None:
    """More distinct events than the kernel queue holds (no global sysctl touched): chmod
    two files in turn (identical consecutive events would be merged), modes unchanged."""
    n = int(INOTIFY_QUEUE.read_text()) + 2000
    mode_a, mode_b = a.stat().st_mode & 0o7777, b.stat().st_mode & 0o7777
    for _ in range(n // 2 + 1):
        os.chmod(a, mode_a)
        os.chmod(b, mode_b)


@needs_root
@pytest.mark.root
def test_queue_overflow_is_reported_and_queue_rescanned(base, rsyslog):
    """A queue event flood overflows the queue reader's own descriptor: MI-WATCH-OVERFLOW,
    and the exposed file inside the flood is still reported, the set-uid bit too."""
    base, root, profiles = make_host(base)
    queue = root / "var/spool/mqueue"
    for i in range(50):
        (queue / f"df{i:05d}").write_text("x")
        os.chmod(queue / f"df{i:05d}", 0o600)
    init(base, root, profiles)
    daemon = start(base, root, profiles, rsyslog.url("tcp"))
    assert daemon.proc is not None
    try:
        rsyslog.wait_for(with_msgid("MI-LIFECYCLE-START"), 10)
        os.kill(daemon.proc.pid, signal.SIGSTOP)
        overflow(queue / "df00001", queue / "df00002")
        os.chmod(queue / "df00025", 0o644)
        overflow(queue / "df00001", queue / "df00002")
        os.chmod(root / "usr/sbin/sendmail", 0o4755)
        os.kill(daemon.proc.pid, signal.SIGCONT)
        lines = rsyslog.wait_for(
            lambda ls: (
                with_msgid("MI-WATCH-OVERFLOW", "/var/spool/mqueue")(ls)
                and with_msgid("MI-QUEUE-FILE-EXPOSED", "/var/spool/mqueue/df00025")(ls)
                and with_msgid("MI-SETID-ADDED", "/usr/sbin/sendmail")(ls)
            ),
            20,
        )
    finally:
        daemon.stop()
    assert count(lines, "MI-QUEUE-FILE-EXPOSED") == 1  # the well-formed files: nothing


@needs_root
@pytest.mark.root
def test_config_dir_overflow_rechecks_attributes_and_reports(base, rsyslog):
    """An /etc/mail event flood overflows watchdog's descriptor: the set-uid bit and a
    loosened secret made inside the flood are reported, and so is the overflow."""
    base, root, profiles = make_host(base)
    init(base, root, profiles)
    daemon = start(base, root, profiles, rsyslog.url("tcp"))
    assert daemon.proc is not None
    mail = root / "etc/mail"
    try:
        rsyslog.wait_for(with_msgid("MI-LIFECYCLE-START"), 10)
        os.kill(daemon.proc.pid, signal.SIGSTOP)
        overflow(mail / "sendmail.cf", mail / "aliases")
        os.chmod(mail / "authinfo", 0o644)
        os.chmod(root / "usr/sbin/sendmail", 0o4755)
        overflow(mail / "sendmail.cf", mail / "aliases")
        os.kill(daemon.proc.pid, signal.SIGCONT)
        lines = rsyslog.wait_for(
            lambda ls: (
                with_msgid("MI-WATCH-OVERFLOW", "/")(ls)
                and with_msgid("MI-SETID-ADDED", "/usr/sbin/sendmail")(ls)
                and with_msgid("MI-SECRET-READABLE", "/etc/mail/authinfo")(ls)
            ),
            20,
        )
    finally:
        daemon.stop()
    assert first_index(lines, "MI-SETID-ADDED") is not None


DROPIN_RULE = """
[[file]]
path = "/etc/systemd/system/postfix*.d/**"
role = "config"
analyzer = "systemd-unit"
optional = true
note = "test: drop-ins of the MTA's unit"
"""


@needs_root
@pytest.mark.root
def test_file_written_into_a_new_dropin_dir_is_seen_at_once(base, rsyslog):
    """A drop-in directory created after start, with a unit file written into it at once:
    the new directory is watched and its file judged without waiting for a full verify."""
    base, root, profiles = make_host(base, extra_rules=DROPIN_RULE)
    (root / "etc/systemd/system").mkdir(parents=True, exist_ok=True)
    init(base, root, profiles)
    daemon = start(base, root, profiles, rsyslog.url("tcp"))
    path = "/etc/systemd/system/postfix.service.d/override.conf"
    try:
        rsyslog.wait_for(with_msgid("MI-LIFECYCLE-START"), 10)
        dropin = root / path.lstrip("/")
        dropin.parent.mkdir()
        dropin.write_text("[Service]\nExecStartPre=/bin/sh -c /tmp/.x/run\n")
        lines = rsyslog.wait_for(with_msgid("MI-UNIT-EXEC-UNSAFE", path), 20)
    finally:
        daemon.stop()
    assert first_index(lines, "MI-UNIT-EXEC-UNSAFE", path) is not None
