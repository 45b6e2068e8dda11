"""Findings -> SIEM events (ECS body, SD params), logging setup, and the overflow hook."""

from __future__ import annotations

import grp
import json
import logging
import os
import pwd
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from integrity import emit
from integrity.emit import (
    OVERFLOW_LOGGER,
    VALUE_MAX,
    add_overflow_hook,
    clear_overflow_hooks,
    configure_logging,
    finding_event,
    heartbeat_event,
    lifecycle_event,
    resolved_event,
)
from integrity.model import Finding, Severity
from integrity.wire import (
    SD_ID,
    format_message,
    format_sd,
    pri,
    render_json,
    wire_bytes,
    wire_text,
    wire_value,
)
from tests.rsyslog_harness import parse_5424

HOST = "mx1.example.org"


def _finding(**overrides: Any) -> Finding:
    args: dict[str, Any] = {
        "path": "/usr/sbin/sendmail",
        "rule": "MI-SETID-ADDED",
        "severity": Severity.CRITICAL,
        "message": "set-user-ID bit added to /usr/sbin/sendmail",
        "attribute": "mode",
        "before": 0o2555,
        "after": 0o6555,
    }
    args.update(overrides)
    return Finding(**args)


def _strings(value: Any) -> Iterator[str]:
    """Every string leaf (keys included) of a JSON-able value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


# --- finding events --------------------------------------------------------------------


def test_finding_event_mode_change():
    """A mode finding carries rule, path, octal modes and ECS fields, nested."""
    severity, msgid, sd, body = finding_event(_finding(), host=HOST)
    assert (severity, msgid) == ("critical", "MI-SETID-ADDED")
    assert sd == {
        "path": "/usr/sbin/sendmail", "rule": "MI-SETID-ADDED", "severity": "critical",
        "attribute": "mode", "before": "2555", "after": "6555", "host": HOST,
    }  # fmt: skip
    assert body["file"] == {
        "path": "/usr/sbin/sendmail", "name": "sendmail", "directory": "/usr/sbin", "mode": "6555",
    }  # fmt: skip
    assert body["event"]["kind"] == "alert"
    assert body["event"]["category"] == ["file"] and body["event"]["type"] == ["change"]
    assert body["event"]["action"] == "attributes_modified"
    assert (body["event"]["module"], body["event"]["dataset"]) == (
        "mail_integrity", "mail_integrity.finding",
    )  # fmt: skip
    assert body["rule"] == {"id": "MI-SETID-ADDED", "name": "Setid added",
                            "category": "permissions", "ruleset": "mail-integrity"}  # fmt: skip
    assert body["mail_integrity"] == {"alert_state": "new"}
    assert body["host"] == {"name": HOST}
    assert body["message"] == "set-user-ID bit added to /usr/sbin/sendmail"
    assert body["log"]["syslog"]["severity"] == {"code": 2, "name": "crit"}
    assert (body["labels"]["before"], body["labels"]["after"]) == ("2555", "6555")


@pytest.mark.parametrize(
    ("severity", "number", "level"),
    [
        (Severity.INFO, 1, "info"),
        (Severity.LOW, 2, "notice"),
        (Severity.MEDIUM, 3, "warning"),
        (Severity.HIGH, 4, "err"),
        (Severity.CRITICAL, 5, "crit"),
    ],
)
def test_event_severity_scale(severity, number, level):
    """event.severity grows with our severity; the syslog level follows PRODUCT.md."""
    sev, _, sd, body = finding_event(_finding(severity=severity), host=HOST)
    assert sev == str(severity) == sd["severity"]
    assert body["event"]["severity"] == number
    assert body["log"]["syslog"]["severity"]["name"] == level


@pytest.mark.parametrize(
    ("attribute", "before", "after", "file_extra", "shown"),
    [
        ("uid", 0, 1000, {"uid": "1000"}, ("0", "1000")),
        ("owner", "root", "mallory", {"owner": "mallory"}, ("root", "mallory")),
        ("owner", "root(0)", "nobody(65534)", {"owner": "nobody", "uid": "65534"},
         ("root(0)", "nobody(65534)")),
        ("group", "mail(8)", "users(100)", {"group": "users", "gid": "100"},
         ("mail(8)", "users(100)")),
        ("link_target", "/a", "/b", {"target_path": "/b"}, ("/a", "/b")),
        ("content", "blake3:aa", "blake3:bb", {}, ("blake3:aa", "blake3:bb")),
        ("", None, None, {}, ("", "")),
        ("facts", {"relayhost": ["a"]}, {}, {}, ('{"relayhost": ["a"]}', "{}")),
        ("mode", None, 0o644, {"mode": "0644"}, ("", "0644")),
    ],
)
def test_attribute_values_are_stringified(attribute, before, after, file_extra, shown):
    """before/after become strings; ECS file.* gets the new value when ECS has a field
    (owner and group as names, uid and gid as strings: not ``nobody(65534)``)."""
    f = _finding(attribute=attribute, before=before, after=after, severity=Severity.HIGH)
    _, _, sd, body = finding_event(f, host=HOST)
    assert (sd["before"], sd["after"]) == shown
    place = {"path": f.path, "name": "sendmail", "directory": "/usr/sbin"}
    assert body["file"] == {**place, **file_extra}


def test_long_values_are_truncated():
    """Huge before/after values are cut to a bounded length with an ellipsis."""
    f = _finding(attribute="facts", before="a" * 10_000, after=list(range(5000)))
    _, _, sd, body = finding_event(f, host=HOST)
    assert len(sd["before"]) == len(sd["after"]) == VALUE_MAX
    assert sd["before"].endswith("…") and body["labels"]["after"] == sd["after"]


@pytest.mark.parametrize("action", ["finding", "realert"])
def test_actions_keep_the_severity(action):
    """New and re-sent findings go out at their own syslog severity, as alerts."""
    severity, _, _, body = finding_event(_finding(), host=HOST, action=action)
    assert severity == "critical" and body["event"]["kind"] == "alert"
    assert body["mail_integrity"]["alert_state"] == {"finding": "new"}.get(action, action)


def test_resolved_event_is_info_but_names_the_original():
    """A resolved finding is syslog info, with the original severity kept for the SIEM."""
    severity, msgid, sd, body = resolved_event(_finding(), host=HOST)
    assert (severity, msgid) == ("info", "MI-SETID-ADDED")
    assert body["event"]["action"] == "resolved" and body["event"]["kind"] == "event"
    assert body["event"]["type"] == ["info"]
    assert body["event"]["severity"] == 5 and sd["severity"] == "critical"
    assert "mode" not in body["file"]  # 0.1 sent the bad mode that had just gone away


def test_unknown_action_is_rejected():
    """Only finding, realert and resolved exist."""
    with pytest.raises(ValueError, match="action"):
        finding_event(_finding(), host=HOST, action="deleted")


def test_secret_finding_adds_no_content():
    """For a secret, every string in the event comes from the Finding or fixed schema words."""
    f = _finding(
        path="/etc/postfix/sasl_passwd", rule="MI-PERM-LOOSENED", severity=Severity.HIGH,
        message="sasl_passwd readable by others", attribute="mode", before=0o600, after=0o644,
    )  # fmt: skip
    _, _, sd, body = finding_event(f, host=HOST)
    schema = {
        "@timestamp", "ecs", "version", "event", "kind", "category", "type", "action",
        "severity", "dataset", "rule", "id", "name", "file", "path", "mode", "message", "host",
        "log", "syslog", "code", "labels", "attribute", "before", "after", "alert", "change",
        "finding", "mail_integrity.finding", "emerg", "crit", "err", emit.ECS_VERSION,
        "module", "mail_integrity", "alert_state", "new", "ruleset",
        "mail-integrity", "directory", "attributes_modified", "permissions",
    }  # fmt: skip
    from_finding = {f.path, f.rule, f.message, "mode", "0600", "0644", "high", HOST,
                    "sasl_passwd", "/etc/postfix", "Perm loosened"}  # fmt: skip
    extra = set(_strings(body)) - schema - from_finding - {body["@timestamp"]}
    assert extra == set()
    assert set(sd.values()) <= from_finding | {""}


def test_undecodable_path_gives_valid_utf8():
    """A path with non-UTF-8 bytes yields SD and JSON that are valid UTF-8, in the one
    documented form (``\\xNN``), identical in SD and body (issue 9 item 3)."""
    path = os.fsdecode(b"/etc/mail/\xffbad")
    _, _, sd, body = finding_event(_finding(path=path), host=HOST)
    assert json.loads(render_json(body))["file"]["path"] == "/etc/mail/\\xffbad"
    assert format_sd([(SD_ID, {"path": sd["path"]})]) == '[mi@32473 path="/etc/mail/\\\\xffbad"]'
    render_json(body).encode("utf-8")


def test_timestamp_is_now_in_utc():
    """@timestamp is the emission time, RFC 3339 UTC."""
    _, _, _, body = finding_event(_finding(), host=HOST)
    stamp = datetime.strptime(body["@timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=1)


@settings(deadline=None)  # shared CI machines stall; correctness, not speed
@given(
    path=st.text(min_size=1),
    rule=st.from_regex(r"MI-[A-Z]{1,12}-[A-Z]{1,12}", fullmatch=True),
    before=st.one_of(st.none(), st.integers(), st.text()),
    after=st.one_of(st.none(), st.integers(), st.text()),
)
def test_every_event_formats_and_parses_back(path, rule, before, after):
    """Any finding's event makes a valid RFC 5424 message, with no raw control character,
    whose SD and body parse back to their wire form (issue 9 item 3)."""
    f = _finding(path=path, rule=rule, attribute="content", before=before, after=after)
    severity, msgid, sd, body = finding_event(f, host=HOST)
    text = render_json(body)
    out = format_message(
        pri=pri(10, severity), timestamp=datetime.now(UTC), hostname=HOST, app_name="mi",
        procid="1", msgid=msgid, sd=[(SD_ID, sd)], msg=text,
    )  # fmt: skip
    assert not any(b < 0x20 or b == 0x7F for b in out)
    parsed = parse_5424(out.decode("utf-8"))
    assert parsed["sd"][SD_ID] == {k: wire_text(v) for k, v in sd.items()}
    assert json.loads(parsed["msg"]) == wire_value(body)
    assert wire_bytes(parsed["sd"][SD_ID]["path"]) == path.encode("utf-8", "surrogatepass")


# --- heartbeat and lifecycle -----------------------------------------------------------


def test_heartbeat_event_carries_sequence_and_stats():
    """The heartbeat has its number and the sender's counters, at info."""
    stats = {"sent": 10, "queued": 2, "dropped": 0, "connected": True}
    severity, msgid, sd, body = heartbeat_event(7, stats, host=HOST)
    assert (severity, msgid) == ("info", "MI-HEARTBEAT")
    assert sd == {"host": HOST, "heartbeat": "7", "sent": "10", "queued": "2", "dropped": "0",
                  "connected": "true"}  # fmt: skip  (0.1 sent "True"; issue 9)
    assert body["event"]["sequence"] == 7 and body["event"]["kind"] == "state"
    assert body["labels"]["queued"] == "2"


@pytest.mark.parametrize(
    ("phase", "severity", "ecs_type"), [("start", "info", "start"), ("stop", "low", "end")]
)
def test_lifecycle_events(phase, severity, ecs_type):
    """Start is info; stop is low (notice), since an attacker may be stopping us."""
    sev, msgid, sd, body = lifecycle_event(phase, host=HOST, version="0.1.0", detail="SIGTERM")
    assert (sev, msgid) == (severity, f"MI-LIFECYCLE-{phase.upper()}")
    assert sd == {"host": HOST, "phase": phase, "version": "0.1.0"}
    assert body["event"]["type"] == [ecs_type]
    assert body["message"] == f"mail-integrity {phase}: SIGTERM"


def test_lifecycle_rejects_unknown_phase():
    """Only start and stop exist."""
    with pytest.raises(ValueError):
        lifecycle_event("pause", host=HOST)


# --- logging ---------------------------------------------------------------------------


@pytest.fixture
def clean_logging() -> Iterator[None]:
    """Restore the root logger, structlog and the overflow hooks after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    watch = logging.getLogger(OVERFLOW_LOGGER)
    watch_level = watch.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    watch.setLevel(watch_level)
    clear_overflow_hooks()
    structlog.reset_defaults()


@pytest.mark.parametrize(
    ("verbosity", "shown", "hidden"),
    [(-1, ["error"], ["warning"]), (0, ["warning", "error"], ["info"]),
     (1, ["info", "warning"], ["debug"]), (2, ["debug", "info"], [])],
)  # fmt: skip
def test_verbosity_selects_levels(clean_logging, capsys, verbosity, shown, hidden):
    """-q shows errors only, default warnings, -v info, -vv debug; all on stderr."""
    configure_logging(verbosity, json=False)
    log = structlog.get_logger("integrity.test")
    for name in ["debug", "info", "warning", "error"]:
        getattr(log, name)(f"msg-{name}")
    out, err = capsys.readouterr()
    assert out == ""
    assert all(f"msg-{n}" in err for n in shown)
    assert not any(f"msg-{n}" in err for n in hidden)


def test_json_logging_has_no_locals(clean_logging, capsys):
    """JSON logs are one object per line, and tracebacks never show local variables."""
    configure_logging(0, json=True)
    log = structlog.get_logger("integrity.test")
    password = "hunter2-do-not-log"
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed", path="/etc/mail/auth")
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert record["event"] == "failed" and record["path"] == "/etc/mail/auth"
    assert record["level"] == "error" and "exception" in record
    assert password not in json.dumps(record)
    del password


def test_console_logging_has_no_locals(clean_logging, capsys):
    """The console renderer prints a plain traceback, never the frame's locals."""
    configure_logging(0, json=False)
    secret = "hunter2-do-not-log"
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger("integrity.test").exception("failed")
    err = capsys.readouterr().err
    assert "RuntimeError: boom" in err and secret not in err
    del secret


def test_configure_logging_twice_keeps_one_handler(clean_logging, capsys):
    """Reconfiguring replaces our handler instead of printing every line twice."""
    configure_logging(0, json=False)
    configure_logging(0, json=True)
    structlog.get_logger("integrity.test").warning("once")
    assert capsys.readouterr().err.count("once") == 1


def test_stdlib_records_from_watchdog_join_the_pipeline(clean_logging, capsys):
    """A plain logging warning (as watchdog emits) is rendered by the same formatter."""
    configure_logging(0, json=True)
    logging.getLogger("watchdog.observers.inotify").warning("plain %s", "record")
    record = json.loads(capsys.readouterr().err.strip())
    assert record["event"] == "plain record"
    assert record["logger"] == "watchdog.observers.inotify"


def test_capture_logs_sees_sender_events(clean_logging, tmp_path):
    """Sender log events carry structured keys (checked with structlog's capture_logs)."""
    from integrity.syslog import SyslogSender

    sender = SyslogSender("tcp://127.0.0.1:9", outbox_path=None, hostname=HOST, queue_size=1)
    with capture_logs() as logs:
        sender.send("info", "MI-A", {}, {})
        sender.send("info", "MI-B", {}, {})
    sender.close(0.1)
    assert logs == [
        {"event": "syslog outbox full, dropped lowest-severity messages", "count": 1,
         "log_level": "warning"},
    ]  # fmt: skip


# --- inotify overflow hook -------------------------------------------------------------

WATCHDOG_MESSAGE = "Inotify queue overflowed; filesystem events were lost"


def test_overflow_warning_calls_the_hook(clean_logging):
    """watchdog's overflow WARNING triggers every registered callback."""
    calls: list[str] = []
    add_overflow_hook(lambda: calls.append("a"))
    add_overflow_hook(lambda: calls.append("b"))
    logging.getLogger(OVERFLOW_LOGGER).warning(WATCHDOG_MESSAGE)
    assert calls == ["a", "b"]


def test_other_watchdog_messages_do_not_call_the_hook(clean_logging):
    """Only the overflow message is a trigger."""
    calls: list[int] = []
    add_overflow_hook(lambda: calls.append(1))
    logging.getLogger(OVERFLOW_LOGGER).warning("watch removed")
    assert calls == []


def test_overflow_hook_fires_even_when_quiet(clean_logging, capsys):
    """With -q (errors only) the warning is not shown, but the hook still runs."""
    configure_logging(-1, json=False)
    calls: list[int] = []
    add_overflow_hook(lambda: calls.append(1))
    logging.getLogger(OVERFLOW_LOGGER).warning(WATCHDOG_MESSAGE)
    assert calls == [1]
    assert WATCHDOG_MESSAGE not in capsys.readouterr().err


def test_failing_hook_does_not_break_logging(clean_logging, capsys):
    """A hook that raises is logged; the next hook and the warning itself still happen."""
    configure_logging(0, json=False)
    calls: list[int] = []

    def broken() -> None:
        raise RuntimeError("hook bug")

    add_overflow_hook(broken)
    add_overflow_hook(lambda: calls.append(1))
    logging.getLogger(OVERFLOW_LOGGER).warning(WATCHDOG_MESSAGE)
    err = capsys.readouterr().err
    assert calls == [1]
    assert "inotify overflow hook failed" in err and WATCHDOG_MESSAGE in err


# --- issue 9: the file as it is when the event goes out --------------------------------


def _content(path: str, after: str = "blake3:bb") -> Finding:
    return _finding(path=path, rule="MI-SECRET-CHANGED", severity=Severity.MEDIUM,
                    message="secret content changed", attribute="content",
                    before="blake3:aa", after=after)  # fmt: skip


def test_observed_file_gives_live_ecs_fields_and_hashes(tmp_path):
    """A changed file's event has its owner *name*, string uid/gid, current mode, size,
    inode, times, and SHA-256 (ECS) + BLAKE3 (ours) of the new content, not the content."""
    import hashlib

    import blake3

    secret = b"AuthInfo: P:hunter2-very-secret\n"
    (tmp_path / "etc").mkdir()
    target = tmp_path / "etc/authinfo"
    target.write_bytes(secret)
    os.chmod(target, 0o640)
    f = _content("/etc/authinfo")
    seen = emit.observe(str(tmp_path), f)
    assert seen is not None
    _, _, sd, body = finding_event(f, host=HOST, seen=seen)
    st_ = target.stat()
    assert body["file"] == {
        "path": "/etc/authinfo", "name": "authinfo", "directory": "/etc", "type": "file",
        "mode": "0640", "uid": str(st_.st_uid), "gid": str(st_.st_gid),
        "owner": pwd.getpwuid(st_.st_uid).pw_name, "group": grp.getgrgid(st_.st_gid).gr_name,
        "size": len(secret), "inode": str(st_.st_ino),
        "mtime": body["file"]["mtime"], "ctime": body["file"]["ctime"],
        "hash": {"sha256": hashlib.sha256(secret).hexdigest()},
    }  # fmt: skip
    assert body["file"]["mtime"].startswith(str(datetime.fromtimestamp(st_.st_mtime, UTC).year))
    assert body["mail_integrity"]["hash"] == {"blake3": blake3.blake3(secret).hexdigest()}
    text = render_json(body) + json.dumps(sd)
    assert "hunter2" not in text and "AuthInfo" not in text


def test_no_hash_for_what_did_not_change_or_is_not_a_regular_file(tmp_path):
    """Only content findings and new files are read; symlinks and FIFOs never are."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/cf").write_text("x\n")
    (tmp_path / "etc/link").symlink_to(tmp_path / "etc/cf")
    os.mkfifo(tmp_path / "etc/fifo")
    mode = _finding(path="/etc/cf", attribute="mode", before=0o644, after=0o664)
    assert emit.observe(str(tmp_path), mode).sha256 is None  # type: ignore[union-attr]
    for name in ("link", "fifo"):  # opening the FIFO would block: it must not be opened
        seen = emit.observe(str(tmp_path), _content(f"/etc/{name}"))
        assert seen is not None and seen.sha256 is None and seen.blake3 is None
    link = finding_event(_content("/etc/link"), host=HOST,
                         seen=emit.observe(str(tmp_path), _content("/etc/link")))[3]  # fmt: skip
    assert link["file"]["type"] == "symlink"
    assert link["file"]["target_path"] == str(tmp_path / "etc/cf")
    assert emit.observe(str(tmp_path), _content("/etc/gone")) is None


def test_resolved_event_shows_the_live_mode(tmp_path):
    """A resolved mode finding reports the mode the file has now, not the bad one."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/cf").write_text("x\n")
    os.chmod(tmp_path / "etc/cf", 0o644)
    f = _finding(path="/etc/cf", attribute="mode", before=0o644, after=0o666)
    body = resolved_event(f, host=HOST, seen=emit.observe(str(tmp_path), f))[3]
    assert body["file"]["mode"] == "0644" and body["labels"]["after"] == "0666"


@pytest.mark.parametrize(
    ("rule", "name", "category"),
    [
        ("MI-SETID-ADDED", "Setid added", "permissions"),
        ("MI-FILE-REPLACED-BY-SYMLINK", "File replaced by symlink", "file integrity"),
        ("MI-POSTFIX-OPEN-RELAY", "Postfix open relay", "mail configuration"),
        ("MI-BASELINE-SIGNATURE-INVALID", "Baseline signature invalid", "monitor integrity"),
        ("MI-PAM-AUTH-BYPASS", "Pam auth bypass", "system configuration"),
        ("MI-NEWAREA-THING", "Newarea thing", "file integrity"),
    ],
)
def test_rule_name_and_category(rule, name, category):
    """rule.name is a short name made from the id (not the id again); rule.category by area."""
    assert emit.rule_fields(rule) == {"id": rule, "name": name, "category": category,
                                      "ruleset": "mail-integrity"}  # fmt: skip


def test_every_documented_rule_area_has_a_category():
    """Each MI-<AREA>- of docs/rules.md maps to a rule.category (none falls to the default
    unnoticed when an area is added)."""
    text = (Path(__file__).resolve().parent.parent / "docs/rules.md").read_text()
    areas = set(re.findall(r"\bMI-([A-Z0-9]+)-[A-Z]", text))
    assert len(areas) > 30
    assert sorted(areas - set(emit.RULE_CATEGORIES)) == []
