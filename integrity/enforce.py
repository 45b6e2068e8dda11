"""Optional enforcement (``--enforce``): put a loosened mode or a changed owner back.

Only permissions and ownership are restored, to exactly what the baseline recorded;
content is never touched. The file is opened without following symlinks and its inode
must be the one just judged, so a swap between judging and fixing changes nothing.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping

from integrity.model import FileRecord, FileType, Finding, ScanWarning, Severity
from integrity.perms import fmt
from integrity.scanner import host_path

#: rules whose finding is a permission or ownership regression worth undoing
REGRESSIONS = frozenset({
    "MI-SETID-ADDED", "MI-PERM-WORLD-WRITABLE", "MI-PERM-GROUP-WRITABLE",
    "MI-SECRET-READABLE", "MI-QUEUE-LOOSENED", "MI-PERM-LOOSENED", "MI-OWNER-CHANGED",
    "MI-GROUP-CHANGED",
})  # fmt: skip

_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def restore(root: str, want: FileRecord, seen: FileRecord) -> Finding | ScanWarning:
    """Set ``want``'s mode, uid and gid on the file ``seen`` describes (same inode only)."""
    if seen.ftype not in (FileType.FILE, FileType.DIR) or want.ftype != seen.ftype:
        return ScanWarning(seen.path, f"not enforced: a {seen.ftype} is not restored")
    try:
        fd = os.open(
            host_path(root, seen.path),
            _FLAGS | (os.O_DIRECTORY if seen.ftype == FileType.DIR else 0),
        )
    except OSError as exc:
        return ScanWarning(seen.path, f"not enforced: {exc.strerror}")
    try:
        st = os.fstat(fd)
        if st.st_ino != seen.inode or stat.S_IMODE(st.st_mode) != seen.mode:
            return ScanWarning(seen.path, "not enforced: changed again since it was judged")
        if (st.st_uid, st.st_gid) != (want.uid, want.gid):
            os.fchown(fd, want.uid, want.gid)
        os.fchmod(fd, want.mode)  # after chown: chown clears set-id bits
    except OSError as exc:
        return ScanWarning(seen.path, f"not enforced: {exc.strerror}")
    finally:
        os.close(fd)
    return Finding(
        seen.path,
        "MI-ENFORCED",
        Severity.HIGH,
        f"restored the baseline mode {fmt(want.mode)} and owner {want.owner or want.uid}:"
        f"{want.group or want.gid} (was {fmt(seen.mode)} {seen.owner or seen.uid}:"
        f"{seen.group or seen.gid})",
        "mode",
        fmt(seen.mode),
        fmt(want.mode),
    )


def enforce(
    root: str,
    findings: Iterable[Finding],
    baseline: Mapping[str, FileRecord],
    current: Mapping[str, FileRecord],
) -> tuple[list[Finding], list[ScanWarning]]:
    """Restore every path with a regression finding; report each restoration."""
    done: list[Finding] = []
    warnings: list[ScanWarning] = []
    for path in sorted({f.path for f in findings if f.rule in REGRESSIONS}):
        want, seen = baseline.get(path), current.get(path)
        if want is None or seen is None:
            continue
        result = restore(root, want, seen)
        (done if isinstance(result, Finding) else warnings).append(result)  # type: ignore[arg-type]
    return done, warnings
