"""perms: which granted bits are dangerous for which kind of path (pure)."""

from __future__ import annotations

import stat
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrity.model import FileRecord, FileType, Role, Severity
from integrity.perms import classify_grant, fmt, grant_findings, symbolic, universal_deny
from integrity.policy import parse_deny


def rec(ftype: FileType = FileType.FILE, mode: int = 0o644, **kw: Any) -> FileRecord:
    return FileRecord("/etc/mail/x", ftype, mode, kw.pop("uid", 0), kw.pop("gid", 0), **kw)


@pytest.mark.parametrize(
    ("bits", "text"),
    [
        (0, "none"),
        (0o4000, "u+s"),
        (0o2000, "g+s"),
        (0o1000, "o+t"),
        (0o002, "o+w"),
        (0o4002, "u+s,o+w"),
        (0o6000, "u+s,g+s"),
        (0o777, "u+rwx,g+rwx,o+rwx"),
        (0o2070, "g+rwxs"),
        (0o044, "g+r,o+r"),
    ],
)
def test_symbolic_names_bits_as_chmod_would(bits: int, text: str) -> None:
    """Messages show granted bits the way chmod spells them."""
    assert symbolic(bits) == text


@given(st.integers(0, 0o7777))
def test_symbolic_round_trips_through_the_profile_parser(bits: int) -> None:
    """Whatever symbolic() prints, the profile deny parser reads back as the same bits."""
    text = symbolic(bits)
    assert (parse_deny(text) if bits else 0) == bits


@pytest.mark.parametrize(("mode", "text"), [(0o644, "0644"), (0o2555, "2555"), (0, "0000")])
def test_fmt_is_four_octal_digits(mode: int, text: str) -> None:
    """Modes always print with 4 digits so set-id and sticky bits show."""
    assert fmt(mode) == text


@pytest.mark.parametrize(
    ("ftype", "role", "bits", "mode_after", "expected"),
    [
        (FileType.FILE, Role.CONFIG, 0o4000, 0o4644, [("SETID", Severity.CRITICAL)]),
        (FileType.DIR, Role.DIRECTORY, 0o2000, 0o2755, [("DIR-SETGID", Severity.LOW)]),
        (FileType.DIR, Role.DIRECTORY, 0o020, 0o775, [("PERM-GROUP-WRITABLE", Severity.HIGH)]),
        (FileType.FILE, Role.CONFIG, 0o002, 0o646, [("PERM-WORLD-WRITABLE", Severity.CRITICAL)]),
        (FileType.DIR, Role.DIRECTORY, 0o002, 0o1777, [("PERM-WORLD-WRITABLE", Severity.CRITICAL)]),
        (FileType.FILE, Role.MAP, 0o020, 0o664, [("PERM-GROUP-WRITABLE", Severity.HIGH)]),
        (FileType.FILE, Role.GENERATED, 0o020, 0o664, [("PERM-GROUP-WRITABLE", Severity.HIGH)]),
        (FileType.FILE, Role.VOLATILE, 0o020, 0o664, [("PERM-GROUP-WRITABLE", Severity.MEDIUM)]),
        (FileType.FILE, Role.SECRET, 0o044, 0o644, [("SECRET-READABLE", Severity.HIGH)]),
        (FileType.FILE, Role.SECRET, 0o040, 0o640, [("SECRET-READABLE", Severity.MEDIUM)]),
        (FileType.FILE, Role.SECRET, 0o001, 0o601, [("PERM-LOOSENED", Severity.MEDIUM)]),
        (FileType.DIR, Role.SPOOL, 0o005, 0o775, [("QUEUE-LOOSENED", Severity.HIGH)]),
        (FileType.FILE, Role.CONFIG, 0o100, 0o744, [("PERM-LOOSENED", Severity.MEDIUM)]),
        (FileType.SYMLINK, Role.CONFIG, 0o777, 0o777, []),
        (FileType.FILE, Role.CONFIG, 0o1000, 0o1644, []),
    ],
)
def test_classify_grant(
    ftype: FileType,
    role: Role,
    bits: int,
    mode_after: int,
    expected: list[tuple[str, Severity]],
) -> None:
    """Each dangerous grant gets its stem and severity; a symlink's own mode means nothing."""
    found = classify_grant(bits, rec(ftype, mode_after), role, mode_after)
    assert [(g.stem, g.severity) for g in found] == expected


@given(st.integers(0, 0o7777), st.sampled_from(list(Role)), st.sampled_from(list(FileType)))
def test_grants_cover_only_the_bits_granted(bits: int, role: Role, ftype: FileType) -> None:
    """Grants never blame a bit that was not granted, and never blame one bit twice."""
    grants = classify_grant(bits, rec(ftype, bits), role, bits)
    seen = 0
    for g in grants:
        assert g.bits & ~bits == 0
        assert g.bits & seen == 0
        seen |= g.bits


@pytest.mark.parametrize(
    ("ftype", "mode", "role", "gid", "allow_setid", "denied"),
    [
        (FileType.FILE, 0o644, Role.CONFIG, 0, False, stat.S_IWOTH | 0o6000),
        (FileType.FILE, 0o644, Role.CONFIG, 25, False, stat.S_IWOTH | 0o6000 | stat.S_IWGRP),
        (FileType.FILE, 0o2555, Role.BINARY, 25, True, stat.S_IWOTH | stat.S_IWGRP),
        (FileType.FILE, 0o600, Role.SECRET, 0, False, stat.S_IRWXO | 0o6000),
        (FileType.DIR, 0o700, Role.QUEUE, 25, False, stat.S_IRWXO),
        (FileType.DIR, 0o1777, Role.DIRECTORY, 0, False, 0),
        (FileType.DIR, 0o755, Role.DIRECTORY, 25, False, stat.S_IWOTH),
        (FileType.FILE, 0o644, Role.VOLATILE, 25, False, stat.S_IWOTH | 0o6000),
        (FileType.SYMLINK, 0o777, Role.CONFIG, 0, False, 0),
    ],
)
def test_universal_deny(
    ftype: FileType, mode: int, role: Role, gid: int, allow_setid: bool, denied: int
) -> None:
    """Bits no mail path may carry whatever the profile says (sticky dirs, symlinks exempt)."""
    assert universal_deny(rec(ftype, mode, gid=gid), role, allow_setid) == denied


@pytest.mark.parametrize(
    ("change", "rule", "before", "fix"),
    [
        (True, "MI-PERM-WORLD-WRITABLE", "0644", "chmod 0644 /etc/mail/x"),
        (False, "MI-EXPECT-PERM-WORLD-WRITABLE", None, "chmod 0644 /etc/mail/x"),
    ],
)
def test_grant_findings_rule_ids_and_fix(
    change: bool, rule: str, before: str | None, fix: str
) -> None:
    """A change is MI-<stem>; a state violation MI-EXPECT-<stem>; the fix drops only the bit."""
    (f,) = grant_findings(
        rec(mode=0o646), Role.CONFIG, 0o002, change=change, before=0o644 if change else None
    )
    assert (f.rule, f.before, f.after, f.fix, f.attribute) == (rule, before, "0646", fix, "mode")
