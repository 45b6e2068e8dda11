"""Compare: baseline records vs live records -> one Change per differing attribute.

Pure: plain mappings in, a list out. Which attributes matter for a path is decided here
from its role (a volatile file's content is never compared), and what a change *means*
is the judge's business.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from integrity.model import Change, ChangeKind, FileRecord, Role

#: xattrs that have their own decoded attribute, so a change is reported once.
DECODED_XATTRS = frozenset(
    {
        "security.capability",
        "system.posix_acl_access",
        "system.posix_acl_default",
        "security.selinux",
    }
)

#: attributes compared for every role, in report order
PERMISSION_ATTRS = ("ftype", "mode", "uid", "gid", "link_target", "caps", "acl", "selinux", "flags")
CONTENT_ATTRS = ("digest", "facts")
METADATA_ATTRS = ("size", "mtime_ns", "ctime_ns", "inode", "nlink")

#: roles whose content and churning metadata are not compared
NO_CONTENT = frozenset({Role.QUEUE, Role.VOLATILE, Role.SPOOL})


def other_xattrs(rec: FileRecord) -> dict[str, str]:
    return {k: v for k, v in rec.xattrs if k not in DECODED_XATTRS}


def attributes_for(role: Role | None, ftype_dir: bool) -> tuple[str, ...]:
    if role in NO_CONTENT:
        return PERMISSION_ATTRS
    if ftype_dir:
        # a directory's size/mtime/ctime/nlink move whenever an entry is added: noise
        return (*PERMISSION_ATTRS, "inode")
    return (*PERMISSION_ATTRS, *CONTENT_ATTRS, *METADATA_ATTRS)


def diff_records(before: FileRecord, after: FileRecord, role: Role | None = None) -> list[Change]:
    """Changes between two records of the same path."""
    changes = []
    is_dir = before.ftype == "dir" and after.ftype == "dir"
    for attr in attributes_for(role, is_dir):
        old, new = getattr(before, attr), getattr(after, attr)
        if attr == "flags":
            old, new = sorted(old), sorted(new)
        if old != new:
            changes.append(Change(before.path, ChangeKind.CHANGED, attr, old, new))
    if role not in NO_CONTENT:
        old_x, new_x = other_xattrs(before), other_xattrs(after)
        if old_x != new_x:
            changes.append(
                Change(before.path, ChangeKind.CHANGED, "xattrs", sorted(old_x), sorted(new_x))
            )
    return changes


def compare(
    baseline: Mapping[str, FileRecord],
    current: Mapping[str, FileRecord],
    roles: Mapping[str, Role] | None = None,
    *,
    scope: Iterable[str] | None = None,
) -> list[Change]:
    """All changes, sorted by path. ``scope`` limits the comparison to those paths."""
    roles = roles or {}
    paths = set(scope) if scope is not None else set(baseline) | set(current)
    changes: list[Change] = []
    for path in sorted(paths):
        old, new = baseline.get(path), current.get(path)
        if old is None and new is not None:
            changes.append(Change(path, ChangeKind.ADDED, "", None, new.ftype))
        elif old is not None and new is None:
            changes.append(Change(path, ChangeKind.REMOVED, "", old.ftype, None))
        elif old is not None and new is not None:
            changes.extend(diff_records(old, new, roles.get(path)))
    return changes
