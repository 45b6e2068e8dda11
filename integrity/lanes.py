"""The daemon's lanes: which worker owns which findings, and the pure pieces they share.

Three workers, chosen by what happened, not by path tests scattered in the daemon:
- the *attribute* lane judges mode, owner, group, capabilities, ACLs, SELinux labels,
  flags and xattrs from ``lstat`` + xattrs alone: it never reads content, so a file being
  hashed (a user's 20 GB ``.forward``) can never delay a set-uid alert;
- the *content* lane hashes (with a cap for files a user can grow) and owns everything
  else: content, analyzer meaning, new, removed and retyped files; full verifies run here;
- the *queue* lane checks queue and spool entries (attributes only, never content).

For a path in the baseline the attribute lane owns the findings whose attribute is in
``ATTR_FINDINGS``; the content lane keeps them as they are (``carry``) and decides only
the rest. A full verify that collected a path before a fast lane re-judged it leaves that
path's fast-lane findings alone, so a stale view can never resolve a fresh alert.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from integrity import scanner
from integrity.model import FileRecord, Finding, ScanWarning, Severity
from integrity.store import row_finding

#: finding attributes judged by the attribute lane (what lstat and xattrs answer)
ATTR_FINDINGS = frozenset({"mode", "owner", "group", "caps", "acl", "selinux", "flags", "xattrs"})

MAX_DIRTY = 100_000  # beyond this many pending paths, a full verify is cheaper and bounded


class DirtySet:
    """Paths touched since the worker last looked; bounded, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: set[str] = set()
        self._full = False
        self.wake = threading.Event()

    def add(self, *paths: str) -> None:
        with self._lock:
            if len(self._paths) < MAX_DIRTY:
                self._paths.update(paths)
            else:
                self._full = True
        self.wake.set()

    def request_full(self) -> None:
        with self._lock:
            self._full = True
        self.wake.set()

    def take(self) -> tuple[set[str], bool]:
        with self._lock:
            paths, full = self._paths, self._full
            self._paths, self._full = set(), False
            self.wake.clear()
        return paths, full


def attr_owned(attribute: str) -> bool:
    return attribute in ATTR_FINDINGS


def attribute_view(base: FileRecord, current: FileRecord) -> FileRecord:
    """The live attributes on the baseline's content: judging it yields attribute findings
    only (the content fields are the baseline's, so nothing else differs)."""
    return replace(
        current,
        digest=base.digest,
        facts=base.facts,
        size=base.size,
        mtime_ns=base.mtime_ns,
        ctime_ns=base.ctime_ns,
        inode=base.inode,
        nlink=base.nlink,
        link_target=base.link_target if current.ftype == base.ftype else current.link_target,
    )


def carry(
    findings: Iterable[Finding],
    open_rows: Iterable[Mapping[str, Any]],
    paths: set[str],
    kept: Callable[[str, str], bool],
) -> list[Finding]:
    """``findings`` minus those another lane decides (``kept(path, attribute)`` for a path
    in ``paths``), plus that lane's open findings for those paths, unchanged: tracking the
    result with those paths in scope neither raises nor resolves what is not ours."""
    out = [f for f in findings if not (f.path in paths and kept(f.path, f.attribute))]
    for row in open_rows:
        path, attribute = str(row["path"]), str(row.get("attribute") or "")
        if path in paths and kept(path, attribute):
            out.append(row_finding(row))
    return out


def oversize_findings(
    warnings: Iterable[ScanWarning], cap: int, role_of: Callable[[str], str]
) -> list[Finding]:
    """A file a user can grow, larger than the hash cap: itself a finding."""
    return [
        Finding(
            w.path,
            "MI-FILE-OVERSIZED",
            Severity.HIGH,
            f"{role_of(w.path)} file larger than {cap} bytes that a non-root user can grow: "
            "not hashed (a real .forward or alias list is far smaller)",
            "size",
            None,
            f">{cap}",
            fix=f"look at {w.path}: who grew it and why",
        )
        for w in warnings
        if w.message == scanner.OVERSIZE
    ]


def keep_content(
    records: dict[str, FileRecord],
    baseline: Mapping[str, FileRecord],
    warnings: Iterable[ScanWarning],
) -> None:
    """An oversized file was not hashed: judge its content as the baseline's (the
    MI-FILE-OVERSIZED finding says what is wrong) rather than as "changed to nothing"."""
    for w in warnings:
        rec, base = records.get(w.path), baseline.get(w.path)
        if w.message == scanner.OVERSIZE and rec is not None and base is not None:
            records[w.path] = replace(
                rec, digest=base.digest, facts=base.facts, size=base.size,
                mtime_ns=base.mtime_ns, ctime_ns=base.ctime_ns,
            )  # fmt: skip
