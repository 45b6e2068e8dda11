"""judge: what a change or a state means, graded by the PRODUCT.md severity model (pure)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from integrity.compare import compare
from integrity.judge import check_child, check_parent, check_state, judge
from integrity.model import FileRecord, FileType, Finding, PackageVerdict, Role, Severity
from integrity.policy import Expect, Policy, Rule

DIGEST_A = "blake3:" + "a" * 64
DIGEST_B = "blake3:" + "b" * 64
CRIT, HIGH, MED, LOW, INFO = (
    Severity.CRITICAL,
    Severity.HIGH,
    Severity.MEDIUM,
    Severity.LOW,
    Severity.INFO,
)
WRITE_ACL = "user::rw-,user:1000:rw-,group::r--,mask::rw-,other::r--"
READ_ACL = "user::rw-,user:1000:r--,group::r--,mask::r--,other::r--"

PATH_FOR = {
    Role.BINARY: "/usr/sbin/sendmail-mta",
    Role.CONFIG: "/etc/mail/sendmail.cf",
    Role.ALIASES: "/etc/aliases",
    Role.MAP: "/etc/mail/access.db",
    Role.GENERATED: "/etc/mail/submit.cf",
    Role.SECRET: "/etc/mail/authinfo",
    Role.QUEUE: "/var/spool/mqueue",
    Role.DIRECTORY: "/etc/mail",
    Role.VOLATILE: "/run/sendmail/mta/sendmail.pid",
    Role.SPOOL: "/var/mail",
}
DIR_ROLES = {Role.QUEUE, Role.DIRECTORY, Role.SPOOL}


def rec(path: str, **kw: Any) -> FileRecord:
    """A root-owned 0644 regular file unless overridden."""
    base: dict[str, Any] = {
        "path": path,
        "ftype": FileType.FILE,
        "mode": 0o644,
        "uid": 0,
        "gid": 0,
        "owner": "root",
        "group": "root",
        "size": 10,
        "mtime_ns": 1,
        "ctime_ns": 1,
        "inode": 11,
        "digest": DIGEST_A,
    }
    base.update(kw)
    return FileRecord(**base)


def replaced(r: FileRecord, **kw: Any) -> FileRecord:
    """``r`` with some fields changed (typed loosely so tables can mix value types)."""
    return dataclasses.replace(r, **kw)


def for_role(role: Role, **kw: Any) -> FileRecord:
    """The typical record of a path with ``role`` (directories for dir roles)."""
    if role in DIR_ROLES:
        kw = {"ftype": FileType.DIR, "mode": 0o755, "digest": None, **kw}
    return rec(PATH_FOR[role], **kw)


def rule(role: Role, path: str | None = None, **kw: Any) -> Rule:
    """A rule for ``path`` (default: the role's sample path), no expectations unless given."""
    kw.setdefault("expect", Expect())
    return Rule(path or PATH_FOR[role], role, "test", **kw)


def run(
    old: dict[str, FileRecord],
    new: dict[str, FileRecord],
    rules: list[Rule],
    **kw: Any,
) -> list[Finding]:
    """The real pipeline minus I/O: compare, then judge."""
    policy = Policy(("test",), tuple(rules))
    roles = {r.pattern: r.role for r in rules}
    return judge(compare(old, new, roles), old, new, policy, roles, **kw)


def judged(old: FileRecord, new: FileRecord, role: Role, **kw: Any) -> list[Finding]:
    """Findings for one path changing from ``old`` to ``new`` under a plain ``role`` rule."""
    return run({old.path: old}, {new.path: new}, [rule(role, old.path)], **kw)


def graded(findings: list[Finding]) -> list[tuple[str, Severity]]:
    return [(f.rule, f.severity) for f in findings]


# --------------------------------------------------------------------------- mode changes


@pytest.mark.parametrize(
    ("role", "old_mode", "new_mode", "expected"),
    [
        (Role.BINARY, 0o755, 0o4755, [("MI-SETID-ADDED", CRIT)]),
        (Role.BINARY, 0o755, 0o2755, [("MI-SETID-ADDED", CRIT)]),
        (Role.CONFIG, 0o644, 0o4644, [("MI-SETID-ADDED", CRIT)]),
        (Role.VOLATILE, 0o644, 0o2644, [("MI-SETID-ADDED", CRIT)]),
        (Role.CONFIG, 0o644, 0o646, [("MI-PERM-WORLD-WRITABLE", CRIT)]),
        (Role.VOLATILE, 0o644, 0o646, [("MI-PERM-WORLD-WRITABLE", CRIT)]),
        (Role.DIRECTORY, 0o755, 0o757, [("MI-PERM-WORLD-WRITABLE", CRIT)]),
        (Role.CONFIG, 0o644, 0o664, [("MI-PERM-GROUP-WRITABLE", HIGH)]),
        (Role.ALIASES, 0o644, 0o664, [("MI-PERM-GROUP-WRITABLE", HIGH)]),
        (Role.SECRET, 0o640, 0o660, [("MI-PERM-GROUP-WRITABLE", HIGH)]),
        (Role.VOLATILE, 0o644, 0o664, [("MI-PERM-GROUP-WRITABLE", MED)]),
        (Role.SECRET, 0o600, 0o604, [("MI-SECRET-READABLE", HIGH)]),
        (Role.SECRET, 0o600, 0o640, [("MI-SECRET-READABLE", MED)]),
        (Role.QUEUE, 0o700, 0o750, [("MI-QUEUE-LOOSENED", HIGH)]),
        (Role.QUEUE, 0o700, 0o701, [("MI-QUEUE-LOOSENED", HIGH)]),
        (Role.QUEUE, 0o700, 0o770, [("MI-PERM-GROUP-WRITABLE", HIGH), ("MI-QUEUE-LOOSENED", HIGH)]),
        (Role.SPOOL, 0o2775, 0o2777, [("MI-PERM-WORLD-WRITABLE", CRIT)]),
        (Role.DIRECTORY, 0o755, 0o2755, [("MI-DIR-SETGID", LOW)]),
        (Role.CONFIG, 0o644, 0o744, [("MI-PERM-LOOSENED", MED)]),
        (Role.CONFIG, 0o644, 0o600, [("MI-PERM-TIGHTENED", LOW)]),
        (Role.BINARY, 0o4755, 0o755, [("MI-PERM-TIGHTENED", LOW)]),
        (Role.QUEUE, 0o750, 0o700, [("MI-PERM-TIGHTENED", LOW)]),
    ],
)
def test_mode_change_is_graded_by_what_it_grants(
    role: Role, old_mode: int, new_mode: int, expected: list[tuple[str, Severity]]
) -> None:
    """Each newly granted bit is judged by the role; a pure tightening is low."""
    old = for_role(role, mode=old_mode, gid=25, group="smmsp")
    new = replaced(old, mode=new_mode, ctime_ns=2)
    assert graded(judged(old, new, role)) == expected


def test_setid_and_world_write_added_together_are_both_critical() -> None:
    """One chmod that adds u+s and o+w yields one critical finding per danger."""
    old = for_role(Role.BINARY, mode=0o755)
    new = replaced(old, mode=0o4757)
    assert graded(judged(old, new, Role.BINARY)) == [
        ("MI-SETID-ADDED", CRIT),
        ("MI-PERM-WORLD-WRITABLE", CRIT),
    ]


def test_loosening_finding_shows_modes_and_the_chmod_that_undoes_it() -> None:
    """A loosening carries before/after modes in octal and a fix removing only the new bits."""
    old = for_role(Role.CONFIG, mode=0o640)
    (f,) = judged(old, replaced(old, mode=0o642), Role.CONFIG)
    assert (f.attribute, f.before, f.after) == ("mode", "0640", "0642")
    assert f.fix == f"chmod 0640 {old.path}"


def test_dir_losing_its_sticky_bit_while_world_writable_is_critical() -> None:
    """/var/mail 1777 -> 0777: anyone may now replace other users' mailboxes."""
    old = for_role(Role.SPOOL, mode=0o1777)
    found = judged(old, replaced(old, mode=0o777), Role.SPOOL)
    assert graded(found) == [("MI-PERM-WORLD-WRITABLE", CRIT)]


@pytest.mark.parametrize(
    ("expect", "severity"),
    [(Expect(), MED), (Expect(mode=(0o644,)), HIGH), (Expect(deny=0o100), HIGH)],
)
def test_loosening_beyond_the_profile_is_escalated(expect: Expect, severity: Severity) -> None:
    """A plain loosening is medium, high when the profile's modes or deny forbid the bit."""
    old = for_role(Role.CONFIG, mode=0o644)
    new = replaced(old, mode=0o744)
    found = run({old.path: old}, {new.path: new}, [rule(Role.CONFIG, expect=expect)])
    assert graded(found) == [("MI-PERM-LOOSENED", severity)]


@pytest.mark.parametrize(
    ("change", "expected_rule"),
    [
        ({"mtime_ns": 9}, "MI-SELF-METADATA-CHANGED"),
        ({"mode": 0o600}, "MI-SELF-PERM-TIGHTENED"),
        ({"digest": DIGEST_B}, "MI-SELF-CONTENT-CHANGED"),
    ],
)
def test_any_change_to_the_monitors_own_files_is_critical(
    change: dict[str, Any], expected_rule: str
) -> None:
    """Files of the "self" profile: even a metadata change is critical (blinding attempt)."""
    path = "/etc/mail-integrity/config.toml"
    old = rec(path)
    self_rule = Rule(path, Role.CONFIG, "self", Expect())
    (f,) = run({path: old}, {path: replaced(old, **change)}, [self_rule])
    assert (f.rule, f.severity) == (expected_rule, CRIT)
    assert f.message.startswith("mail-integrity's own file: ")


def test_directory_made_sticky_world_writable_is_critical() -> None:
    """/etc/mail going 0755 -> 1777 lets anyone plant files there: critical."""
    old = for_role(Role.DIRECTORY, mode=0o755)
    found = judged(old, replaced(old, mode=0o1777), Role.DIRECTORY)
    assert max(f.severity.rank for f in found) == CRIT.rank


def test_setuid_added_on_a_directory_is_not_called_a_tightening() -> None:
    """u+s appearing on a directory is an added bit, never reported as a tightening."""
    old = for_role(Role.DIRECTORY, mode=0o755)
    found = judged(old, replaced(old, mode=0o4755), Role.DIRECTORY)
    assert [f.rule for f in found if f.rule == "MI-PERM-TIGHTENED"] == []
    assert max(f.severity.rank for f in found) >= MED.rank


# --------------------------------------------------------------------------- owner / group


@pytest.mark.parametrize(
    ("role", "old_uid", "new_uid", "severity"),
    [
        (Role.BINARY, 0, 1000, CRIT),
        (Role.CONFIG, 0, 1000, CRIT),
        (Role.ALIASES, 0, 1000, CRIT),
        (Role.SECRET, 0, 1000, CRIT),
        (Role.DIRECTORY, 0, 1000, CRIT),
        (Role.QUEUE, 0, 1000, HIGH),
        (Role.VOLATILE, 0, 1000, HIGH),
        (Role.CONFIG, 1000, 0, HIGH),
        (Role.CONFIG, 1000, 1001, HIGH),
    ],
)
def test_owner_change_is_critical_when_a_trusted_file_leaves_root(
    role: Role, old_uid: int, new_uid: int, severity: Severity
) -> None:
    """Owner root -> other on binary/config/... is critical; other owner moves are high."""
    old = for_role(role, uid=old_uid, owner=None)
    (f,) = judged(old, replaced(old, uid=new_uid), role)
    assert (f.rule, f.severity, f.before, f.after) == (
        "MI-OWNER-CHANGED",
        severity,
        str(old_uid),
        str(new_uid),
    )


@pytest.mark.parametrize(
    ("role", "mode", "severity"),
    [
        (Role.CONFIG, 0o644, MED),
        (Role.CONFIG, 0o664, HIGH),
        (Role.BINARY, 0o2755, HIGH),
        (Role.SECRET, 0o640, HIGH),
        (Role.SECRET, 0o600, MED),
    ],
)
def test_group_change_is_high_when_the_group_gains_something(
    role: Role, mode: int, severity: Severity
) -> None:
    """A new group matters more when it can write, is set-gid, or can read a secret."""
    old = for_role(role, mode=mode)
    new = replaced(old, gid=1000, group="mallory")
    assert graded(judged(old, new, role)) == [("MI-GROUP-CHANGED", severity)]


# --------------------------------------------------------------------------- content


def test_setid_binary_replaced_is_critical() -> None:
    """New content in a set-id binary, not explained by a package: critical."""
    old = for_role(Role.BINARY, mode=0o2555, gid=25, group="smmsp")
    new = replaced(old, digest=DIGEST_B, size=11)
    assert graded(judged(old, new, Role.BINARY)) == [("MI-SETID-BINARY-REPLACED", CRIT)]


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (Role.BINARY, [("MI-BINARY-CHANGED", HIGH)]),
        (Role.CONFIG, [("MI-CONTENT-CHANGED", MED)]),
        (Role.ALIASES, [("MI-CONTENT-CHANGED", MED)]),
        (Role.SECRET, [("MI-SECRET-CHANGED", MED)]),
        (Role.MAP, [("MI-MAP-CHANGED-WITHOUT-SOURCE", HIGH)]),
    ],
)
def test_content_change_is_graded_by_role(role: Role, expected: list[tuple[str, Severity]]) -> None:
    """Binary changed is high, config/aliases medium, a map changed on its own high."""
    old = for_role(role)
    new = replaced(old, digest=DIGEST_B, size=11, mtime_ns=2)
    assert graded(judged(old, new, role)) == expected


def test_triage_explains_a_package_upgrade_as_info() -> None:
    """A binary change the package manager vouches for is info, with its reason."""
    old = for_role(Role.BINARY)
    new = replaced(old, digest=DIGEST_B)
    upgrade = PackageVerdict(True, False, "matches sendmail-bin 8.17.1.9")
    found = judged(old, new, Role.BINARY, triage=lambda r: upgrade)
    assert graded(found) == [("MI-PACKAGE-UPGRADE", INFO)]
    assert found[0].message == "matches sendmail-bin 8.17.1.9"


def test_triage_without_a_reason_leaves_the_change_judged() -> None:
    """When triage cannot explain a change, the normal grading applies."""
    old = for_role(Role.BINARY)
    new = replaced(old, digest=DIGEST_B)
    assert graded(judged(old, new, Role.BINARY, triage=lambda r: None)) == [
        ("MI-BINARY-CHANGED", HIGH)
    ]


MAP, SRC = "/etc/mail/access.db", "/etc/mail/access"


@pytest.mark.parametrize(
    ("source_changed", "expected"),
    [(True, ("MI-MAP-REBUILT", INFO)), (False, ("MI-MAP-CHANGED-WITHOUT-SOURCE", HIGH))],
)
def test_map_change_follows_its_source(
    source_changed: bool, expected: tuple[str, Severity]
) -> None:
    """A .db rebuilt with its source is info; a .db changed alone was edited directly."""
    old = {MAP: rec(MAP), SRC: rec(SRC)}
    new = {
        MAP: rec(MAP, digest=DIGEST_B),
        SRC: rec(SRC, digest=DIGEST_B if source_changed else DIGEST_A),
    }
    rules = [rule(Role.MAP, MAP, source=SRC), rule(Role.CONFIG, SRC)]
    found = [f for f in run(old, new, rules) if f.path == MAP]
    assert graded(found) == [expected]


@pytest.mark.parametrize(
    ("source_changed", "expected"),
    [(True, []), (False, [("MI-GENERATED-HAND-EDITED", MED)])],
)
def test_generated_file_changed_without_its_source_is_hand_edited(
    source_changed: bool, expected: list[tuple[str, Severity]]
) -> None:
    """sendmail.cf changed while sendmail.mc did not: someone edited the output."""
    cf, mc = "/etc/mail/submit.cf", "/etc/mail/submit.mc"
    old = {cf: rec(cf), mc: rec(mc)}
    new = {
        cf: rec(cf, digest=DIGEST_B),
        mc: rec(mc, digest=DIGEST_B if source_changed else DIGEST_A),
    }
    found = run(old, new, [rule(Role.GENERATED, cf, source=mc), rule(Role.CONFIG, mc)])
    hand = [g for g in graded([f for f in found if f.path == cf]) if g[0] != "MI-CONTENT-CHANGED"]
    assert hand == expected


SECRET_CHANGES: list[dict[str, Any]] = [
    {"digest": DIGEST_B},
    {"digest": DIGEST_B, "size": 99, "mtime_ns": 5},
    {"facts": {"user": "x"}},
    {"digest": DIGEST_B, "mode": 0o644},
    {"digest": DIGEST_B, "ftype": FileType.SYMLINK, "link_target": "/tmp/k"},
]


@pytest.mark.parametrize("change", SECRET_CHANGES)
def test_secret_findings_never_carry_digests_or_content(change: dict[str, Any]) -> None:
    """No finding about a secret has a digest or facts in before, after or message."""
    old = for_role(Role.SECRET, mode=0o600, facts={"user": "hunter2"})
    new = replaced(old, **change)
    found = judged(old, new, Role.SECRET)
    assert found
    text = repr([(f.before, f.after, f.message, f.fix) for f in found])
    for needle in (DIGEST_A, DIGEST_B, "hunter2", "'user'"):
        assert needle not in text


def test_secret_explained_by_triage_carries_no_digests() -> None:
    """Even a package-explained secret change never shows its content digests."""
    old = for_role(Role.SECRET, mode=0o600)
    new = replaced(old, digest=DIGEST_B)
    upgrade = PackageVerdict(True, False, "matches ssl-cert")
    found = judged(old, new, Role.SECRET, triage=lambda r: upgrade)
    assert found
    assert all(f.before is None and f.after is None for f in found)


# --------------------------------------------------------------------------- type, added, removed


@pytest.mark.parametrize(
    ("new_kw", "expected"),
    [
        (
            {"ftype": FileType.SYMLINK, "link_target": "/tmp/x", "digest": None, "mode": 0o777},
            [("MI-FILE-REPLACED-BY-SYMLINK", HIGH)],
        ),
        ({"ftype": FileType.DIR, "digest": None}, [("MI-TYPE-CHANGED", HIGH)]),
        ({"ftype": FileType.FIFO, "digest": None, "uid": 1000}, [("MI-TYPE-CHANGED", HIGH)]),
    ],
)
def test_type_change_is_one_high_finding(
    new_kw: dict[str, Any], expected: list[tuple[str, Severity]]
) -> None:
    """A replaced file is one high finding, not a pile of attribute noise."""
    old = for_role(Role.CONFIG)
    assert graded(judged(old, replaced(old, **new_kw), Role.CONFIG)) == expected


def test_symlink_retargeted_is_high() -> None:
    """A monitored symlink pointing somewhere new is high, with both targets."""
    old = rec("/etc/aliases", ftype=FileType.SYMLINK, link_target="mail/aliases", digest=None)
    (f,) = judged(old, replaced(old, link_target="/tmp/aliases"), Role.ALIASES)
    assert (f.rule, f.severity, f.before, f.after) == (
        "MI-LINK-TARGET-CHANGED",
        HIGH,
        "mail/aliases",
        "/tmp/aliases",
    )


@pytest.mark.parametrize(
    ("role", "severity"),
    [(Role.CONFIG, HIGH), (Role.BINARY, HIGH), (Role.SECRET, HIGH), (Role.VOLATILE, LOW)],
)
def test_removed_file_is_high_unless_volatile(role: Role, severity: Severity) -> None:
    """A monitored file that vanished is high (a pid file coming and going is low)."""
    old = for_role(role)
    assert graded(run({old.path: old}, {}, [rule(role)])) == [("MI-FILE-REMOVED", severity)]


RECURSIVE_ETC_MAIL = [rule(Role.DIRECTORY, "/etc/mail", recursive=True)]


def test_new_file_in_a_monitored_dir_is_medium() -> None:
    """An unnamed new file below a recursive monitored dir is MI-FILE-ADDED, medium."""
    new = rec("/etc/mail/new.cf")
    assert graded(run({}, {new.path: new}, RECURSIVE_ETC_MAIL)) == [("MI-FILE-ADDED", MED)]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (0o644, []),
        (0o4755, [("MI-EXPECT-SETID", CRIT)]),
        (0o2755, [("MI-EXPECT-SETID", CRIT)]),
        (0o666, [("MI-EXPECT-PERM-WORLD-WRITABLE", CRIT)]),
    ],
)
def test_added_file_also_gets_its_state_findings(
    mode: int, expected: list[tuple[str, Severity]]
) -> None:
    """Besides the added finding, a new set-id or world-writable file is critical."""
    new = rec("/etc/mail/new.cf", mode=mode)
    found = run({}, {new.path: new}, RECURSIVE_ETC_MAIL)
    assert graded(found) == [("MI-FILE-ADDED", MED), *expected]


@pytest.mark.parametrize(
    ("role", "note", "expected"),
    [
        (Role.SECRET, "new credentials", ("MI-FILE-APPEARED", HIGH)),
        (Role.CONFIG, "", ("MI-FILE-APPEARED", HIGH)),
        (Role.VOLATILE, "", ("MI-FILE-ADDED", MED)),
    ],
)
def test_path_named_by_the_profile_appearing_is_high(
    role: Role, note: str, expected: tuple[str, Severity]
) -> None:
    """A path the profile lists by name that appears has a known meaning: high (not pid files)."""
    new = for_role(role, mode=0o600)
    (f,) = run({}, {new.path: new}, [rule(role, note=note)])
    assert (f.rule, f.severity) == expected
    assert note in f.message


def test_added_file_with_capabilities_is_critical() -> None:
    """A new file that gains privileges when run is critical, like a new set-id file."""
    new = rec("/etc/mail/helper", mode=0o755, caps="cap_setuid+ep")
    found = run({}, {new.path: new}, [rule(Role.DIRECTORY, "/etc/mail", recursive=True)])
    assert max(f.severity.rank for f in found) == CRIT.rank


# --------------------------------------------------------------------------- metadata, xattrs


@pytest.mark.parametrize(
    "change",
    [{"mtime_ns": 9}, {"ctime_ns": 9}, {"inode": 99}, {"mtime_ns": 9, "ctime_ns": 9, "inode": 99}],
)
def test_metadata_only_change_is_low(change: dict[str, int]) -> None:
    """Same content and permissions, new times or inode: one low finding naming them."""
    old = for_role(Role.CONFIG)
    (f,) = judged(old, replaced(old, **change), Role.CONFIG)
    assert (f.rule, f.severity) == ("MI-METADATA-CHANGED", LOW)
    assert f.attribute == ",".join(sorted(change))


def test_metadata_noise_is_not_reported_beside_a_real_change() -> None:
    """A chmod also moves ctime; only the mode finding is reported."""
    old = for_role(Role.CONFIG)
    new = replaced(old, mode=0o600, ctime_ns=9)
    assert graded(judged(old, new, Role.CONFIG)) == [("MI-PERM-TIGHTENED", LOW)]


@pytest.mark.parametrize(
    ("role", "old_kw", "new_kw", "expected"),
    [
        (Role.BINARY, {}, {"caps": "cap_setuid+ep"}, ("MI-CAPABILITY-ADDED", CRIT)),
        (Role.VOLATILE, {}, {"caps": "cap_net_raw+ep"}, ("MI-CAPABILITY-ADDED", CRIT)),
        (
            Role.BINARY,
            {"caps": "cap_net_bind_service+ep"},
            {"caps": "cap_sys_admin+ep"},
            ("MI-CAPABILITY-ADDED", CRIT),
        ),
        (Role.BINARY, {"caps": "cap_net_raw+ep"}, {}, ("MI-CAPABILITY-REMOVED", LOW)),
        (Role.CONFIG, {}, {"acl": WRITE_ACL}, ("MI-ACL-WRITE-ADDED", HIGH)),
        (Role.ALIASES, {"acl": READ_ACL}, {"acl": WRITE_ACL}, ("MI-ACL-WRITE-ADDED", HIGH)),
        (Role.BINARY, {}, {"acl": WRITE_ACL}, ("MI-ACL-WRITE-ADDED", CRIT)),
        (Role.CONFIG, {}, {"acl": READ_ACL}, ("MI-ACL-CHANGED", MED)),
        (Role.CONFIG, {"acl": WRITE_ACL}, {"acl": READ_ACL}, ("MI-ACL-CHANGED", MED)),
        (Role.CONFIG, {}, {"selinux": "u:r:tmp_t:s0"}, ("MI-SELINUX-CHANGED", MED)),
        (Role.CONFIG, {"flags": frozenset({"immutable"})}, {}, ("MI-FLAGS-CHANGED", MED)),
        (Role.CONFIG, {}, {"flags": frozenset({"immutable"})}, ("MI-FLAGS-CHANGED", LOW)),
        (Role.CONFIG, {}, {"xattrs": (("user.x", "00"),)}, ("MI-XATTR-CHANGED", MED)),
    ],
)
def test_extended_attribute_changes(
    role: Role, old_kw: dict[str, Any], new_kw: dict[str, Any], expected: tuple[str, Severity]
) -> None:
    """Capability added is critical; an ACL granting write high (critical on a binary)."""
    old = for_role(role, **old_kw)
    new = replaced(old, **{"caps": None, "acl": None, "flags": frozenset(), **new_kw})
    assert graded(judged(old, new, role)) == [expected]


# --------------------------------------------------------------------------- check_state


@pytest.mark.parametrize(
    ("role", "expect", "kw", "expected"),
    [
        (Role.CONFIG, Expect(owner=("root",), mode=(0o644,)), {}, []),
        (
            Role.CONFIG,
            Expect(owner=("root",)),
            {"uid": 1000, "owner": "bob"},
            [("MI-EXPECT-OWNER", CRIT)],
        ),
        (Role.QUEUE, Expect(owner=("smmsp",)), {"mode": 0o770}, [("MI-EXPECT-OWNER", HIGH)]),
        (
            Role.QUEUE,
            Expect(group=("smmsp",)),
            {"mode": 0o770},
            [("MI-EXPECT-GROUP", HIGH)],
        ),
        (Role.CONFIG, Expect(group=("smmsp",)), {}, [("MI-EXPECT-GROUP", MED)]),
        (Role.CONFIG, Expect(mode=(0o644, 0o600)), {"mode": 0o600}, []),
        (Role.CONFIG, Expect(mode=(0o644, 0o600)), {"mode": 0o640}, [("MI-EXPECT-MODE", LOW)]),
        (
            Role.CONFIG,
            Expect(mode=(0o644,)),
            {"mode": 0o664},
            [("MI-EXPECT-PERM-GROUP-WRITABLE", HIGH)],
        ),
        (
            Role.CONFIG,
            Expect(deny=0o004),
            {"mode": 0o644},
            [("MI-EXPECT-PERM-LOOSENED", MED)],
        ),
        (Role.BINARY, Expect(mode=(0o2555,)), {"mode": 0o2555}, []),
        (Role.BINARY, Expect(mode=(0o2555,)), {"mode": 0o4555}, [("MI-EXPECT-SETID", CRIT)]),
        (Role.BINARY, Expect(), {"mode": 0o4755}, [("MI-EXPECT-SETID", CRIT)]),
        (Role.BINARY, Expect(deny=0o6000), {"mode": 0o2755}, [("MI-EXPECT-SETID", CRIT)]),
        (Role.CONFIG, Expect(), {"mode": 0o666}, [("MI-EXPECT-PERM-WORLD-WRITABLE", CRIT)]),
        (Role.SECRET, Expect(), {"mode": 0o604}, [("MI-EXPECT-SECRET-READABLE", HIGH)]),
        (Role.CONFIG, Expect(), {"mode": 0o664}, []),
        (
            Role.CONFIG,
            Expect(),
            {"mode": 0o664, "gid": 8, "group": "mail"},
            [("MI-EXPECT-PERM-GROUP-WRITABLE", HIGH)],
        ),
        (Role.QUEUE, Expect(), {"mode": 0o705}, [("MI-EXPECT-QUEUE-LOOSENED", HIGH)]),
        (Role.DIRECTORY, Expect(), {"mode": 0o1777}, []),
        (Role.BINARY, Expect(), {"caps": "cap_net_raw+ep"}, [("MI-EXPECT-CAPABILITY", HIGH)]),
        (Role.CONFIG, Expect(), {"acl": WRITE_ACL}, [("MI-EXPECT-ACL-WRITE", HIGH)]),
        (Role.VOLATILE, Expect(), {"acl": WRITE_ACL}, []),
        (
            Role.CONFIG,
            Expect(owner=("root",), mode=(0o644,)),
            {"ftype": FileType.SYMLINK, "mode": 0o777, "uid": 1000, "owner": "bob"},
            [],
        ),
    ],
)
def test_check_state_applies_expectations_and_universal_rules(
    role: Role, expect: Expect, kw: dict[str, Any], expected: list[tuple[str, Severity]]
) -> None:
    """Owner, group, mode list, deny and set-id expectations, plus rules for every mail path."""
    r = for_role(role, **kw)
    assert graded(check_state(r, rule(role, expect=expect), role)) == expected


def test_check_state_without_a_rule_still_applies_universal_rules() -> None:
    """A path with no rule (unlisted entry) still may not be world-writable."""
    r = rec("/etc/mail/stray", mode=0o4777)
    assert graded(check_state(r, None, Role.DIRECTORY)) == [
        ("MI-EXPECT-SETID", CRIT),
        ("MI-EXPECT-PERM-WORLD-WRITABLE", CRIT),
    ]


# --------------------------------------------------------------------------- check_child

QUEUE = rule(
    Role.QUEUE,
    "/var/spool/mqueue-client",
    children=Expect(owner=("smmsp",), deny=0o007, types=("file",)),
)
SPOOL = rule(Role.SPOOL, "/var/mail", children=Expect(deny=0o007, types=("file",)))


def qfile(name: str = "qfABC", **kw: Any) -> FileRecord:
    base = {
        "mode": 0o660,
        "uid": 107,
        "owner": "smmsp",
        "gid": 25,
        "group": "smmsp",
        "digest": None,
    }
    return rec(f"/var/spool/mqueue-client/{name}", **{**base, **kw})


def mailbox(name: str = "alice", **kw: Any) -> FileRecord:
    base = {"mode": 0o660, "uid": 1000, "owner": "alice", "gid": 8, "group": "mail", "digest": None}
    return rec(f"/var/mail/{name}", **{**base, **kw})


@pytest.mark.parametrize(
    ("parent", "child", "expected"),
    [
        (QUEUE, qfile(), []),
        (QUEUE, qfile(mode=0o664), [("MI-QUEUE-FILE-EXPOSED", HIGH)]),
        (QUEUE, qfile(mode=0o666), [("MI-QUEUE-FILE-EXPOSED", HIGH)]),
        (QUEUE, qfile(mode=0o4660), [("MI-QUEUE-FILE-EXPOSED", CRIT)]),
        (QUEUE, qfile(uid=0, owner="root"), [("MI-QUEUE-FILE-OWNER", HIGH)]),
        (QUEUE, qfile(ftype=FileType.FIFO), [("MI-QUEUE-ODD-ENTRY", HIGH)]),
        (SPOOL, mailbox(), []),
        (SPOOL, mailbox(uid=0, owner="root"), []),
        (
            SPOOL,
            mailbox(ftype=FileType.SYMLINK, link_target="/etc/shadow", mode=0o777),
            [("MI-SPOOL-LINK", CRIT)],
        ),
        (SPOOL, mailbox(nlink=2), [("MI-SPOOL-LINK", CRIT)]),
        (SPOOL, mailbox(uid=1001, owner="bob"), [("MI-SPOOL-OWNER-MISMATCH", HIGH)]),
        (SPOOL, mailbox(mode=0o664), [("MI-QUEUE-FILE-EXPOSED", HIGH)]),
    ],
)
def test_check_child_guards_private_mail(
    parent: Rule, child: FileRecord, expected: list[tuple[str, Severity]]
) -> None:
    """Queue files and mailboxes: mode, owner, type; a linked mailbox is critical."""
    assert graded(check_child(child, parent)) == expected


def test_spool_link_finding_names_the_link_kind() -> None:
    """The mailbox link finding says which kind of link it is and how to fix it."""
    (f,) = check_child(mailbox(nlink=3), SPOOL)
    assert "hard-linked (3 links)" in f.message
    assert f.fix is not None and f.fix.startswith("remove /var/mail/alice")


def test_queue_without_child_expectation_still_flags_world_readable_files() -> None:
    """A world-readable queue file is flagged even if the profile gave no children table."""
    bare = rule(Role.QUEUE, "/var/spool/mqueue-client")
    assert graded(check_child(qfile(mode=0o666), bare)) != []


# --------------------------------------------------------------------------- check_parent


@pytest.mark.parametrize(
    ("mode", "gid", "expected"),
    [
        (0o755, 0, []),
        (0o2755, 0, []),
        (0o775, 0, []),
        (0o775, 8, [("MI-PARENT-WRITABLE", HIGH)]),
        (0o757, 0, [("MI-PARENT-WRITABLE", CRIT)]),
        (0o777, 8, [("MI-PARENT-WRITABLE", CRIT)]),
        (0o1777, 0, []),
    ],
)
def test_check_parent_applies_the_safe_file_rule(
    mode: int, gid: int, expected: list[tuple[str, Severity]]
) -> None:
    """Only root may write an ancestor of a mail file; a sticky dir is tolerated."""
    d = rec("/etc", ftype=FileType.DIR, mode=mode, gid=gid, digest=None)
    assert graded(check_parent(d)) == expected


def test_check_parent_ignores_non_directories() -> None:
    """A symlink or file among the ancestors is not judged as a directory."""
    assert check_parent(rec("/etc", ftype=FileType.SYMLINK, mode=0o777)) == []
