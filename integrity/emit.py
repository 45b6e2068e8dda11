"""Findings -> SIEM events (ECS JSON + RFC 5424 structured data), and logging setup.

Each ``*_event`` function returns ``(severity, msgid, sd_params, body)``, the arguments
of ``SyslogSender.send``. The body uses Elastic Common Schema names as *nested* objects
(``{"file": {"path": ...}}``), the form ECS documents and Elastic, Graylog and rsyslog's
mmjsonparse read without a pipeline; Splunk flattens it to ``file.path`` itself.

``event.severity`` is our own scale, higher is worse: info 1, low 2, medium 3, high 4,
critical 5 (ECS leaves the scale to the source). The syslog level is in
``log.syslog.severity``. Only fields of the ``Finding`` are emitted, never file content:
for a secret, the judge already put nothing but metadata into before/after.

This is the only module that configures structlog (STYLE.md).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog
from structlog import dev, processors, stdlib, tracebacks

from integrity.model import Actor, Finding, Severity
from integrity.syslog import LEVELS, format_timestamp, utf8_safe

ECS_VERSION = "8.11.0"
VALUE_MAX = 256  # before/after values, in characters
ACTIONS = ("finding", "realert", "resolved", "attribution")
_LEVEL_NAMES = {2: "crit", 3: "err", 4: "warning", 5: "notice", 6: "info"}
_FILE_FIELDS = {"uid": "uid", "gid": "gid", "owner": "owner", "group": "group"}
OVERFLOW_LOGGER = "watchdog.observers.inotify_c"

Event = tuple[str, str, dict[str, str], dict[str, Any]]


def _now() -> str:
    return format_timestamp(datetime.now(UTC))


def clip(value: object, limit: int = VALUE_MAX) -> str:
    """A value as bounded, UTF-8-safe text: ``None`` is empty, lists/dicts are JSON."""
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    elif isinstance(value, dict | list | tuple):
        text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    else:
        text = str(value)
    text = utf8_safe(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(attribute: str, value: object) -> str:
    """Modes as octal (``0644``, ECS ``file.mode``), everything else via ``clip``."""
    if attribute == "mode" and isinstance(value, int):
        return f"{value:04o}"
    return clip(value)


def _syslog(severity: Severity) -> dict[str, Any]:
    code = LEVELS[severity]
    return {"syslog": {"severity": {"code": code, "name": _LEVEL_NAMES[code]}}}


def _file(f: Finding) -> dict[str, str]:
    """ECS ``file.*``: the path, and the changed attribute's current value when ECS has it."""
    out = {"path": utf8_safe(f.path)}
    if f.attribute == "mode" and f.after is not None:
        out["mode"] = _shown("mode", f.after)
    elif f.attribute in _FILE_FIELDS and f.after is not None:
        out[_FILE_FIELDS[f.attribute]] = clip(f.after)
    return out


def finding_event(f: Finding, *, host: str, action: str = "finding") -> Event:
    """One finding as an alert; ``action`` is ``finding``, ``realert`` or ``resolved``.

    A resolved finding goes out at syslog level info, but keeps its original severity in
    the body so the SIEM can close the matching alert (same ``rule.id`` and path).
    """
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    level = Severity.INFO if action in ("resolved", "attribution") else f.severity
    before, after = _shown(f.attribute, f.before), _shown(f.attribute, f.after)
    sd = {
        "path": utf8_safe(f.path), "rule": f.rule, "severity": str(f.severity),
        "attribute": f.attribute, "before": before, "after": after, "host": host,
    }  # fmt: skip
    body: dict[str, Any] = {
        "@timestamp": _now(),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "alert", "category": ["file"], "type": ["change"], "action": action,
            "severity": f.severity.rank + 1, "dataset": "mail_integrity.finding",
        },
        "rule": {"id": f.rule, "name": f.rule},
        "file": _file(f),
        "message": clip(f.message, 1024),
        "host": {"name": host},
        "log": _syslog(level),
        "labels": {"severity": str(f.severity), "attribute": f.attribute,
                   "before": before, "after": after},
    }  # fmt: skip
    if f.fix:
        body["labels"]["fix"] = clip(f.fix, 512)
    if f.actor is not None:
        actor_sd, actor_body = actor_fields(f.actor)
        sd.update(actor_sd)
        for key, value in actor_body.items():
            body.setdefault(key, {}).update(value)
    return str(level), f.rule, sd, body


def attribution_event(f: Finding, *, host: str) -> Event:
    """The actor of a finding already sent unattributed (its audit record came late).

    Syslog level info (the alert went out already), the finding's own rule id, severity
    and path, so the SIEM joins it to that alert."""
    return finding_event(f, host=host, action="attribution")


def actor_fields(actor: Actor) -> tuple[dict[str, str], dict[str, Any]]:
    """Who made a change -> (structured-data params, ECS fields to merge into the body).

    ECS ``user.*`` (``user.effective``, and ``user.audit`` for the login uid as Auditbeat
    names it), ``process.*``; the audit session, tty, syscall and event id under
    ``auditd.*`` (Auditbeat's names: ECS has no string tty or audit session). Unattributed:
    ``labels.actor`` and the SD param ``actor`` say so, with the reason.
    """
    if not actor.attributed:
        text = clip(f"unattributed: {actor.reason}")
        return {"actor": text}, {"labels": {"actor": text}}
    sd_values = {
        "actor_uid": actor.uid, "actor_user": actor.user, "actor_euid": actor.euid,
        "actor_auid": actor.auid, "actor_login": actor.auser, "actor_pid": actor.pid,
        "actor_ppid": actor.ppid, "actor_exe": actor.exe, "actor_comm": actor.comm,
        "actor_tty": actor.tty, "actor_ses": actor.session, "audit_id": actor.event_id,
    }  # fmt: skip
    sd = {k: clip(v) for k, v in sd_values.items() if v is not None}
    if actor.args:
        sd["actor_args"] = clip(" ".join(actor.args))
    data = actor.to_json()
    user, process = data["user"], data["process"]
    for name in ("name", "executable"):
        if name in process:
            process[name] = clip(process[name])
    process.pop("tty", None)
    if actor.args:
        process["args"] = [clip(a) for a in actor.args[:64]]
        process["args_count"] = len(actor.args)
    auditd: dict[str, Any] = {"data": {}}
    if actor.session is not None:
        auditd["session"] = str(actor.session)
    if actor.event_id:
        auditd["event_id"] = actor.event_id
        auditd["sequence"] = int(actor.event_id.rsplit(":", 1)[1])
    if actor.tty:
        auditd["data"]["tty"] = clip(actor.tty, 64)
    if actor.syscall:
        auditd["data"]["syscall"] = actor.syscall
    return sd, {"user": user, "process": process, "auditd": auditd}


def whodata_event(rule: str, message: str, *, host: str) -> Event:
    """Attribution is unavailable or degraded (no capability, audit off, records lost):
    once per cause, so the SIEM knows findings may come without an actor."""
    body: dict[str, Any] = {
        "@timestamp": _now(),
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "state", "category": ["host"], "type": ["info"],
                  "action": "whodata", "severity": Severity.MEDIUM.rank + 1,
                  "dataset": "mail_integrity.whodata"},
        "rule": {"id": rule, "name": rule},
        "message": clip(message, 1024),
        "host": {"name": host},
        "log": _syslog(Severity.MEDIUM),
    }  # fmt: skip
    sd = {"host": host, "rule": rule, "reason": clip(message)}
    return str(Severity.MEDIUM), rule, sd, body


def resolved_event(f: Finding, *, host: str) -> Event:
    """A finding that went away (change reverted, or accepted into the baseline)."""
    return finding_event(f, host=host, action="resolved")


def heartbeat_event(seq: int, stats: Mapping[str, int | float | bool | str], *, host: str) -> Event:
    """Sent every minute so the SIEM can alert when a monitor goes silent."""
    counters = {k: clip(v, 64) for k, v in sorted(stats.items())}
    body: dict[str, Any] = {
        "@timestamp": _now(),
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "state", "category": ["host"], "type": ["info"],
                  "action": "heartbeat", "severity": 1, "sequence": seq,
                  "dataset": "mail_integrity.heartbeat"},
        "message": f"mail-integrity heartbeat {seq}",
        "host": {"name": host},
        "log": _syslog(Severity.INFO),
        "labels": counters,
    }  # fmt: skip
    sd = {"host": host, "heartbeat": str(seq), **counters}
    return str(Severity.INFO), "MI-HEARTBEAT", sd, body


def lifecycle_event(phase: str, *, host: str, version: str = "", detail: str = "") -> Event:
    """Monitor start or stop; a stop is ``low`` (notice): someone may be silencing us."""
    if phase not in ("start", "stop"):
        raise ValueError(f"phase must be 'start' or 'stop', got {phase!r}")
    severity = Severity.INFO if phase == "start" else Severity.LOW
    body: dict[str, Any] = {
        "@timestamp": _now(),
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "event", "category": ["process"],
                  "type": ["start" if phase == "start" else "end"], "action": phase,
                  "severity": severity.rank + 1, "dataset": "mail_integrity.lifecycle"},
        "message": clip(f"mail-integrity {phase}" + (f": {detail}" if detail else ""), 512),
        "host": {"name": host},
        "service": {"name": "mail-integrity", "version": version},
        "log": _syslog(severity),
    }  # fmt: skip
    sd = {"host": host, "phase": phase, "version": version}
    return str(severity), f"MI-LIFECYCLE-{phase.upper()}", sd, body


def baseline_event(command: str, *, generation: int, digest: str, signer: str, host: str) -> Event:
    """A baseline was (re)written: the SIEM keeps its fingerprint, so rollbacks show there too."""
    body: dict[str, Any] = {
        "@timestamp": _now(),
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "event", "category": ["configuration"], "type": ["change"],
                  "action": f"baseline-{command}", "severity": 2,
                  "dataset": "mail_integrity.baseline"},
        "message": f"mail-integrity baseline {command}: generation {generation}",
        "host": {"name": host},
        "labels": {"generation": str(generation), "digest": digest, "signer": signer or "-"},
        "log": _syslog(Severity.LOW),
    }  # fmt: skip
    sd = {"host": host, "generation": str(generation), "digest": digest, "signer": signer}
    return str(Severity.LOW), "MI-BASELINE-" + command.upper(), sd, body


# --- logging --------------------------------------------------------------------------

_HANDLER_NAME = "mail-integrity-stderr"


def _shared() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        stdlib.add_log_level,
        stdlib.add_logger_name,
        processors.TimeStamper(fmt="iso", utc=True),
        stdlib.ExtraAdder(),
    ]


def _renderer(as_json: bool) -> list[Any]:
    """Final processors; tracebacks never carry locals (they can hold keys or passwords)."""
    if as_json:
        no_locals = tracebacks.ExceptionDictTransformer(show_locals=False)
        return [processors.ExceptionRenderer(no_locals), processors.JSONRenderer(sort_keys=True)]
    return [dev.ConsoleRenderer(colors=False, exception_formatter=dev.plain_traceback)]


def level_for(verbosity: int) -> int:
    """``-q`` -1 errors only, default 0 warnings, ``-v`` 1 info, ``-vv`` 2 debug."""
    levels = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}
    return levels.get(max(-1, verbosity), logging.DEBUG)


#: journald priority of a stdlib level, for lines that carry no finding severity
_JOURNAL_LEVELS = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6}


def journal_priority(record: logging.LogRecord) -> int:
    """syslog priority of a log line: a finding's severity (critical -> 2), else its level."""
    event = record.msg if isinstance(record.msg, dict) else {}
    severity = event.get("severity")
    if isinstance(severity, str):
        try:
            return LEVELS[Severity.parse(severity)]
        except (KeyError, ValueError):
            pass
    return _JOURNAL_LEVELS.get(record.levelno, 7)


class _JournalPrefix(logging.Formatter):
    """sd-daemon(3) ``<N>`` prefix: journald files the line at priority N, not at info,
    so ``journalctl -p crit`` shows the critical findings."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return f"<{journal_priority(record)}>{self.inner.format(record)}"


def stderr_is_journal() -> bool:
    """systemd connected stderr to journald (it sets $JOURNAL_STREAM to the stream's dev:ino)."""
    try:
        dev, ino = (int(x) for x in os.environ.get("JOURNAL_STREAM", "").split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def configure_logging(verbosity: int, json: bool) -> None:
    """structlog through stdlib, to stderr, so watchdog's own warnings join the pipeline.

    Idempotent: a second call replaces our handler instead of adding one.
    """
    level = level_for(verbosity)
    structlog.configure(
        processors=[
            stdlib.filter_by_level,
            *_shared(),
            stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=stdlib.LoggerFactory(),
        wrapper_class=stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared(),
        processors=[stdlib.ProcessorFormatter.remove_processors_meta, *_renderer(json)],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(_JournalPrefix(formatter) if stderr_is_journal() else formatter)
    handler.setLevel(level)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


class _OverflowFilter(logging.Filter):
    """Calls the hooks when watchdog reports a kernel inotify queue overflow; logs pass."""

    def __init__(self) -> None:
        super().__init__()
        self.callbacks: list[Callable[[], None]] = []
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if "overflow" in record.getMessage().lower():
            with self.lock:
                callbacks = list(self.callbacks)
            for callback in callbacks:
                try:
                    callback()
                except Exception:  # watchdog's thread must not die of our hook
                    logging.getLogger(__name__).exception("inotify overflow hook failed")
        return True


_overflow = _OverflowFilter()


def add_overflow_hook(callback: Callable[[], None]) -> None:
    """Call ``callback`` (on watchdog's thread) when inotify events were lost.

    watchdog tells its handlers nothing; it only logs a WARNING on ``OVERFLOW_LOGGER``.
    The logger's level is pinned to WARNING so ``-q`` cannot silence the trigger.
    """
    logger = logging.getLogger(OVERFLOW_LOGGER)
    if _overflow not in logger.filters:
        logger.addFilter(_overflow)
    if logger.level == logging.NOTSET or logger.level > logging.WARNING:
        logger.setLevel(logging.WARNING)
    with _overflow.lock:
        _overflow.callbacks.append(callback)


def clear_overflow_hooks() -> None:
    """Forget every hook (daemon restart in-process, tests)."""
    with _overflow.lock:
        _overflow.callbacks.clear()
