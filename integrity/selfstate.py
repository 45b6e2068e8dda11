"""The monitor's own state: database, outbox, ledger and the directories holding them.

They change in normal operation (every run writes the database and its WAL; systemd's
``StateDirectory=`` chowns the directory to the service user and ``StateDirectoryMode=``
tightens it), so comparing them with a baseline snapshot would cry wolf on every run.
They are judged against what they must be instead: directories and regular files (no
symlinks), owned by root, the user running us or the service user, never writable by
group or others, and no executable, device or foreign file planted beside them.
Any violation is critical: tampering with them is how an intruder blinds the monitor.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection
from dataclasses import dataclass

from integrity.model import Finding, Severity
from integrity.scanner import model_path

SERVICE_USER = "mail-integrity"
#: what SQLite and our atomic writes put next to a state file
SIDECARS = ("-wal", "-shm", "-journal", ".tmp", ".lock")


@dataclass(frozen=True, slots=True)
class SelfState:
    """Host paths of the state files and their directories, and where they sit in the root."""

    root: str
    files: tuple[str, ...]  # host paths: database, outbox, ledger
    dirs: tuple[str, ...]  # host paths of the directories holding them

    @classmethod
    def locate(cls, root: str, files: list[str | None]) -> SelfState:
        real = [os.path.abspath(f) for f in files if f and f != ":memory:"]
        return cls(
            os.path.abspath(root),
            tuple(dict.fromkeys(real)),
            tuple(dict.fromkeys(os.path.dirname(f) for f in real)),
        )

    def model(self, host: str) -> str | None:
        """The path inside the monitored root, or None when it lies outside."""
        return model_path(self.root, host)

    def excluded(self) -> set[str]:
        """Model paths never compared with the baseline: the state files (with their
        sidecars) and their directories' own entries in the plan."""
        out: set[str] = set()
        for host in (*self.files, *self.dirs):
            path = self.model(host)
            if path is not None:
                out.add(path)
        for host in self.files:
            out.update(p for p in (self.model(h) for h in companions(host)) if p is not None)
        return out

    def is_state_file(self, path: str) -> bool:
        """A model path that is a state file or a sidecar (written by every run)."""
        return any(self.model(h) == path for f in self.files for h in (f, *companions(f)))


def companions(host: str) -> list[str]:
    """What SQLite and our atomic, locked writes put next to a state file."""
    folder, base = os.path.split(host)
    return [host + s for s in SIDECARS] + [os.path.join(folder, f".{base}.lock")]


def check(
    state: SelfState, *, service_uid: int | None = None, shared: Collection[str] = ()
) -> list[Finding]:
    """Every expectation the state violates right now (only what lies inside the root).

    ``shared``: model paths of directories that are not ours alone (``/``, ``/var/lib``):
    judged elsewhere as parents of the mail files, their other entries none of our business.
    """
    allowed = {0, os.geteuid()}
    if service_uid is not None:
        allowed.add(service_uid)
    out: list[Finding] = []
    names: set[str] = set()
    for host in state.files:
        names.update(os.path.basename(h) for h in (host, *companions(host)))
    for host in state.dirs:
        path = state.model(host)
        if path is None or path in shared:
            continue
        st = _lstat(host)
        if st is None:
            continue
        out.extend(_judge(path, st, allowed, want_dir=True))
        if stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_ISVTX:
            out.extend(_entries(state, host, names, allowed))
    for host in state.files:
        for each in (host, *companions(host)):
            path = state.model(each)
            st = _lstat(each) if path is not None else None
            if path is not None and st is not None:
                out.extend(_judge(path, st, allowed, want_dir=False))
    return out


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def _judge(path: str, st: os.stat_result, allowed: set[int], *, want_dir: bool) -> list[Finding]:
    """One state directory or file against what it must be."""
    kind = "directory" if want_dir else "file"
    ok_type = stat.S_ISDIR(st.st_mode) if want_dir else stat.S_ISREG(st.st_mode)
    if not ok_type:
        what = _kind(st.st_mode)
        return [_finding(path, "MI-SELF-STATE-TYPE", f"should be a {kind}, is a {what}",
                         "ftype", kind, what)]  # fmt: skip
    out = []
    mode = stat.S_IMODE(st.st_mode)
    loose = mode & 0o022
    if want_dir and mode & stat.S_ISVTX:
        loose = 0  # a shared sticky directory such as /tmp: files cannot be replaced there
    if loose:
        out.append(_finding(path, "MI-SELF-STATE-WRITABLE",
                            f"{kind} is writable by {_whom(loose)}: anyone there can replace "
                            "or feed the monitor's state", "mode", None, f"{mode:04o}",
                            fix=f"chmod go-w {path}"))  # fmt: skip
    if not want_dir and mode & 0o7111:
        out.append(_finding(path, "MI-SELF-STATE-EXECUTABLE",
                            "state file is executable or set-id: it was replaced or planted",
                            "mode", None, f"{mode:04o}"))  # fmt: skip
    if st.st_uid not in allowed:
        out.append(_finding(path, "MI-SELF-STATE-OWNER",
                            f"{kind} owned by uid {st.st_uid}, not root, the service user or the "
                            "user running mail-integrity", "uid", None, st.st_uid))  # fmt: skip
    return out


def _entries(state: SelfState, host_dir: str, names: set[str], allowed: set[int]) -> list[Finding]:
    """Something planted beside the state: an executable, a special file or a link, or a
    file owned by someone else. Plain private files (a copy, a lock) are left alone."""
    out: list[Finding] = []
    try:
        entries = sorted(os.listdir(host_dir))
    except OSError:
        return out
    for name in entries:
        if name in names:
            continue
        host = os.path.join(host_dir, name)
        path = state.model(host)
        st = _lstat(host)
        if st is None or path is None:
            continue
        mode = stat.S_IMODE(st.st_mode)
        bad = None
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            bad = f"a {_kind(st.st_mode)}"
        elif stat.S_ISREG(st.st_mode) and mode & 0o7111:
            bad = f"an executable file ({mode:04o})"
        elif st.st_uid not in allowed:
            bad = f"owned by uid {st.st_uid}"
        elif mode & 0o002:
            bad = "writable by others"
        if bad:
            out.append(_finding(path, "MI-SELF-STATE-PLANTED",
                                f"unexpected entry in the monitor's state directory: {bad}",
                                "", None, _kind(st.st_mode)))  # fmt: skip
    return out


def _whom(bits: int) -> str:
    return " and ".join(w for w, b in (("group", 0o020), ("others", 0o002)) if bits & b)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "symlink"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISREG, "file"), (stat.S_ISFIFO, "fifo"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):  # fmt: skip
        if test(mode):
            return name
    return "unknown"


def _finding(
    path: str,
    rule: str,
    message: str,
    attribute: str,
    before: object,
    after: object,
    *,
    fix: str | None = None,
) -> Finding:
    return Finding(path, rule, Severity.CRITICAL, f"mail-integrity's own state: {message}",
                   attribute, before, after, fix=fix)  # fmt: skip
