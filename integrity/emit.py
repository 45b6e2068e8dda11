"""Findings -> SIEM events (ECS JSON + RFC 5424 structured data), and logging setup.

Each ``*_event`` function returns ``(severity, msgid, sd_params, body)``, the arguments
of ``SyslogSender.send``. The body uses Elastic Common Schema names as *nested* objects
(``{"file": {"path": ...}}``), the form ECS documents and Elastic, Graylog and rsyslog's
mmjsonparse read without a pipeline; Splunk flattens it to ``file.path`` itself. Every
field we send is listed, with its ECS type, in ``tests/data/ecs_fields.tsv`` (checked
against the official schema); our own fields live under ``mail_integrity.*``.

``event.severity`` is our own scale, higher is worse: info 1, low 2, medium 3, high 4,
critical 5 (ECS leaves the scale to the source). The syslog level is in
``log.syslog.severity``. Only fields of the ``Finding`` and the file's metadata are
emitted, never file content: for a secret, the judge already put nothing but metadata
into before/after, and ``file.hash.sha256`` is a hash, not content.

Text is passed on as it is; the one wire representation (control characters and
undecodable bytes as ``\\xNN``) is applied by the sender, once, for every event.

This is the only module that configures structlog (STYLE.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import blake3
import structlog
from structlog import dev, processors, stdlib, tracebacks

from integrity import scanner
from integrity.model import Actor, FileRecord, FileType, Finding, ScanWarning, Severity
from integrity.wire import ECS_VERSION, LEVELS, format_timestamp

VALUE_MAX = 256  # before/after values, in characters
ACTIONS = ("finding", "realert", "resolved", "attribution")
#: follow-ups of an alert already sent: syslog level info, ``event.action`` says which
FOLLOW_UPS = ("resolved", "attribution")
MODULE = "mail_integrity"  # event.module, and the namespace of our custom fields
_LEVEL_NAMES = {2: "crit", 3: "err", 4: "warning", 5: "notice", 6: "info"}
OVERFLOW_LOGGER = "watchdog.observers.inotify_c"
HASH_MAX = 1 << 30  # file.hash.sha256 only for files up to 1 GiB (read at emit time)

#: ``event.action`` of a finding: Elastic's file-integrity vocabulary, by what changed.
#: A resolved finding is ``resolved`` (docs/siem.md lists the vocabulary).
#: Attributes whose change is ``attributes_modified``; content, type and link target
#: changes are ``updated``; a changed meaning of the mail configuration (or of the units,
#: loader and PAM stacks under it) is ``config_change``.
METADATA_ATTRIBUTES = frozenset(
    {"mode", "uid", "gid", "owner", "group", "acl", "caps", "xattrs", "selinux", "flags"}
    | {"size", "mtime_ns", "ctime_ns", "inode", "nlink"}
)

MTA_AREAS = ("SENDMAIL", "POSTFIX", "EXIM", "DOVECOT", "ALIAS", "FORWARD", "SMRSH")
#: The ground under the MTA (issue 14): systemd units, the dynamic loader, PAM stacks.
SYSTEM_AREAS = ("UNIT", "LOADER", "PAM")

#: ``rule.category`` by the area part of the rule id (``MI-<AREA>-...``).
_AREAS = {
    "permissions": "SETID PERM SECRET QUEUE SPOOL DIR OWNER GROUP CAPABILITY ACL SELINUX "
    "XATTR FLAGS PARENT ENFORCED EXPECT",
    "file integrity": "BINARY PACKAGE CONTENT METADATA MAP GENERATED FILE TYPE LINK ANALYSIS",
    "mail configuration": " ".join(MTA_AREAS),
    "system configuration": " ".join(SYSTEM_AREAS) + " TLS",
    "monitor integrity": "BASELINE SELF SYSLOG HEARTBEAT LIFECYCLE WHODATA WATCH",
}
RULE_CATEGORIES = {area: cat for cat, areas in _AREAS.items() for area in areas.split()}

#: ECS ``file.type`` for our file types (ECS names file, dir and symlink).
_ECS_FTYPE = {FileType.CHARDEV: "char_device", FileType.BLOCKDEV: "block_device"}

Event = tuple[str, str, dict[str, str], dict[str, Any]]


def _now() -> str:
    return format_timestamp(datetime.now(UTC))


def clip(value: object, limit: int = VALUE_MAX) -> str:
    """A value as bounded text: ``None`` is empty, lists/dicts are JSON."""
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    elif isinstance(value, dict | list | tuple):
        text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def label(value: object) -> str:
    """An ECS ``labels`` value: text, with booleans spelled ``true``/``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return clip(value, 64)


def _shown(attribute: str, value: object) -> str:
    """Modes as octal (``0644``, ECS ``file.mode``), everything else via ``clip``."""
    if attribute == "mode" and isinstance(value, int):
        return f"{value:04o}"
    return clip(value)


def _syslog(severity: Severity) -> dict[str, Any]:
    code = LEVELS[severity]
    return {"syslog": {"severity": {"code": code, "name": _LEVEL_NAMES[code]}}}


# --- the file as it is now ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Observed:
    """The file as it is when the event goes out: its record (owner *names*, current mode,
    size...) and, for changed content, the SHA-256 (threat-intel lookups) and BLAKE3 (our
    baseline hash) of the bytes read once, through the same safe open as the scanner."""

    record: FileRecord
    sha256: str | None = None
    blake3: str | None = None


def observe(root: str, f: Finding) -> Observed | None:
    """Look at ``f.path`` now; ``None`` when it is gone or not safely readable.

    Content is hashed only for what changed: a finding about content, or a new file.
    """
    found = scanner.collect(root, f.path, names=scanner.IdNames(root), read_content=False)
    if isinstance(found, ScanWarning):
        return None
    rec = found.record
    if rec.ftype != FileType.FILE or not (f.attribute == "content" or _kind(f) == "creation"):
        return Observed(rec)
    sha, b3 = _hashes(scanner.host_path(root, f.path), rec)
    return Observed(rec, sha, b3)


def _hashes(full: str, rec: FileRecord) -> tuple[str | None, str | None]:
    """(sha256, blake3) hex of the regular file ``rec`` describes; never through a symlink,
    never a FIFO (O_NOFOLLOW|O_NONBLOCK, then fstat must show the same inode)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(full, flags)
    except OSError:
        return None, None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_ino != rec.inode or st.st_size > HASH_MAX:
            return None, None
        sha, b3 = hashlib.sha256(), blake3.blake3()
        while chunk := os.read(fd, 1 << 20):
            sha.update(chunk)
            b3.update(chunk)
        return sha.hexdigest(), b3.hexdigest()
    except OSError:
        return None, None
    finally:
        os.close(fd)


# --- findings -------------------------------------------------------------------------


def _kind(f: Finding) -> str:
    """ECS ``event.type`` by what happened: a new path, a removed one, or a change."""
    if f.attribute == "" and f.before is None and f.after is not None:
        return "creation"
    if f.attribute == "" and f.after is None and f.before is not None:
        return "deletion"
    return "change"


def file_action(f: Finding) -> str:
    """``event.action`` from Elastic's file-integrity vocabulary (docs/siem.md)."""
    kind = _kind(f)
    if kind != "change":
        return {"creation": "created", "deletion": "deleted"}[kind]
    if _area(f.rule) in MTA_AREAS + SYSTEM_AREAS:
        return "config_change"
    attributes = set(f.attribute.split(","))
    return "attributes_modified" if attributes <= METADATA_ATTRIBUTES else "updated"


def _area(rule: str) -> str:
    words = rule.split("-")
    return words[1] if len(words) > 1 else ""


def rule_fields(rule: str) -> dict[str, str]:
    """ECS ``rule.*``: the id, a short name made from it, a category by its area."""
    words = rule.split("-")
    area = _area(rule)
    name = " ".join(w.lower() for w in words[1:]) or rule
    return {
        "id": rule,
        "name": name[:1].upper() + name[1:],
        "category": RULE_CATEGORIES.get(area, "file integrity"),
        "ruleset": "mail-integrity",
    }


def _split(path: str) -> dict[str, str]:
    directory, _, name = path.rpartition("/")
    return {"path": path, "name": name or path, "directory": directory or "/"}


def _id_named(text: object) -> tuple[str | None, str | None]:
    """``mallory(1001)`` (the judge's owner/group form) -> (name, id); ``1001`` -> (None, id)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return None, str(text)
    if not isinstance(text, str) or not text:
        return None, None
    if text.isdigit():
        return None, text
    name, paren, rest = text.partition("(")
    if paren and rest.endswith(")") and rest[:-1].isdigit():
        return name, rest[:-1]
    return text, None


def _file(f: Finding, seen: Observed | None, action: str) -> dict[str, Any]:
    """ECS ``file.*``: the path, and what is known of the file now.

    With ``seen`` (the daemon looked at the file) everything is the live state. Without
    it, only what the finding itself says about the new state (never for a resolved
    finding, whose ``after`` is the state that went away)."""
    out: dict[str, Any] = _split(f.path)
    if seen is not None:
        rec = seen.record
        out["type"] = _ECS_FTYPE.get(rec.ftype, str(rec.ftype))
        out["mode"] = f"{rec.mode:04o}"
        out["uid"], out["gid"] = str(rec.uid), str(rec.gid)
        if rec.owner:
            out["owner"] = rec.owner
        if rec.group:
            out["group"] = rec.group
        out["size"] = rec.size
        out["inode"] = str(rec.inode)
        out["mtime"] = format_timestamp(datetime.fromtimestamp(rec.mtime_ns / 1e9, UTC))
        out["ctime"] = format_timestamp(datetime.fromtimestamp(rec.ctime_ns / 1e9, UTC))
        if rec.link_target is not None:
            out["target_path"] = rec.link_target
        if seen.sha256:
            out["hash"] = {"sha256": seen.sha256}
        return out
    if action == "resolved" or f.after is None:
        return out
    if f.attribute == "mode" and isinstance(f.after, int):
        out["mode"] = f"{f.after:04o}"
    elif f.attribute in ("owner", "uid"):
        name, ident = _id_named(f.after)
        out |= {k: v for k, v in (("owner", name), ("uid", ident)) if v}
    elif f.attribute in ("group", "gid"):
        name, ident = _id_named(f.after)
        out |= {k: v for k, v in (("group", name), ("gid", ident)) if v}
    elif f.attribute == "link_target" and isinstance(f.after, str):
        out["target_path"] = f.after
    return out


def merge_fields(body: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Add optional ECS fields (``user.*``, ``process.*``...) to a body; nested objects
    are merged, and a field the body already has is kept (extras never override)."""
    for key, value in extra.items():
        old = body.get(key)
        if isinstance(old, dict) and isinstance(value, Mapping):
            merge_fields(old, value)
        elif key not in body:
            body[key] = dict(value) if isinstance(value, Mapping) else value
    return body


def finding_event(
    f: Finding,
    *,
    host: str,
    action: str = "finding",
    seen: Observed | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Event:
    """One finding as an alert; ``action`` is ``finding``, ``realert``, ``resolved`` or
    ``attribution``.

    ``seen``: the file as the daemon found it when sending (``observe``). Who made the
    change (``f.actor``, from kernel audit) becomes ``user.*``, ``process.*`` and
    ``auditd.*``; ``extra``: more optional fields, merged without overriding.

    A resolved finding goes out at syslog level info, as an ``event`` (not an ``alert``),
    but keeps its original severity in the body so the SIEM can close the matching alert
    (same ``rule.id`` and ``file.path``); an attribution (the actor, known late) likewise,
    as an ``enrichment`` of that alert.
    """
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    follow_up = action in FOLLOW_UPS
    level = Severity.INFO if follow_up else f.severity
    before, after = _shown(f.attribute, f.before), _shown(f.attribute, f.after)
    sd = {
        "path": f.path, "rule": f.rule, "severity": str(f.severity),
        "attribute": f.attribute, "before": before, "after": after, "host": host,
    }  # fmt: skip
    kind, action_ = _kind(f), file_action(f)
    categories = ["file", "configuration"] if action_ == "config_change" else ["file"]
    body: dict[str, Any] = {
        "@timestamp": _now(),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": {"resolved": "event", "attribution": "enrichment"}.get(action, "alert"),
            "category": categories,
            "type": ["info"] if follow_up else [kind],
            "action": action if follow_up else action_,
            "severity": f.severity.rank + 1,
            "module": MODULE,
            "dataset": f"{MODULE}.finding",
        },
        "rule": rule_fields(f.rule),
        "file": _file(f, seen, action),
        "message": clip(f.message, 1024),
        "host": {"name": host},
        "log": _syslog(level),
        "labels": {"severity": str(f.severity), "attribute": f.attribute,
                   "before": before, "after": after},
        MODULE: {"alert_state": {"finding": "new"}.get(action, action)},
    }  # fmt: skip
    if seen is not None and seen.blake3:
        body[MODULE]["hash"] = {"blake3": seen.blake3}
    if f.fix:
        body["labels"]["fix"] = clip(f.fix, 512)
    if f.actor is not None:
        actor_sd, actor_body = actor_fields(f.actor)
        sd.update(actor_sd)
        merge_fields(body, actor_body)
    if extra:
        merge_fields(body, extra)
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
                  "module": MODULE, "dataset": f"{MODULE}.whodata"},
        "rule": rule_fields(rule),
        "message": clip(message, 1024),
        "host": {"name": host},
        "log": _syslog(Severity.MEDIUM),
    }  # fmt: skip
    sd = {"host": host, "rule": rule, "reason": clip(message)}
    return str(Severity.MEDIUM), rule, sd, body


def resolved_event(f: Finding, *, host: str, seen: Observed | None = None) -> Event:
    """A finding that went away (change reverted, or accepted into the baseline)."""
    return finding_event(f, host=host, action="resolved", seen=seen)


def heartbeat_event(seq: int, stats: Mapping[str, int | float | bool | str], *, host: str) -> Event:
    """Sent every minute so the SIEM can alert when a monitor goes silent."""
    counters = {k: label(v) for k, v in sorted(stats.items())}
    body: dict[str, Any] = {
        "@timestamp": _now(),
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "state", "category": ["host"], "type": ["info"],
                  "action": "heartbeat", "severity": 1, "sequence": seq,
                  "module": MODULE, "dataset": f"{MODULE}.heartbeat"},
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
                  "severity": severity.rank + 1, "module": MODULE,
                  "dataset": f"{MODULE}.lifecycle"},
        "message": clip(f"mail-integrity {phase}" + (f": {detail}" if detail else ""), 512),
        "host": {"name": host},
        "service": {"name": "mail-integrity", **({"version": version} if version else {})},
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
                  "action": f"baseline-{command}", "severity": 2, "module": MODULE,
                  "dataset": f"{MODULE}.baseline"},
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
