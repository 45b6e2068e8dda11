"""compare: baseline vs live records -> one Change per differing attribute (pure)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrity.compare import compare, diff_records
from integrity.model import Change, ChangeKind, FileRecord, FileType, Role

DIGEST_A = "blake3:" + "a" * 64
DIGEST_B = "blake3:" + "b" * 64


def rec(path: str = "/etc/mail/aliases", **kw: Any) -> FileRecord:
    """A plausible regular file record; keyword arguments override single fields."""
    base: dict[str, Any] = {
        "path": path,
        "ftype": FileType.FILE,
        "mode": 0o644,
        "uid": 0,
        "gid": 0,
        "owner": "root",
        "group": "root",
        "size": 120,
        "mtime_ns": 1_700_000_000_000_000_000,
        "ctime_ns": 1_700_000_000_000_000_000,
        "inode": 4242,
        "nlink": 1,
        "digest": DIGEST_A,
    }
    base.update(kw)
    return FileRecord(**base)


def replaced(r: FileRecord, **kw: Any) -> FileRecord:
    """``r`` with some fields changed (typed loosely so tables can mix value types)."""
    return dataclasses.replace(r, **kw)


# --------------------------------------------------------------------------- strategies

PATHS = st.sampled_from(
    ["/etc/mail/aliases", "/etc/mail/sendmail.cf", "/var/spool/mqueue", "/etc/\udcff", "/x\ny"]
)
JSON_LEAF = st.none() | st.booleans() | st.integers() | st.sampled_from(["", "x", "\udcff"])
FACTS = st.none() | st.dictionaries(
    st.sampled_from(["relayhost", "mynetworks", ""]),
    JSON_LEAF | st.lists(JSON_LEAF, max_size=3),
    max_size=3,
)
XATTR_NAMES = st.sampled_from(
    ["user.a", "trusted.b", "security.capability", "system.posix_acl_access", "security.ima"]
)


def _sorted_xattrs(d: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(d.items()))


#: any FileRecord (path filled in by ``trees``), including odd xattrs, flags and facts;
#: built once at import so hypothesis validates it once, not on every draw
RECORDS = st.builds(
    FileRecord,
    path=st.just("/"),
    ftype=st.sampled_from(list(FileType)),
    mode=st.integers(0, 0o7777),
    uid=st.integers(0, 70000),
    gid=st.integers(0, 70000),
    owner=st.none() | st.sampled_from(["root", "smmsp"]),
    group=st.none() | st.sampled_from(["root", "smmsp"]),
    size=st.integers(0, 10**12),
    mtime_ns=st.integers(0, 2**63 - 1),
    ctime_ns=st.integers(0, 2**63 - 1),
    inode=st.integers(0, 2**64 - 1),
    nlink=st.integers(1, 5),
    digest=st.sampled_from([None, DIGEST_A, DIGEST_B]),
    link_target=st.sampled_from([None, "aliases", "/tmp/x\udcff"]),
    xattrs=st.dictionaries(XATTR_NAMES, st.sampled_from(["", "00", "ff"])).map(_sorted_xattrs),
    caps=st.sampled_from([None, "cap_net_raw+ep", "cap_sys_admin+ep"]),
    acl=st.sampled_from([None, "user::rw-,user:1000:rw-,mask::rw-,other::r--"]),
    selinux=st.sampled_from([None, "system_u:object_r:etc_t:s0"]),
    flags=st.frozensets(st.sampled_from(["immutable", "append"])),
    facts=FACTS,
)
TREE_PATHS = st.sets(PATHS, max_size=4)


@st.composite
def trees(draw: st.DrawFn) -> dict[str, FileRecord]:
    """A small baseline or live tree: some of the sample paths, each with a record."""
    return {p: replaced(draw(RECORDS), path=p) for p in sorted(draw(TREE_PATHS))}


#: enough examples to hit every role and attribute mix, few enough to stay fast
FAST = settings(max_examples=60, deadline=None)

ROLE_MAPS = st.dictionaries(PATHS, st.sampled_from(list(Role)), max_size=5)

_FLIP = {
    ChangeKind.ADDED: ChangeKind.REMOVED,
    ChangeKind.REMOVED: ChangeKind.ADDED,
    ChangeKind.CHANGED: ChangeKind.CHANGED,
}


def swapped(ch: Change) -> Change:
    return Change(ch.path, _FLIP[ch.kind], ch.attribute, ch.after, ch.before)


# --------------------------------------------------------------------------- properties


@FAST
@given(trees(), ROLE_MAPS)
def test_tree_compared_with_itself_has_no_changes(tree: dict[str, FileRecord], roles: Any) -> None:
    """compare(a, a) is empty whatever the records and roles."""
    assert compare(tree, tree, roles) == []


@FAST
@given(trees(), trees(), ROLE_MAPS)
def test_swapping_arguments_swaps_added_removed_and_before_after(
    a: dict[str, FileRecord], b: dict[str, FileRecord], roles: Any
) -> None:
    """compare(b, a) is compare(a, b) with added<->removed and before<->after swapped."""
    assert compare(b, a, roles) == [swapped(c) for c in compare(a, b, roles)]


@FAST
@given(trees(), trees())
def test_changes_are_sorted_by_path(a: dict[str, FileRecord], b: dict[str, FileRecord]) -> None:
    """Changes come out grouped and sorted by path, whatever the dict order."""
    paths = [c.path for c in compare(a, b)]
    assert paths == sorted(paths)


# --------------------------------------------------------------------------- attributes


@pytest.mark.parametrize(
    ("field", "value", "before", "after"),
    [
        ("mode", 0o4755, 0o644, 0o4755),
        ("uid", 1000, 0, 1000),
        ("gid", 25, 0, 25),
        ("digest", DIGEST_B, DIGEST_A, DIGEST_B),
        ("size", 121, 120, 121),
        ("mtime_ns", 1, 1_700_000_000_000_000_000, 1),
        ("ctime_ns", 2, 1_700_000_000_000_000_000, 2),
        ("inode", 7, 4242, 7),
        ("nlink", 2, 1, 2),
        ("caps", "cap_net_raw+ep", None, "cap_net_raw+ep"),
        ("acl", "user:1000:rw-", None, "user:1000:rw-"),
        ("selinux", "system_u:object_r:etc_t:s0", None, "system_u:object_r:etc_t:s0"),
        ("flags", frozenset({"immutable"}), [], ["immutable"]),
        ("facts", {"relayhost": "x"}, None, {"relayhost": "x"}),
        ("link_target", "/tmp/evil", None, "/tmp/evil"),
    ],
)
def test_one_differing_attribute_gives_exactly_one_change(
    field: str, value: object, before: object, after: object
) -> None:
    """Each recorded attribute that differs is one CHANGED entry carrying before and after."""
    old = rec()
    new = replaced(old, **{field: value})
    assert compare({old.path: old}, {new.path: new}, {old.path: Role.CONFIG}) == [
        Change(old.path, ChangeKind.CHANGED, field, before, after)
    ]


def test_type_change_is_reported_as_ftype() -> None:
    """A file replaced by a symlink shows up as an ftype change (and the new target)."""
    old = rec()
    new = rec(ftype=FileType.SYMLINK, link_target="/tmp/x", digest=None)
    attrs = [c.attribute for c in diff_records(old, new, Role.CONFIG)]
    assert attrs[:2] == ["ftype", "link_target"]
    assert "digest" in attrs


def test_added_and_removed_carry_the_file_type() -> None:
    """A path only live is ADDED (after = its type); only in the baseline is REMOVED."""
    gone, new = rec("/etc/mail/a"), rec("/etc/mail/b", ftype=FileType.DIR)
    assert compare({gone.path: gone}, {new.path: new}) == [
        Change(gone.path, ChangeKind.REMOVED, "", FileType.FILE, None),
        Change(new.path, ChangeKind.ADDED, "", None, FileType.DIR),
    ]


def test_scope_limits_the_comparison_to_those_paths() -> None:
    """With scope, changes outside it are not reported (the daemon re-checks a few paths)."""
    a, b = rec("/etc/mail/a"), rec("/etc/mail/b")
    live = {a.path: replaced(a, mode=0o666), b.path: replaced(b, uid=1)}
    found = compare({a.path: a, b.path: b}, live, scope=[b.path])
    assert [(c.path, c.attribute) for c in found] == [(b.path, "uid")]


# --------------------------------------------------------------------------- roles


NOISE = {
    "digest": DIGEST_B,
    "facts": {"k": 1},
    "size": 9999,
    "mtime_ns": 5,
    "ctime_ns": 6,
    "inode": 7,
    "nlink": 3,
    "xattrs": (("user.mime_type", "00"),),
}


@pytest.mark.parametrize("role", [Role.VOLATILE, Role.QUEUE, Role.SPOOL])
@pytest.mark.parametrize("field", sorted(NOISE))
def test_private_and_churning_roles_ignore_content_and_times(role: Role, field: str) -> None:
    """Volatile, queue and spool paths never compare content, times, size or xattrs."""
    old = rec("/var/run/sendmail.pid")
    new = replaced(old, **{field: NOISE[field]})
    assert compare({old.path: old}, {new.path: new}, {old.path: role}) == []


@pytest.mark.parametrize("role", [Role.VOLATILE, Role.QUEUE, Role.SPOOL])
@pytest.mark.parametrize(
    ("field", "value"), [("mode", 0o666), ("uid", 1000), ("gid", 8), ("caps", "cap_kill+ep")]
)
def test_private_roles_still_compare_permissions(role: Role, field: str, value: object) -> None:
    """Volatile, queue and spool paths keep owner, group, mode and capability checks."""
    old = rec("/var/spool/mqueue")
    new = replaced(old, **{field: value})
    found = compare({old.path: old}, {new.path: new}, {old.path: role})
    assert [c.attribute for c in found] == [field]


@pytest.mark.parametrize("field", ["size", "mtime_ns", "ctime_ns", "nlink"])
def test_directories_ignore_size_times_and_link_count(field: str) -> None:
    """A directory's size/mtime/ctime/nlink move with every entry: not compared."""
    old = rec("/etc/mail", ftype=FileType.DIR, mode=0o755, digest=None)
    new = replaced(old, **{field: 1})
    assert compare({old.path: old}, {new.path: new}, {old.path: Role.DIRECTORY}) == []


@pytest.mark.parametrize(("field", "value"), [("inode", 1), ("mode", 0o775), ("uid", 8)])
def test_directories_still_compare_identity_and_permissions(field: str, value: int) -> None:
    """A directory replaced (new inode) or re-permissioned is still a change."""
    old = rec("/etc/mail", ftype=FileType.DIR, mode=0o755, digest=None)
    new = replaced(old, **{field: value})
    found = compare({old.path: old}, {new.path: new}, {old.path: Role.DIRECTORY})
    assert [c.attribute for c in found] == [field]


# --------------------------------------------------------------------------- xattrs


@pytest.mark.parametrize(
    ("xattr", "field", "decoded"),
    [
        ("security.capability", "caps", "cap_net_raw+ep"),
        ("system.posix_acl_access", "acl", "user::rw-,user:1000:rw-,mask::rw-,other::r--"),
        ("system.posix_acl_default", "acl", "default:user:1000:rwx"),
        ("security.selinux", "selinux", "system_u:object_r:shadow_t:s0"),
    ],
)
def test_decoded_xattrs_are_reported_once_under_their_own_name(
    xattr: str, field: str, decoded: str
) -> None:
    """A capability, ACL or SELinux change is one change, not also an "xattrs" change."""
    old = rec(xattrs=(("user.keep", "01"),))
    new = replaced(old, xattrs=tuple(sorted({*old.xattrs, (xattr, "0200")})), **{field: decoded})
    found = compare({old.path: old}, {new.path: new}, {old.path: Role.BINARY})
    assert [c.attribute for c in found] == [field]


def test_other_xattrs_are_reported_as_xattrs() -> None:
    """An xattr with no decoding of its own (user.*, security.ima) is an "xattrs" change."""
    old = rec(xattrs=(("security.capability", "0200"),))
    new = rec(xattrs=(("security.capability", "0200"), ("security.ima", "ff")))
    assert compare({old.path: old}, {new.path: new}) == [
        Change(old.path, ChangeKind.CHANGED, "xattrs", [], ["security.ima"])
    ]


def test_xattr_value_change_is_detected_without_carrying_values() -> None:
    """A changed xattr value is a change; before/after list names only, never raw values."""
    old = rec(xattrs=(("user.note", "00"),))
    new = rec(xattrs=(("user.note", "ff"),))
    assert compare({old.path: old}, {new.path: new}) == [
        Change(old.path, ChangeKind.CHANGED, "xattrs", ["user.note"], ["user.note"])
    ]
