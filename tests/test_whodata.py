"""Who-data: audit record parsing (pure), and attribution with the real kernel audit (root).

The kernel tests add watch rules and may switch auditing on; the ``audit_state`` fixture
puts the enabled flag and the rule list back as they were, whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrity import auditnl, auditrec, emit, report, whodata, whojoin
from integrity.auditrec import KEY, Assembler, read_log, redact_args, split_record, value
from integrity.model import Actor, Finding, Severity
from integrity.syslog import format_sd

SYSCALL_CHMOD = (
    "audit(1700000000.123:42): arch=c000003e syscall=268 success=yes exit=0 a0=ffffff9c "
    "items=1 ppid=10 pid=11 auid=1000 uid=1001 gid=1001 euid=1001 suid=1001 fsuid=1001 "
    'egid=1001 sgid=1001 fsgid=1001 tty=pts0 ses=3 comm="chmod" exe="/usr/bin/chmod" '
    f'key="{KEY}"'
)
PATH_REL = (
    'audit(1700000000.123:42): item=0 name="aliases" inode=77 dev=fe:00 mode=0100644 '
    "ouid=0 ogid=0 rdev=00:00 nametype=NORMAL"
)
CWD = 'audit(1700000000.123:42): cwd="/etc/mail"'
# "chmod 0664 /etc/mail/aliases" NUL-separated, hex as the kernel writes it
PROCTITLE = (
    "audit(1700000000.123:42): proctitle=" + b"chmod\x000664\x00/etc/mail/aliases".hex().upper()
)


def _event() -> auditrec.AuditEvent:
    asm = Assembler()
    for rtype, text in [(1300, SYSCALL_CHMOD), (1307, CWD), (1302, PATH_REL), (1327, PROCTITLE)]:
        assert asm.add(rtype, text) == []
    (event,) = asm.add(auditrec.EOE, "audit(1700000000.123:42): ")
    return event


# --- pure ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "name", "expected"),
    [
        ('"/usr/bin/chmod"', "exe", "/usr/bin/chmod"),
        ("2F746D702F6120622E747874", "name", "/tmp/a b.txt"),  # hex: has a space
        ("(null)", "key", None),
        ("(none)", "tty", None),
        ("1234", "pid", "1234"),  # a number is not hex-decoded
    ],
)
def test_value_decodes_quoted_hex_and_null(raw, name, expected):
    """Field values: quotes stripped, untrusted strings hex-decoded, (null)/(none) -> None."""
    assert value(raw, name) == expected


def test_split_record_drops_enriched_part():
    """auditd's enriched log format (fields after 0x1d) does not leak into raw fields."""
    event_id, when, fields = split_record('audit(1.5:7): uid=0 a=1\x1dUID="root"')  # type: ignore[misc]
    assert (event_id, when, fields) == ("1.5:7", 1.5, {"uid": "0", "a": "1"})


def test_assembler_joins_records_of_one_serial():
    """SYSCALL+CWD+PATH+PROCTITLE of one serial make one event; relative names join the CWD."""
    event = _event()
    assert event.event_id == "1700000000.123:42" and event.key == KEY
    assert event.paths[0].name == "/etc/mail/aliases" and event.paths[0].inode == 77
    assert event.args == ("chmod", "0664", "/etc/mail/aliases")
    assert event.touches("/etc/mail/aliases") and not event.touches("/etc/mail/other")


def test_assembler_is_bounded_without_eoe():
    """Events whose EOE never comes are closed once too many are open (bounded memory)."""
    asm = Assembler(limit=4)
    out = []
    for i in range(10):
        out += asm.add(1300, f'audit(1.0:{i}): pid=1 key="{KEY}"')
    assert len(asm.open) == 4 and len(out) == 6


def test_actor_names_users_and_unset_ids():
    """The actor carries uid, euid, login uid with names; an unset login uid becomes None."""
    names = {1000: "alice", 1001: "bob"}
    actor = auditrec.actor(_event(), user_name=names.get, redact=redact_args)
    assert (actor.uid, actor.user, actor.auid, actor.auser) == (1001, "bob", 1000, "alice")
    assert (actor.pid, actor.ppid, actor.exe, actor.tty, actor.session) == (
        11, 10, "/usr/bin/chmod", "pts0", 3)  # fmt: skip
    assert actor.syscall == "fchmodat"
    unset = auditrec.build("1.0:1", 1.0, [(1300, {"auid": "4294967295", "ses": "4294967295"})])
    a = auditrec.actor(unset, user_name=names.get, redact=redact_args)
    assert a.auid is None and a.session is None and a.auser is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("mysql", "-pHunter2", "db"), ("mysql", "-p[redacted]", "db")),
        (("sshpass", "-p", "Hunter2", "ssh"), ("sshpass", "-p", "[redacted]", "ssh")),
        (("tool", "--password", "Hunter2"), ("tool", "--password", "[redacted]")),
        (("tool", "--password=Hunter2"), ("tool", "--password=[redacted]")),
        (("curl", "https://u:Hunter2@h/x"), ("curl", "https://u:[redacted]@h/x")),
        (("mkdir", "-p", "/etc/mail/x"), ("mkdir", "-p", "/etc/mail/x")),
    ],
)
def test_redact_args_hides_passwords_only(args, expected):
    """Command-line passwords are redacted; ordinary arguments (mkdir -p) are kept."""
    assert redact_args(args) == expected


def test_read_log_filters_key_and_time(tmp_path):
    """auditd log lines: events of our key since the given time, grouped by serial."""
    lines = [
        "type=SYSCALL msg=" + SYSCALL_CHMOD.replace("1700000000.123:42", "1600000000.000:1"),
        "type=PATH msg=" + PATH_REL.replace("1700000000.123:42", "1600000000.000:1"),
        "type=SYSCALL msg=" + SYSCALL_CHMOD,
        "type=CWD msg=" + CWD,
        "type=PATH msg=" + PATH_REL,
        "type=PROCTITLE msg=" + PROCTITLE,
        "type=SYSCALL msg=" + SYSCALL_CHMOD.replace(":42", ":43").replace(f'"{KEY}"', "(null)"),
    ]
    events = list(read_log(lines, since=1650000000.0))
    assert [e.event_id for e in events] == ["1700000000.123:42"]
    assert events[0].paths[0].name == "/etc/mail/aliases"


def test_watch_rule_packs_like_auditctl_and_lists_back():
    """A packed rule decodes to its path and key (the layout LIST_RULES returns)."""
    data = auditnl.WatchRule("/etc/mail/aliases", "wa").pack()
    assert auditnl.rule_strings(data) == (["/etc/mail/aliases"], [KEY])


def test_watch_rules_are_minimal():
    """One subtree rule per recursive dir; files inside it get none; dirs only attributes."""
    rules = auditnl.watch_rules(
        ["/etc/postfix/main.cf", "/usr/sbin/sendmail"], ["/etc/postfix"], ["/etc"],
        ["/var/spool/postfix"],
    )  # fmt: skip
    assert rules == [
        auditnl.WatchRule("/etc/postfix", "wa", tree=True),
        auditnl.WatchRule("/usr/sbin/sendmail", "wa"),
        auditnl.WatchRule("/etc", "a"),
        auditnl.WatchRule("/var/spool/postfix", "a"),
    ]


def test_ring_is_bounded_and_keyed_by_path_and_inode():
    """The ring keeps the newest events; lookups by path or inode, by time and by kind."""
    ring = whojoin.Ring(size=3)
    for i in range(5):
        rec = {"arch": "c000003e", "syscall": "268", "key": f'"{KEY}"'}
        ring.add(auditrec.build(f"{i}.0:{i}", float(i), [(1300, rec),
                 (1302, {"name": f'"/f{i % 2}"', "inode": str(100 + i % 2)})]))  # fmt: skip
    assert len(ring.events) == 3 and sum(len(v) for v in ring.index.values()) == 6
    hit = ring.latest("/f0", None, 0.0, "attr")
    assert hit is not None and hit.event_id == "4.0:4"
    assert ring.latest("/nope", 101, 0.0, None).event_id == "3.0:3"  # type: ignore[union-attr]
    assert ring.latest("/f0", None, 4.5, None) is None
    assert ring.latest("/f0", None, 0.0, "write") is None  # a chmod does not explain content


def test_actor_in_json_text_syslog_and_ecs():
    """An attributed finding: JSON actor object, a 'by:' line, SD params and ECS user/process."""
    actor = auditrec.actor(_event(), user_name={1000: "alice", 1001: "bob"}.get,
                           redact=redact_args)  # fmt: skip
    f = Finding("/etc/mail/aliases", "MI-PERM-LOOSENED", Severity.HIGH, "m", "mode",
                0o644, 0o664, actor=actor)  # fmt: skip
    j = f.to_json()["actor"]
    assert j["user"] == {"id": "1001", "name": "bob", "effective": {"id": "1001", "name": "bob"},
                         "audit": {"id": "1000", "name": "alice"}}  # fmt: skip
    assert j["process"]["executable"] == "/usr/bin/chmod" and j["process"]["parent"] == {"pid": 10}
    text = "\n".join(report.render_finding(f))
    assert "by: uid 1001 (bob), login uid 1000 (alice), /usr/bin/chmod pid 11" in text
    _, _, sd, body = emit.finding_event(f, host="h")
    assert sd["actor_user"] == "bob" and sd["actor_login"] == "alice" and sd["audit_id"]
    assert body["user"]["audit"]["name"] == "alice" and body["process"]["pid"] == 11
    assert body["process"]["args"] == ["chmod", "0664", "/etc/mail/aliases"]
    assert body["auditd"]["session"] == "3" and body["auditd"]["data"]["tty"] == "pts0"
    assert 'actor_exe="/usr/bin/chmod"' in format_sd([("mi@32473", sd)])


def test_unattributed_finding_says_why():
    """No actor: JSON, text, SD and ECS all carry the reason; nothing is guessed."""
    f = Finding("/x", "MI-R", Severity.HIGH, "m", actor=Actor(reason="kernel audit is disabled"))
    assert f.to_json()["actor"] == {"attributed": False, "reason": "kernel audit is disabled"}
    assert "by: unknown (kernel audit is disabled)" in "\n".join(report.render_finding(f))
    _, _, sd, body = emit.finding_event(f, host="h")
    assert sd["actor"] == "unattributed: kernel audit is disabled"
    assert "user" not in body and body["labels"]["actor"] == sd["actor"]


def test_finding_without_actor_keeps_product_shape():
    """Findings never run through who-data keep PRODUCT.md's JSON keys exactly."""
    f = Finding("/x", "MI-R", Severity.HIGH, "m")
    assert set(f.to_json()) == {"path", "rule", "severity", "attribute", "before", "after",
                                "message"}  # fmt: skip


def test_audit_disabled_at_runtime_reported_once_then_unattributed():
    """A CONFIG_CHANGE turning audit off: one problem report, then findings say why."""
    problems: list[tuple[str, str]] = []
    w = whodata.Whodata("/", on_problem=lambda r, m: problems.append((r, m)),
                        on_update=lambda f: None, wait=0.0)  # fmt: skip
    off = b"audit(1.0:9): op=set audit_enabled=0 old=1 auid=1000 ses=2 res=1"
    msg = _nlmsg(1305, off) + _nlmsg(auditrec.EOE, b"audit(1.0:9): ")
    w.feed(msg)
    w.feed(msg)
    assert [r for r, _ in problems] == [whodata.UNAVAILABLE]
    (f,) = w.attribute([Finding("/x", "MI-R", Severity.HIGH, "m", "mode")])
    assert f.actor is not None and "disabled" in f.actor.reason and "auid=1000" in f.actor.reason


def _nlmsg(rtype: int, body: bytes) -> bytes:
    data = auditnl._HDR.pack(16 + len(body), rtype, 0, 0, 0) + body
    return data + b"\0" * (-len(data) % 4)


# --- the real kernel audit ------------------------------------------------------------


def _audit_usable() -> str:
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("auditctl") is None:
        return "auditctl missing (apt-get install auditd)"
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, auditnl.NETLINK_AUDIT)
        s.bind((0, 1))
        s.close()
        with auditnl.Netlink() as nl:
            nl.status()
    except OSError as exc:
        return f"kernel audit unusable here: {exc}"
    return ""


_UNUSABLE = _audit_usable()
kernel = pytest.mark.skipif(bool(_UNUSABLE), reason=_UNUSABLE or "kernel audit usable")


def _enabled() -> int:
    with auditnl.Netlink() as nl:
        return nl.status()["enabled"]


def _auditctl(*args: str) -> str:
    return subprocess.run(["auditctl", *args], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


@pytest.fixture
def audit_state() -> Iterator[None]:
    """Save the audit enabled flag and rules; restore both after the test."""
    enabled = _enabled()
    listed = _auditctl("-l")
    with auditnl.Netlink() as nl:
        before = [raw for *_, raw in nl.rules()]
    try:
        yield
    finally:
        with auditnl.Netlink() as nl:
            for *_, raw in nl.rules():
                if raw not in before:
                    with contextlib.suppress(OSError):
                        nl.delete(raw)
            if nl.status()["enabled"] != enabled:
                nl.set_enabled(enabled)
        assert _auditctl("-l") == listed
        assert _enabled() == enabled


@pytest.fixture
def test_user() -> Iterator[str]:
    name = "mi_who_user"
    subprocess.run(["userdel", name], capture_output=True)
    subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=True)


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory every user can reach (pytest's tmp dirs are root-only)."""
    path = Path(tempfile.mkdtemp(prefix="mi_who_", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def _collector(root: str = "/", **kw):  # type: ignore[no-untyped-def]
    problems: list[tuple[str, str]] = []
    updates: list[Finding] = []
    w = whodata.Whodata(root, on_problem=lambda r, m: problems.append((r, m)),
                        on_update=updates.append, **kw)  # fmt: skip
    return w, problems, updates


@kernel
@pytest.mark.root
def test_user_chmod_attributed_to_user_and_chmod(audit_state, test_user, public_dir):
    """A test user's chmod on a monitored file names that user and /usr/bin/chmod."""
    target = public_dir / "aliases"
    target.write_text("root: admin\n")
    os.chown(target, int(subprocess.check_output(["id", "-u", test_user])), 0)
    w, problems, _ = _collector()
    w.start([auditnl.WatchRule(str(target), "wa")])
    try:
        subprocess.run(["/usr/bin/chmod", "0666", str(target)], user=test_user, check=True)
        (f,) = w.attribute([Finding(str(target), "MI-PERM-WORLD-WRITABLE", Severity.CRITICAL,
                                    "m", "mode", 0o644, 0o666)])  # fmt: skip
    finally:
        w.stop()
    assert problems == []
    a = f.actor
    assert a is not None and a.attributed, a
    assert a.user == test_user and a.euser == test_user
    assert a.exe == "/usr/bin/chmod" and a.args == ("/usr/bin/chmod", "0666", str(target))
    assert a.syscall in ("fchmodat", "fchmodat2", "chmod")


@kernel
@pytest.mark.root
def test_root_edit_with_python_attributed_to_exe_and_login_uid(audit_state, public_dir):
    """A root edit through python3, after a login as uid 4242, names python and auid 4242."""
    target = public_dir / "main.cf"
    target.write_text("relayhost =\n")
    w, problems, _ = _collector()
    w.start([auditnl.WatchRule(str(target), "wa")])
    edit = (
        "open('/proc/self/loginuid', 'w').write('4242');"  # what pam_loginuid does at login
        f"open({str(target)!r}, 'a').write('relayhost = [evil]\\n')"
    )
    try:
        subprocess.run([sys.executable, "-c", edit], check=True)
        (f,) = w.attribute([Finding(str(target), "MI-CONTENT-CHANGED", Severity.MEDIUM, "m",
                                    "digest")])  # fmt: skip
    finally:
        w.stop()
    assert problems == []
    a = f.actor
    assert a is not None and a.attributed, a
    assert a.uid == 0 and a.user == "root" and a.auid == 4242 and a.session is not None
    assert a.exe == os.path.realpath(sys.executable) and a.syscall in ("openat", "open")


@kernel
@pytest.mark.root
def test_late_record_sends_an_attribution_update(audit_state, public_dir):
    """A finding published before its record goes out unattributed, then gets an update."""
    target = public_dir / "aliases"
    target.write_text("x\n")
    w, _, updates = _collector(wait=0.0)
    w.start([auditnl.WatchRule(str(target), "wa")])
    try:
        f = Finding(str(target), "MI-PERM-LOOSENED", Severity.HIGH, "m", "mode")
        (first,) = w.attribute([f])  # nothing happened yet: no record
        os.chmod(target, 0o664)
        deadline = time.monotonic() + 5
        while not updates and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        w.stop()
    assert first.actor is not None and not first.actor.attributed
    assert "no audit record" in first.actor.reason
    assert len(updates) == 1 and updates[0].actor is not None and updates[0].actor.attributed
    _, _, _, body = emit.attribution_event(updates[0], host="h")
    assert (
        body["event"]["action"] == "attribution" and body["log"]["syslog"]["severity"]["code"] == 6
    )


@kernel
@pytest.mark.root
def test_audit_off_gives_one_warning_and_unattributed_findings(audit_state, public_dir):
    """Audit disabled and read-only mode: one MI-WHODATA-UNAVAILABLE; findings say why."""
    target = public_dir / "aliases"
    target.write_text("x\n")
    _auditctl("-e", "0")
    w, problems, _ = _collector(manage=False)
    w.start([auditnl.WatchRule(str(target), "wa")])
    try:
        os.chmod(target, 0o666)
        found = w.attribute([Finding(str(target), "MI-R", Severity.HIGH, "m", "mode")] * 2)
    finally:
        w.stop()
    assert [r for r, _ in problems] == [whodata.UNAVAILABLE]
    assert "disabled" in problems[0][1]
    assert all(f.actor is not None and "disabled" in f.actor.reason for f in found)


@kernel
@pytest.mark.root
def test_auto_mode_enables_audit_and_restores_it(audit_state, public_dir):
    """Without auditd, the collector enables audit and adds its rules, and takes both back."""
    _auditctl("-e", "0")
    target = public_dir / "aliases"
    target.write_text("x\n")
    w, problems, _ = _collector()
    w.start([auditnl.WatchRule(str(target), "wa"), auditnl.WatchRule(str(public_dir), "a")])
    try:
        assert _enabled() == 1
        assert f"-w {target} -p wa -k {KEY}" in _auditctl("-l")
    finally:
        w.stop()
    assert problems == []
    assert _enabled() == 0 and KEY not in _auditctl("-l")


def test_whodata_event_shape():
    """The degraded/unavailable event: rule id as msgid, warning level, reason in SD and body."""
    sev, msgid, sd, body = emit.whodata_event(whodata.UNAVAILABLE, "no CAP_AUDIT_READ", host="h")
    assert (sev, msgid, sd["reason"]) == ("medium", whodata.UNAVAILABLE, "no CAP_AUDIT_READ")
    assert (
        body["rule"]["id"] == whodata.UNAVAILABLE and body["log"]["syslog"]["severity"]["code"] == 4
    )
    json.dumps(body)


# --- the daemon end to end: real audit, real rsyslogd -----------------------------------


@pytest.fixture
def sandbox(public_dir: Path) -> tuple[Path, Path, Path]:
    """The demo host with a baseline, under a directory other users can reach."""
    from integrity import api
    from integrity.demo import build_sandbox

    base = public_dir / "host"
    base.mkdir()
    root, profiles = build_sandbox(base)
    opts = api.Options(root=str(root), db=str(base / "baseline.db"), profiles=("demo",),
                       profile_dirs=(str(profiles),))  # fmt: skip
    api.init(opts)
    return base, root, profiles


def _daemon_messages(rsyslog, msgid: str, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    from tests.rsyslog_harness import parse_5424

    lines = rsyslog.wait_for(
        lambda ls: any(parse_5424(m)["msgid"] == msgid for m in ls), timeout)  # fmt: skip
    return [m for m in map(parse_5424, lines) if m["msgid"] == msgid]


@pytest.fixture
def rsyslog(tmp_path: Path):  # type: ignore[no-untyped-def]
    from tests import rsyslog_harness

    if not rsyslog_harness.available():
        pytest.skip("rsyslog/rsyslog-gnutls missing")
    with rsyslog_harness.Rsyslog(tmp_path / "rsyslog") as server:
        yield server


@kernel
@pytest.mark.root
@pytest.mark.slow
def test_daemon_names_the_user_in_syslog(audit_state, test_user, sandbox, rsyslog):
    """watch: a test user's chmod of a file it owns reaches rsyslog with user and exe."""
    from tests.rsyslog_harness import parse_5424
    from tests.test_daemon import Daemon

    base, root, profiles = sandbox
    aliases = root / "etc/mail/aliases"
    uid = int(subprocess.check_output(["id", "-u", test_user]))
    daemon = Daemon(base, root, profiles, rsyslog.url("tcp"))
    os.chown(aliases, uid, 0)  # after the baseline: an owner finding at start, not our chmod
    daemon.start()
    try:
        subprocess.run(["/usr/bin/chmod", "0666", str(aliases)], user=test_user, check=True)
        msgs = _daemon_messages(rsyslog, "MI-PERM-WORLD-WRITABLE")
    finally:
        daemon.stop()
    sd = msgs[0]["sd"]["mi@32473"]
    assert sd["actor_user"] == test_user and sd["actor_exe"] == "/usr/bin/chmod", sd
    body = json.loads(msgs[0]["msg"])
    assert body["user"]["name"] == test_user and body["process"]["executable"] == "/usr/bin/chmod"
    assert body["process"]["args"][-1] == str(aliases)
    ids = [parse_5424(m)["msgid"] for m in rsyslog.messages()]
    assert whodata.DEGRADED not in ids and whodata.UNAVAILABLE not in ids  # every rule took


@kernel
@pytest.mark.root
@pytest.mark.slow
def test_daemon_with_audit_off_warns_once_and_alerts_unattributed(audit_state, sandbox, rsyslog):
    """watch, audit disabled, read-only mode: one MI-WHODATA-UNAVAILABLE, alerts still flow."""
    from tests.rsyslog_harness import parse_5424
    from tests.test_daemon import Daemon

    base, root, profiles = sandbox
    _auditctl("-e", "0")
    daemon = Daemon(base, root, profiles, rsyslog.url("tcp"))
    daemon.config.write_text(daemon.config.read_text().replace(
        "[watch]\n", '[watch]\nwhodata = "read"\n'))  # fmt: skip
    daemon.start()
    try:
        os.chmod(root / "usr/sbin/sendmail", 0o4755)
        msgs = _daemon_messages(rsyslog, "MI-SETID-ADDED")
        os.chmod(root / "etc/mail/aliases", 0o666)
        _daemon_messages(rsyslog, "MI-PERM-WORLD-WRITABLE")
    finally:
        daemon.stop()
    assert "actor" in msgs[0]["sd"]["mi@32473"]
    assert "disabled" in msgs[0]["sd"]["mi@32473"]["actor"]
    every = [parse_5424(m) for m in rsyslog.messages()]
    assert [m["msgid"] for m in every].count(whodata.UNAVAILABLE) == 1


# --- offline: auditd's log ----------------------------------------------------------------


def _log_lines(path: str, when: float, serial: int) -> list[str]:
    stamp = f"audit({when:.3f}:{serial}): "
    return [
        "type=SYSCALL msg=" + SYSCALL_CHMOD.replace("audit(1700000000.123:42): ", stamp),
        "type=CWD msg=" + stamp + 'cwd="/"',
        "type=PATH msg=" + stamp + f'item=0 name="{path}" inode=5 dev=fe:00 nametype=NORMAL',
        "type=PROCTITLE msg=" + stamp + "proctitle=" + f"chmod\0{path}".encode().hex().upper(),
    ]


@pytest.mark.slow
def test_verify_and_history_name_who_from_the_audit_log(tmp_path, monkeypatch):
    """verify and history show the actor auditd logged for a path since the baseline."""
    from integrity import api
    from integrity.demo import build_sandbox

    base = tmp_path / "host"
    base.mkdir()
    root, profiles = build_sandbox(base)
    db = str(base / "baseline.db")
    opts = api.Options(root=str(root), db=db, profiles=("demo",), profile_dirs=(str(profiles),))
    api.init(opts)
    aliases = root / "etc/mail/aliases"
    os.chmod(aliases, 0o666)
    logs = tmp_path / "audit"
    logs.mkdir()
    lines = _log_lines(str(aliases), time.time() - 86400 * 30, 7)  # before the baseline
    lines += _log_lines(str(aliases), time.time() + 1, 8)
    (logs / "audit.log").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("MAIL_INTEGRITY_AUDIT_LOG_DIR", str(logs))
    argv = ["--root", str(root), "--db", db, "--profile", "demo", "--profile-dir", str(profiles)]
    run = subprocess.run([sys.executable, "-m", "integrity", "verify", *argv, "--format", "json"],
                         capture_output=True, text=True)  # fmt: skip
    found = [f for f in json.loads(run.stdout)["findings"] if f["path"] == "/etc/mail/aliases"]
    assert found and all(f["actor"]["process"]["executable"] == "/usr/bin/chmod" for f in found)
    assert found[0]["actor"]["event_id"].endswith(":8")  # not the record from before
    hist = subprocess.run([sys.executable, "-m", "integrity", "history", *argv],
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert "by: uid 1001" in hist.stdout and "/usr/bin/chmod pid 11" in hist.stdout


@pytest.fixture
def auditd(tmp_path: Path) -> Iterator[Path]:
    """A real auditd in the foreground, logging into a private directory; stopped after."""
    if shutil.which("auditd") is None:
        pytest.skip("auditd missing (apt-get install auditd)")
    with auditnl.Netlink() as nl:
        if nl.status()["pid"]:
            pytest.skip("an auditd is already running")
    conf = tmp_path / "auditd"
    (conf / "plugins.d").mkdir(parents=True)
    log_dir = tmp_path / "auditlog"
    log_dir.mkdir()
    mine = {"log_file": f"{log_dir}/audit.log", "plugin_dir": f"{conf}/plugins.d", "freq": "1"}
    lines = []
    for line in Path("/etc/audit/auditd.conf").read_text().splitlines():  # the stock config
        key = line.split("=", 1)[0].strip()
        lines.append(f"{key} = {mine[key]}" if key in mine else line)
    (conf / "auditd.conf").write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(["auditd", "-n", "-s", "nochange", "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with auditnl.Netlink() as nl:
                if nl.status()["pid"] == proc.pid:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.skip("auditd did not start here")
            time.sleep(0.05)
        yield log_dir
    finally:
        proc.terminate()
        proc.wait(10)


@kernel
@pytest.mark.root
@pytest.mark.slow
def test_coexists_with_auditd_and_its_rules(audit_state, auditd, public_dir):
    """With auditd running and our rule loaded by it: we read, auditd still logs, we use
    its rules (and leave them), and the offline reader finds the same event in its log."""
    target = public_dir / "aliases"
    target.write_text("x\n")
    _auditctl("-e", "1")
    _auditctl("-w", str(target), "-p", "wa", "-k", KEY)  # what augenrules loads
    w, problems, _ = _collector()
    w.start([auditnl.WatchRule(str(public_dir / "other"), "wa")])
    try:
        os.chmod(target, 0o600)
        (f,) = w.attribute([Finding(str(target), "MI-R", Severity.HIGH, "m", "mode")])
    finally:
        w.stop()
    assert problems == [] and f.actor is not None and f.actor.attributed
    assert f"-w {target} -p wa -k {KEY}" in _auditctl("-l")  # auditd's rule left in place
    assert str(public_dir / "other") not in _auditctl("-l")  # none of ours added
    deadline = time.monotonic() + 5
    while True:
        (g,), problem = whojoin.offline([Finding(str(target), "MI-R", Severity.HIGH, "m", "mode")],
                                        "/", 0.0, str(auditd))  # fmt: skip
        if g.actor is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert problem is None and g.actor is not None and g.actor.event_id == f.actor.event_id


@pytest.mark.root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) missing")
def test_without_capability_one_warning_and_unattributed():
    """A process without CAP_AUDIT_READ: MI-WHODATA-UNAVAILABLE naming it; findings say why."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    script = (
        "from integrity import whodata\n"
        "from integrity.model import Finding, Severity\n"
        "p = []\n"
        "w = whodata.Whodata('/', on_problem=lambda r, m: p.append(r + ': ' + m),"
        " on_update=print)\n"
        "w.start([])\n"
        "(f,) = w.attribute([Finding('/x', 'R', Severity.HIGH, 'm', 'mode')])\n"
        "w.stop()\n"
        "print(p)\n"
        "print(f.actor.reason)\n"
    )
    run = subprocess.run(
        ["setpriv", "--bounding-set", "-audit_read,-audit_control", sys.executable, "-c", script],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    out = run.stdout.splitlines()
    assert (
        out[-2] == "['MI-WHODATA-UNAVAILABLE: cannot read kernel audit events: no CAP_AUDIT_READ']"
    )
    assert out[-1] == "cannot read kernel audit events: no CAP_AUDIT_READ"


def test_rules_text_uses_path_for_inodes_and_dir_for_subtrees():
    """The rules file: -F dir= for subtrees, -F path= for a file or a directory's own inode."""
    text = auditnl.rules_text([auditnl.WatchRule("/etc/postfix", "wa", tree=True),
                               auditnl.WatchRule("/var/spool/postfix", "a")])  # fmt: skip
    assert text.splitlines()[1:] == [
        f"-a always,exit -F dir=/etc/postfix -F perm=wa -k {KEY}",
        f"-a always,exit -F path=/var/spool/postfix -F perm=a -k {KEY}",
    ]


def test_config_rejects_unknown_whodata_mode(tmp_path):
    """[watch] whodata accepts auto, read or off; anything else names the file and key."""
    from integrity.config import load_config
    from integrity.errors import ConfigError

    cfg = tmp_path / "c.toml"
    cfg.write_text('[watch]\nwhodata = "yes"\n')
    with pytest.raises(ConfigError, match="whodata must be auto, read or off"):
        load_config(str(cfg))
    cfg.write_text('[watch]\nwhodata = "read"\nwhodata_wait = 0.02\n')
    assert load_config(str(cfg)).watch.whodata == "read"


@kernel
@pytest.mark.root
def test_rules_file_loads_with_auditctl_as_the_daemon_would_add_them(audit_state, public_dir):
    """auditctl -R of our rules text loads the same rules the daemon adds over netlink."""
    (public_dir / "f").write_text("x")
    rules = [auditnl.WatchRule(str(public_dir), "a"), auditnl.WatchRule(str(public_dir / "f")),
             auditnl.WatchRule(str(public_dir / "sub"), "wa", tree=True)]  # fmt: skip
    (public_dir / "sub").mkdir()
    path = public_dir / "mail-integrity.rules"
    path.write_text(auditnl.rules_text(rules))
    subprocess.run(["auditctl", "-R", str(path)], check=True, capture_output=True)
    with auditnl.Netlink() as nl:
        by_auditctl = sorted(raw for _, keys, raw in nl.rules() if KEY in keys)
        for raw in by_auditctl:
            nl.delete(raw)
        for rule in rules:
            nl.add(rule)
        by_us = sorted(raw for _, keys, raw in nl.rules() if KEY in keys)
        for raw in by_us:
            nl.delete(raw)
    assert len(by_us) == 3 and by_auditctl == by_us  # the kernel holds the same rules


@kernel
@pytest.mark.root
def test_killed_daemon_state_is_undone_by_the_next_one(audit_state, public_dir, tmp_path):
    """A collector killed with SIGKILL leaves audit on and its rules; the next one (same
    state directory) replaces the rules and switches auditing back off at its stop."""
    with auditnl.Netlink() as nl:
        if nl.status()["pid"]:
            pytest.skip("an auditd runs: rules of our key are then taken as loaded by it")
    _auditctl("-e", "0")
    target = public_dir / "aliases"
    target.write_text("x\n")
    script = (
        "import os, signal\n"
        "from integrity import auditnl, whodata\n"
        "w = whodata.Whodata('/', on_problem=print, on_update=print,"
        f" state_dir={str(tmp_path)!r})\n"
        f"w.start([auditnl.WatchRule({str(target)!r})])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parent.parent)
    assert _enabled() == 1 and KEY in _auditctl("-l")
    assert (tmp_path / "whodata-enabled-audit").exists()
    w, problems, _ = _collector(state_dir=str(tmp_path))
    w.start([auditnl.WatchRule(str(target))])
    w.stop()
    assert problems == []
    assert _enabled() == 0 and KEY not in _auditctl("-l")
    assert not (tmp_path / "whodata-enabled-audit").exists()


def test_unaudited_path_is_not_waited_for():
    """A finding no audit rule of ours covers (a queue entry) says so at once, without the
    bounded wait; a covered one still waits for its record."""
    w = whodata.Whodata("/", manage=True, wait=0.5, state_dir=None,
                        on_problem=lambda *_: None, on_update=lambda _f: None)  # fmt: skip
    w.covered = (frozenset({"/etc/aliases"}), ("/etc/mail/",))
    queue = Finding("/var/spool/mqueue/qfX", "MI-QUEUE-FILE-EXPOSED", Severity.HIGH, "m", "mode")
    start = time.monotonic()
    (got,) = w.attribute([queue])
    assert time.monotonic() - start < 0.4
    assert got.actor is not None and "no audit rule covers" in (got.actor.reason or "")
    covered = Finding("/etc/mail/sendmail.cf", "MI-R", Severity.HIGH, "m", "mode")
    start = time.monotonic()
    (got,) = w.attribute([covered])
    assert time.monotonic() - start >= 0.5
    assert got.actor is not None and "within 500 ms" in (got.actor.reason or "")
