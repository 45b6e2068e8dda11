"""Joining audit events to findings: by path or inode, by time, and by kind of change.

Shared by the live collector (``whodata``: a bounded ring of recent events) and the
offline reader (``verify``/``history``: auditd's log since the baseline was sealed). A
mode or owner finding is explained only by a chmod/chown/setxattr, a content finding only
by a write, rename, truncate or unlink; nothing else is ever used to name an actor.
"""

from __future__ import annotations

import collections
import os
import pwd
from dataclasses import replace
from datetime import datetime
from typing import Any

from integrity import auditrec
from integrity.auditrec import AuditEvent
from integrity.model import Actor, Finding, Severity

#: finding attributes changed by chmod/chown/setxattr; content-like ones by writes
ATTR_FINDINGS = frozenset({"mode", "uid", "gid", "owner", "group", "caps", "acl", "selinux",
                           "xattrs"})  # fmt: skip
WRITE_FINDINGS = frozenset({"digest", "content", "facts", "size", "link_target", "ftype", ""})
ATTR_SYSCALLS = frozenset({"chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown",
                           "lchown", "fchownat", "setxattr", "lsetxattr", "fsetxattr",
                           "removexattr", "lremovexattr", "fremovexattr"})  # fmt: skip


class Ring:
    """The last ``size`` events of our key, indexed by path name and inode."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.events: collections.deque[AuditEvent] = collections.deque()
        self.index: dict[object, list[AuditEvent]] = {}

    @staticmethod
    def _keys(event: AuditEvent) -> set[object]:
        keys: set[object] = {p.name for p in event.paths}
        keys |= {("ino", p.inode) for p in event.paths if p.inode}
        return keys

    def add(self, event: AuditEvent) -> None:
        self.events.append(event)
        for k in self._keys(event):
            self.index.setdefault(k, []).append(event)
        while len(self.events) > self.size:
            old = self.events.popleft()
            for k in self._keys(old):
                bucket = self.index.get(k, [])
                if old in bucket:
                    bucket.remove(old)
                if not bucket:
                    self.index.pop(k, None)

    def latest(
        self, path: str, inode: int | None, since: float, kind: str | None
    ) -> AuditEvent | None:
        found = list(self.index.get(path, ()))
        if inode:
            found += self.index.get(("ino", inode), ())
        for event in sorted(found, key=lambda e: e.time, reverse=True):
            if event.time >= since and matches_kind(event, kind):
                return event
        return None


def finding_kind(f: Finding) -> str | None:
    if f.attribute in ATTR_FINDINGS:
        return "attr"
    if f.attribute in WRITE_FINDINGS:
        return "write"
    return None


def matches_kind(event: AuditEvent, kind: str | None) -> bool:
    """A mode finding is explained by a chmod, a content finding by a write (unknown
    syscall numbers, on other architectures, match either)."""
    name = auditrec.syscall_name(event.fields)
    if kind is None or name is None or name.isdigit():
        return True
    return (name in ATTR_SYSCALLS) == (kind == "attr")


def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return None


AUDIT_LOG_DIR = "/var/log/audit"


def log_dir() -> str:
    """auditd's log directory; ``MAIL_INTEGRITY_AUDIT_LOG_DIR`` names a copied one."""
    return os.environ.get("MAIL_INTEGRITY_AUDIT_LOG_DIR") or AUDIT_LOG_DIR


def since_time(iso: str | None) -> float:
    """The baseline's ``sealed_at`` (ISO 8601) as a Unix time; 0 when unknown."""
    try:
        return datetime.fromisoformat(iso).timestamp() if iso else 0.0
    except ValueError:
        return 0.0


def offline_rows(
    rows: list[dict[str, Any]], root: str, since: float
) -> tuple[list[dict[str, Any]], list[Actor | None]]:
    """``history``: finding rows with an ``actor`` object where the audit log names one,
    and the actors themselves (for the text form)."""
    findings = [
        Finding(str(r["path"]), str(r["rule"]), Severity.INFO, "", str(r.get("attribute") or ""))
        for r in rows
    ]
    found, _ = offline(findings, root, since)
    out = [
        {**r, "actor": f.actor.to_json()} if f.actor is not None else r
        for r, f in zip(rows, found, strict=True)
    ]
    return out, [f.actor for f in found]


def offline(
    findings: list[Finding], root: str, since: float, directory: str | None = None
) -> tuple[list[Finding], str | None]:
    """``verify``/``history``: findings with the actor of the last matching record in
    auditd's log since ``since`` (the baseline time); unmatched findings stay as they are.
    Returns a warning when the log exists but cannot be read."""
    directory = directory or log_dir()
    if not findings:
        return findings, None
    if os.path.isdir(directory) and not os.access(directory, os.R_OK | os.X_OK):
        return findings, f"{directory}: audit log unreadable: who changed files is not shown"
    files = auditrec.log_files(directory, since)
    if not files:
        return findings, None
    root = root.rstrip("/")
    hosts = {root + f.path for f in findings}
    seen: dict[str, collections.deque[AuditEvent]] = {}
    try:
        for path in files:
            with open(path, encoding="utf-8", errors="replace") as fh:
                for event in auditrec.read_log(fh, since=since):
                    for item in event.paths:
                        if item.name in hosts:
                            seen.setdefault(item.name, collections.deque(maxlen=16)).append(event)
    except OSError as exc:
        return (
            findings,
            f"{directory}: audit log unreadable ({exc.strerror}): who changed files is not shown",
        )
    out = []
    for f in findings:
        kind = finding_kind(f)
        match = [e for e in seen.get(root + f.path, ()) if matches_kind(e, kind)]
        if match:
            event = max(match, key=lambda e: e.time)
            f = replace(
                f, actor=auditrec.actor(event, user_name=user_name, redact=auditrec.redact_args)
            )
        out.append(f)
    return out, None
