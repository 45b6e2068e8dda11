"""Judge: Changes x Policy -> Findings with a severity (the escalation is the product).

Pure. Two kinds of judgement live here: what a *change* since the baseline means
(`judge`), and what a *state* violates with no baseline at all (`check_state`,
`check_child`): the profile's expected owner/group/mode and the mail rules that hold
everywhere (no world-writable file, no unexpected set-id bit, no readable secret).
"""

from __future__ import annotations

import posixpath
import re
import stat
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import replace

from integrity import analyzers
from integrity.analyzers._shape import as_list, as_str
from integrity.analyzers.programs import program_class
from integrity.model import (
    Change,
    ChangeKind,
    Facts,
    FileRecord,
    FileType,
    Finding,
    PackageVerdict,
    Role,
    Severity,
)
from integrity.perms import (
    S_SETID,
    TRUSTED_ROLES,
    fix_cmd,
    fmt,
    grant_findings,
    is_sticky_dir,
    shell_path,
    universal_deny,
)
from integrity.policy import Expect, Policy, Rule

#: Triage hook (package manager): how a changed file stands against its package, if known.
Triage = Callable[[FileRecord], PackageVerdict | None]
METADATA = ("size", "mtime_ns", "ctime_ns", "inode", "nlink")


def _who(rec: FileRecord, owner: bool = True) -> str:
    if owner:
        return f"{rec.owner}({rec.uid})" if rec.owner else str(rec.uid)
    return f"{rec.group}({rec.gid})" if rec.group else str(rec.gid)


# -- state checks ---------------------------------------------------------------------


def check_state(
    rec: FileRecord,
    rule: Rule | None,
    role: Role,
    records: Mapping[str, FileRecord] | None = None,
) -> list[Finding]:
    """What this record violates right now: expectations and the universal rules.

    ``records`` (the other records of the same snapshot) lets an smrsh entry be followed
    through its symlink chain to the program it really runs."""
    expect = rule.expect if rule else Expect()
    out: list[Finding] = []
    if rule is not None and rule.smrsh and rule.recursive is False:
        shell = smrsh_shell(rec, records or {})
        if shell is not None:
            out.append(_smrsh_shell_finding(rec, shell))
    allowed = _best_mode(rec, expect.mode)
    universal = universal_deny(rec, role, expect.allows_setid())
    if allowed is not None and _covered(rec.mode, allowed):
        universal &= ~allowed  # the profile documents the packaging: its modes are expected
    extra = rec.mode & (universal | expect.deny)
    if allowed is not None:
        extra |= rec.mode & ~allowed
    if rec.ftype == FileType.SYMLINK:
        extra = 0
    out.extend(grant_findings(rec, role, extra, change=False))
    if allowed is not None and not extra and rec.mode not in expect.mode and rec.ftype != "symlink":
        want = " or ".join(fmt(m) for m in expect.mode)
        out.append(
            Finding(
                rec.path,
                "MI-EXPECT-MODE",
                Severity.LOW,
                f"mode {fmt(rec.mode)} is tighter than the expected {want}",
                "mode",
                want,
                fmt(rec.mode),
            )
        )
    out.extend(_owner_state(rec, expect, role))
    facts = rec.facts if isinstance(rec.facts, dict) else {}
    if role == Role.MAP and facts.get("map") == "differs" and not facts.get("stale"):
        out.append(_map_edited(rec, rule.source if rule and rule.source else "its source"))
    if rec.caps:
        out.append(
            Finding(
                rec.path,
                "MI-EXPECT-CAPABILITY",
                Severity.HIGH,
                f"carries file capabilities {rec.caps}: it gains privileges when run",
                "caps",
                None,
                rec.caps,
                fix=fix_cmd("setcap -r", rec.path),
            )
        )
    out.extend(_acl_state(rec, role))
    return out


def _covered(mode: int, allowed: int) -> bool:
    """``mode`` grants nothing beyond one packaged mode, and a world-writable directory
    keeps that mode's sticky bit (0777 is not "within" 1777: anyone may delete files)."""
    if mode & ~allowed:
        return False
    return not mode & stat.S_IWOTH or (mode & stat.S_ISVTX) == (allowed & stat.S_ISVTX)


def _best_mode(rec: FileRecord, modes: tuple[int, ...]) -> int | None:
    """The packaged mode ``rec`` is closest to (fewest extra bits): modes are alternatives,
    never a union (2775 or 3777 allows neither 0777 nor 2777)."""
    if not modes:
        return None
    return min(modes, key=lambda m: (not _covered(rec.mode, m), bin(rec.mode & ~m).count("1")))


def _owner_state(rec: FileRecord, expect: Expect, role: Role) -> list[Finding]:
    out: list[Finding] = []
    if rec.ftype == FileType.SYMLINK:
        return out
    if expect.owner and (rec.owner or str(rec.uid)) not in expect.owner:
        sev = (
            Severity.CRITICAL if "root" in expect.owner and role in TRUSTED_ROLES else Severity.HIGH
        )
        out.append(
            Finding(
                rec.path,
                "MI-EXPECT-OWNER",
                sev,
                f"owned by {_who(rec)}, expected {' or '.join(expect.owner)}",
                "owner",
                "/".join(expect.owner),
                _who(rec),
                fix=fix_cmd(f"chown {expect.owner[0]}", rec.path),
            )
        )
    if expect.group and (rec.group or str(rec.gid)) not in expect.group:
        risky = _group_matters(rec.mode, role)
        out.append(
            Finding(
                rec.path,
                "MI-EXPECT-GROUP",
                Severity.HIGH if risky else Severity.MEDIUM,
                f"group is {_who(rec, False)}, expected {' or '.join(expect.group)}",
                "group",
                "/".join(expect.group),
                _who(rec, False),
                fix=fix_cmd(f"chgrp {expect.group[0]}", rec.path),
            )
        )
    return out


def _acl_named(acl: str | None) -> dict[str, str]:
    """ACL entries with a qualifier (``user:1000``, ``default:group:mail``) -> their perms."""
    out = {}
    for entry in (acl or "").split(","):
        parts = entry.split(":")
        if len(parts) >= 3 and parts[-2]:
            out[":".join(parts[:-1])] = parts[-1]
    return out


def acl_write_entries(acl: str | None) -> set[str]:
    """Named ACL entries that grant write."""
    return {who for who, perms in _acl_named(acl).items() if "w" in perms}


def _acl_readers(acl: str | None) -> set[str]:
    """Named access-ACL entries that grant anything (what exposes a queue file)."""
    return {
        who
        for who, perms in _acl_named(acl).items()
        if not who.startswith("default:") and perms.strip("-")
    }


def _acl_state(rec: FileRecord, role: Role) -> list[Finding]:
    writers = acl_write_entries(rec.acl)
    if not writers or role not in TRUSTED_ROLES | {Role.QUEUE}:
        return []
    return [
        Finding(
            rec.path,
            "MI-EXPECT-ACL-WRITE",
            Severity.HIGH,
            f"ACL lets {', '.join(sorted(writers))} modify it",
            "acl",
            None,
            rec.acl,
            fix=fix_cmd("setfacl -b", rec.path),
        )
    ]


def smrsh_shell(rec: FileRecord, records: Mapping[str, FileRecord]) -> str | None:
    """The shell or interpreter an smrsh entry is, or leads to through its symlinks."""
    seen: set[str] = set()
    current: FileRecord | None = rec
    while current is not None and current.path not in seen:
        seen.add(current.path)
        found = program_class(current.path)
        if found is not None:
            return current.path.rsplit("/", 1)[-1]
        if current.ftype != FileType.SYMLINK or not current.link_target:
            return None
        target = current.link_target
        if program_class(target) is not None:
            return target.rsplit("/", 1)[-1]
        base = "/" if target.startswith("/") else posixpath.dirname(current.path)
        current = records.get(posixpath.normpath(posixpath.join(base, target)))
    return None


def _smrsh_shell_finding(rec: FileRecord, shell: str) -> Finding:
    how = "is" if rec.ftype != FileType.SYMLINK else "points to"
    return Finding(
        rec.path,
        "MI-SMRSH-SHELL",
        Severity.CRITICAL,
        f"smrsh entry {how} {shell}: every alias and .forward pipe can now run any command",
        "smrsh",
        None,
        rec.link_target or shell,
        fix=fix_cmd("rm", rec.path),
    )


def _smrsh_added(rec: FileRecord, records: Mapping[str, FileRecord]) -> Finding:
    shell = smrsh_shell(rec, records)
    if shell is not None:
        return _smrsh_shell_finding(rec, shell)
    what = f" (-> {rec.link_target})" if rec.link_target else ""
    return Finding(
        rec.path,
        "MI-SMRSH-ENTRY-ADDED",
        Severity.HIGH,
        f"new program in smrsh's directory{what}: every alias and .forward pipe may run it",
        "smrsh",
        None,
        rec.link_target or str(rec.ftype),
        fix=fix_cmd("rm", rec.path),
    )


def check_child(rec: FileRecord, parent: Rule) -> list[Finding]:
    """A queue or mailbox entry: permissions only, never content (mail at rest is private)."""
    expect = parent.children or Expect(deny=0o007)  # mail at rest: nothing for others
    out: list[Finding] = []
    if parent.role == Role.SPOOL and (
        rec.ftype == FileType.SYMLINK or (rec.ftype == FileType.FILE and rec.nlink > 1)
    ):
        what = "a symlink" if rec.ftype == FileType.SYMLINK else f"hard-linked ({rec.nlink} links)"
        return [
            Finding(
                rec.path,
                "MI-SPOOL-LINK",
                Severity.CRITICAL,
                f"mailbox is {what}: mail can be redirected into another file",
                "ftype",
                None,
                str(rec.ftype),
                fix=f"remove {rec.path} and investigate",
            )
        ]
    if expect.types and str(rec.ftype) not in expect.types:
        out.append(
            Finding(
                rec.path,
                "MI-QUEUE-ODD-ENTRY",
                Severity.HIGH,
                f"unexpected {rec.ftype} in a mail directory",
                "ftype",
                None,
                str(rec.ftype),
            )
        )
    bad = rec.mode & (expect.deny | (S_SETID if rec.ftype != FileType.DIR else 0))
    if rec.ftype != FileType.SYMLINK and bad:
        sev = Severity.CRITICAL if bad & S_SETID else Severity.HIGH
        kind = "queue file" if parent.role == Role.QUEUE else "mailbox"
        out.append(
            Finding(
                rec.path,
                "MI-QUEUE-FILE-EXPOSED",
                sev,
                f"{kind} mode {fmt(rec.mode)} grants {fmt(bad)}: private mail is exposed",
                "mode",
                None,
                fmt(rec.mode),
                fix=fix_cmd(f"chmod {fmt(rec.mode & ~bad)}", rec.path),
            )
        )
    named = _acl_readers(rec.acl)
    if named:
        out.append(
            Finding(
                rec.path,
                "MI-QUEUE-FILE-EXPOSED",
                Severity.HIGH,
                f"ACL grants {', '.join(sorted(named))} access: private mail is exposed",
                "acl",
                None,
                rec.acl,
                fix=fix_cmd("setfacl -b", rec.path),
            )
        )
    if rec.caps:
        out.append(
            Finding(
                rec.path,
                "MI-QUEUE-FILE-CAPABILITY",
                Severity.CRITICAL,
                f"file capabilities {rec.caps} on an entry of a mail directory",
                "caps",
                None,
                rec.caps,
                fix=f"setcap -r {rec.path}",
            )
        )
    if expect.owner and (rec.owner or str(rec.uid)) not in expect.owner:
        out.append(
            Finding(
                rec.path,
                "MI-QUEUE-FILE-OWNER",
                Severity.HIGH,
                f"owned by {_who(rec)}, expected {' or '.join(expect.owner)}",
                "owner",
                "/".join(expect.owner),
                _who(rec),
            )
        )
    if parent.role == Role.SPOOL and rec.ftype == FileType.FILE:
        name = rec.path.rsplit("/", 1)[-1]
        if rec.owner and rec.owner != name and rec.uid != 0:
            out.append(
                Finding(
                    rec.path,
                    "MI-SPOOL-OWNER-MISMATCH",
                    Severity.HIGH,
                    f"mailbox of {name!r} is owned by {_who(rec)}",
                    "owner",
                    name,
                    _who(rec),
                    fix=fix_cmd(f"chown {shell_path(name)}", rec.path),
                )
            )
    return out


def check_parent(rec: FileRecord) -> list[Finding]:
    """An ancestor of a monitored file: only root may write it (sendmail's safe-file rule)."""
    if rec.ftype != FileType.DIR:
        return []
    writable = rec.mode & (stat.S_IWGRP | stat.S_IWOTH)
    if not writable or is_sticky_dir(rec) or (writable == stat.S_IWGRP and rec.gid == 0):
        return []
    sev = Severity.CRITICAL if writable & stat.S_IWOTH else Severity.HIGH
    return [
        Finding(
            rec.path,
            "MI-PARENT-WRITABLE",
            sev,
            f"directory mode {fmt(rec.mode)} lets others replace the mail files below it",
            "mode",
            None,
            fmt(rec.mode),
            fix=fix_cmd("chmod go-w", rec.path),
        )
    ]


# -- change judgement -----------------------------------------------------------------


def judge(
    changes: list[Change],
    baseline: Mapping[str, FileRecord],
    current: Mapping[str, FileRecord],
    policy: Policy,
    roles: Mapping[str, Role] | None = None,
    *,
    triage: Triage | None = None,
) -> list[Finding]:
    """One or more findings for every changed path."""
    by_path: dict[str, list[Change]] = defaultdict(list)
    for ch in changes:
        by_path[ch.path].append(ch)
    content_changed = {
        p
        for p, chs in by_path.items()
        if any(c.attribute == "digest" or c.kind != ChangeKind.CHANGED for c in chs)
    }
    out: list[Finding] = []
    for path, chs in by_path.items():
        rule = policy.rule_for(path)
        role = roles[path] if roles and path in roles else rule.role if rule else Role.DIRECTORY
        old, new = baseline.get(path), current.get(path)
        if old is None and new is not None:
            # the profile's own rule for exactly this path (not one made up for an entry of
            # a recursive directory): the file has a known meaning
            named = rule is not None and not rule.is_glob and rule in policy.rules
            found = _added(new, rule, role, named=named, records=current)
        elif old is not None and new is None:
            found = [_removed(old, role)]
        elif old is not None and new is not None:
            ctx = _Ctx(old, new, rule, role, content_changed, triage, current)
            found = _changed(ctx, {c.attribute: c for c in chs})
        else:
            continue
        out.extend(_escalate_self(found, rule))
    return out


def _escalate_self(findings: list[Finding], rule: Rule | None) -> list[Finding]:
    """Any change to the monitor's own files is critical: it is how an intruder blinds it."""
    if rule is None or rule.profile != "self":
        return findings
    return [
        replace(
            f,
            severity=Severity.CRITICAL,
            rule=f"MI-SELF-{f.rule.removeprefix('MI-')}",
            message=f"mail-integrity's own file: {f.message}",
        )
        for f in findings
    ]


def _added(
    rec: FileRecord,
    rule: Rule | None,
    role: Role,
    *,
    named: bool,
    records: Mapping[str, FileRecord] | None = None,
) -> list[Finding]:
    """``named``: the profile names exactly this path (an exim4.conf that overrides the
    generated config, new credentials, a new binary): it appeared, with a known meaning."""
    where = rec.path.rsplit("/", 1)[0] or "/"
    fix = f"mail-integrity update --accept {shell_path(rec.path)} --reason '...' if intended"
    if rule is not None and rule.smrsh and not rule.recursive:
        out = [_smrsh_added(rec, records or {})]
    elif named and rule is not None and role != Role.VOLATILE:
        why = f": {rule.note}" if rule.note else ""
        out = [
            Finding(
                rec.path,
                "MI-FILE-APPEARED",
                Severity.HIGH,
                f"{rule.role} {rec.path} appeared{why}",
                "",
                None,
                str(rec.ftype),
                fix=fix,
            )
        ]
    elif rule is not None and rule.rotates:
        out = [
            Finding(rec.path, "MI-TLS-RENEWED", Severity.LOW,
                    f"renewal: new version {rec.path.rsplit('/', 1)[-1]} in {where}",
                    "", None, str(rec.ftype))
        ]  # fmt: skip
    else:
        out = [
            Finding(
                rec.path,
                "MI-FILE-ADDED",
                Severity.MEDIUM,
                f"new {rec.ftype} in monitored {where}",
                "",
                None,
                str(rec.ftype),
                fix=fix,
            )
        ]
    for f in check_state(rec, rule, role):
        if f.rule == "MI-SMRSH-SHELL":
            continue  # already judged above
        if f.rule == "MI-EXPECT-CAPABILITY":  # a new file that brings capabilities
            f = replace(f, rule="MI-CAPABILITY-ADDED", severity=Severity.CRITICAL)
        out.append(f)
    out.extend(assess_facts(rec, rule))
    return out


def is_rotation(before: str | None, after: str | None) -> bool:
    """``../archive/x/privkey3.pem`` -> ``privkey4.pem`` (or a newer timestamp): the same
    file name with another version number, in the same directory."""
    if not before or not after or before == after:
        return False
    (b_dir, _, b_name), (a_dir, _, a_name) = before.rpartition("/"), after.rpartition("/")
    stem = re.compile(r"[-_.]?\d+")
    return b_dir == a_dir and stem.sub("", b_name) == stem.sub("", a_name)


def _removed(rec: FileRecord, role: Role) -> Finding:
    sev = Severity.LOW if role == Role.VOLATILE else Severity.HIGH
    return Finding(
        rec.path,
        "MI-FILE-REMOVED",
        sev,
        f"monitored {rec.ftype} was removed",
        "",
        str(rec.ftype),
        None,
    )


def assess_facts(rec: FileRecord, rule: Rule | None) -> list[Finding]:
    if rec.facts is None or rule is None or rule.analyzer is None:
        return []
    an = analyzers.get(rule.analyzer)
    return an.assess(rec.path, rec.facts) if an else []


class _Ctx:
    __slots__ = ("content_changed", "new", "old", "records", "role", "rule", "triage")

    def __init__(
        self,
        old: FileRecord,
        new: FileRecord,
        rule: Rule | None,
        role: Role,
        content_changed: set[str],
        triage: Triage | None,
        records: Mapping[str, FileRecord],
    ) -> None:
        self.old, self.new, self.rule, self.role = old, new, rule, role
        self.content_changed, self.triage, self.records = content_changed, triage, records


def _changed(ctx: _Ctx, by_attr: dict[str, Change]) -> list[Finding]:
    old, new = ctx.old, ctx.new
    if "ftype" in by_attr:
        return [_type_changed(old, new)]
    out: list[Finding] = []
    if "mode" in by_attr:
        out.extend(_mode_changed(old, new, ctx.role, ctx.rule))
    if "uid" in by_attr:
        out.append(_owner_changed(old, new, ctx.role))
    if "gid" in by_attr:
        out.append(_group_changed(old, new, ctx.role))
    if "link_target" in by_attr and ctx.rule is not None and ctx.rule.smrsh:
        shell = smrsh_shell(new, ctx.records)
        if shell is not None:
            out.append(_smrsh_shell_finding(new, shell))
    if "link_target" in by_attr and ctx.rule is not None and ctx.rule.rotates and is_rotation(
        old.link_target, new.link_target
    ):
        out.append(
            Finding(new.path, "MI-TLS-RENEWED", Severity.LOW,
                    f"renewal: link moved to the next version {new.link_target}",
                    "link_target", old.link_target, new.link_target)
        )  # fmt: skip
    elif "link_target" in by_attr:
        out.append(
            Finding(
                new.path,
                "MI-LINK-TARGET-CHANGED",
                Severity.HIGH,
                f"symlink now points to {new.link_target} instead of {old.link_target}",
                "link_target",
                old.link_target,
                new.link_target,
            )
        )
    out.extend(_extended_changed(old, new, by_attr, ctx.role))
    if "digest" in by_attr or "facts" in by_attr:
        out.extend(_content_changed(ctx))
    if not out:
        attrs = sorted(a for a in by_attr if a in METADATA)
        if attrs:
            out.append(
                Finding(
                    new.path,
                    "MI-METADATA-CHANGED",
                    Severity.LOW,
                    f"metadata only ({', '.join(attrs)}); content and permissions are unchanged",
                    ",".join(attrs),
                )
            )
    return out


def _type_changed(old: FileRecord, new: FileRecord) -> Finding:
    if new.ftype == FileType.SYMLINK:
        return Finding(
            new.path,
            "MI-FILE-REPLACED-BY-SYMLINK",
            Severity.HIGH,
            f"{old.ftype} was replaced by a symlink to {new.link_target}",
            "ftype",
            str(old.ftype),
            str(new.ftype),
        )
    return Finding(
        new.path,
        "MI-TYPE-CHANGED",
        Severity.HIGH,
        f"{old.ftype} was replaced by a {new.ftype}",
        "ftype",
        str(old.ftype),
        str(new.ftype),
    )


def _mode_changed(old: FileRecord, new: FileRecord, role: Role, rule: Rule | None) -> list[Finding]:
    granted = new.mode & ~old.mode
    if _lost_sticky(old, new):
        granted |= stat.S_IWOTH  # a world-writable dir without sticky: anyone replaces files
    found = grant_findings(new, role, granted, change=True, before=old.mode) if granted else []
    forbidden = _forbidden(granted, rule)
    if forbidden:
        found = [_escalate(f, forbidden) if f.rule == "MI-PERM-LOOSENED" else f for f in found]
    if found:
        return found
    return [
        Finding(
            new.path,
            "MI-PERM-TIGHTENED",
            Severity.LOW,
            f"permissions tightened ({fmt(old.mode)} -> {fmt(new.mode)})",
            "mode",
            fmt(old.mode),
            fmt(new.mode),
        )
    ]


def _lost_sticky(old: FileRecord, new: FileRecord) -> bool:
    return (
        new.ftype == FileType.DIR
        and bool(new.mode & stat.S_IWOTH)
        and bool(old.mode & stat.S_ISVTX)
        and not new.mode & stat.S_ISVTX
    )


def _forbidden(granted: int, rule: Rule | None) -> int:
    """Granted bits the profile forbids or never allows (beyond its packaged modes)."""
    if rule is None:
        return 0
    widest = rule.expect.widest()
    beyond = granted & ~widest & 0o777 if widest is not None else 0
    return (granted & rule.expect.deny) | beyond


def _escalate(f: Finding, bits: int) -> Finding:
    return replace(
        f,
        severity=Severity.HIGH,
        message=f"{f.message}, beyond what the packaging allows ({fmt(bits)})",
    )


def _owner_changed(old: FileRecord, new: FileRecord, role: Role) -> Finding:
    off_root = old.uid == 0 and new.uid != 0 and role in TRUSTED_ROLES
    sev = Severity.CRITICAL if off_root else Severity.HIGH
    why = ": its new owner can rewrite it" if off_root else ""
    return Finding(
        new.path,
        "MI-OWNER-CHANGED",
        sev,
        f"owner changed from {_who(old)} to {_who(new)}{why}",
        "owner",
        _who(old),
        _who(new),
        fix=fix_cmd(f"chown {old.owner or old.uid}", new.path),
    )


def _group_matters(mode: int, role: Role) -> bool:
    """The group can write, runs it set-gid, or reads a secret: who it is matters."""
    return bool(mode & (stat.S_IWGRP | stat.S_ISGID) or (role == Role.SECRET and mode & 0o040))


def _group_changed(old: FileRecord, new: FileRecord, role: Role) -> Finding:
    risky = _group_matters(new.mode, role)
    return Finding(
        new.path,
        "MI-GROUP-CHANGED",
        Severity.HIGH if risky else Severity.MEDIUM,
        f"group changed from {_who(old, False)} to {_who(new, False)}",
        "group",
        _who(old, False),
        _who(new, False),
        fix=fix_cmd(f"chgrp {old.group or old.gid}", new.path),
    )


def _extended_changed(
    old: FileRecord, new: FileRecord, by_attr: dict[str, Change], role: Role
) -> list[Finding]:
    out = []
    if "caps" in by_attr:
        if new.caps:
            out.append(
                Finding(
                    new.path,
                    "MI-CAPABILITY-ADDED",
                    Severity.CRITICAL,
                    f"file capabilities now {new.caps}: it gains privileges when run",
                    "caps",
                    old.caps,
                    new.caps,
                    fix=fix_cmd("setcap -r", new.path),
                )
            )
        else:
            out.append(
                Finding(
                    new.path,
                    "MI-CAPABILITY-REMOVED",
                    Severity.LOW,
                    "file capabilities removed",
                    "caps",
                    old.caps,
                    None,
                )
            )
    if "acl" in by_attr:
        writers = acl_write_entries(new.acl) - acl_write_entries(old.acl)
        if writers:
            sev = Severity.CRITICAL if role == Role.BINARY else Severity.HIGH
            out.append(
                Finding(
                    new.path,
                    "MI-ACL-WRITE-ADDED",
                    sev,
                    f"ACL now lets {', '.join(sorted(writers))} modify it",
                    "acl",
                    old.acl,
                    new.acl,
                    fix=fix_cmd("setfacl -b", new.path),
                )
            )
        else:
            out.append(
                Finding(
                    new.path,
                    "MI-ACL-CHANGED",
                    Severity.MEDIUM,
                    "ACL changed",
                    "acl",
                    old.acl,
                    new.acl,
                )
            )
    if "selinux" in by_attr:
        out.append(
            Finding(
                new.path,
                "MI-SELINUX-CHANGED",
                Severity.MEDIUM,
                "SELinux label changed",
                "selinux",
                old.selinux,
                new.selinux,
            )
        )
    if "flags" in by_attr:
        lost = old.flags - new.flags
        sev = Severity.MEDIUM if lost else Severity.LOW
        out.append(
            Finding(
                new.path,
                "MI-FLAGS-CHANGED",
                sev,
                f"file flags changed ({'lost ' + ','.join(sorted(lost)) if lost else 'added'})",
                "flags",
                sorted(old.flags),
                sorted(new.flags),
            )
        )
    if "xattrs" in by_attr:
        out.append(
            Finding(
                new.path,
                "MI-XATTR-CHANGED",
                Severity.MEDIUM,
                "extended attributes changed",
                "xattrs",
                None,
                None,
            )
        )
    return out


def _content_changed(ctx: _Ctx) -> list[Finding]:
    old, new, rule, role = ctx.old, ctx.new, ctx.rule, ctx.role
    if role == Role.SECRET:
        return [
            Finding(
                new.path,
                "MI-SECRET-CHANGED",
                Severity.MEDIUM,
                "secret content changed (content not shown)",
                "content",
            )
        ]
    package = ctx.triage(new) if ctx.triage is not None and old.digest != new.digest else None
    if package is not None and package.explained:
        return [
            Finding(new.path, "MI-PACKAGE-UPGRADE", Severity.INFO, package.text, "content",
                    old.digest, new.digest)
        ]  # fmt: skip
    if role == Role.BINARY:
        return [_binary_changed(old, new, package)]
    source = rule.source if rule else None
    if role == Role.MAP:
        judged = _map_changed(old, new, source, ctx.content_changed)
        if judged is not None:
            return [judged]
        if source and source in ctx.content_changed:
            return [
                Finding(
                    new.path,
                    "MI-MAP-REBUILT",
                    Severity.INFO,
                    f"map rebuilt after its source {source} changed",
                    "content",
                    old.digest,
                    new.digest,
                )
            ]
        return [
            Finding(
                new.path,
                "MI-MAP-CHANGED-WITHOUT-SOURCE",
                Severity.HIGH,
                "map changed while its source did not: edited directly?",
                "content",
                old.digest,
                new.digest,
            )
        ]
    meaning = _meaning(old, new, rule)
    if _only_restamped(old, new) and role == Role.GENERATED:
        where = source or "its source"
        return [
            Finding(new.path, "MI-GENERATED-REGENERATED", Severity.INFO,
                    f"regenerated from {where}: only the build stamp changed", "content",
                    old.digest, new.digest)
        ]  # fmt: skip
    if (
        role == Role.GENERATED
        and source
        and source not in ctx.content_changed
        and old.digest != new.digest
    ):
        meaning.append(
            Finding(
                new.path,
                "MI-GENERATED-HAND-EDITED",
                Severity.MEDIUM,
                f"generated file changed while {source} did not: hand-edited?",
                "content",
                old.digest,
                new.digest,
            )
        )
    if meaning:
        return meaning
    if old.digest == new.digest:
        return [
            Finding(new.path, "MI-ANALYSIS-CHANGED", Severity.LOW,
                    "what this file means changed while its bytes did not (a file it names "
                    "changed, or a newer analyzer reads more of it)", "facts")
        ]  # fmt: skip
    an = analyzers.get(rule.analyzer) if rule and rule.analyzer else None
    if an is not None and an.facts_only:
        # a shared system file (/etc/group): only the mail-relevant part is ours to judge
        return [
            Finding(new.path, "MI-CONTENT-CHANGED", Severity.LOW,
                    "content changed outside the mail-relevant part", "content",
                    old.digest, new.digest)
        ]  # fmt: skip
    return [
        Finding(
            new.path,
            "MI-CONTENT-CHANGED",
            Severity.MEDIUM,
            "content changed with no risky meaning found",
            "content",
            old.digest,
            new.digest,
        )
    ]


def _map_keys(facts: Facts) -> str:
    parts = []
    for what, label in (("changed", "other values for"), ("extra", "keys not in the source"),
                        ("missing", "keys missing")):  # fmt: skip
        keys = [str(k) for k in as_list(facts.get(what))]
        if keys:
            parts.append(f"{label} {', '.join(keys)}")
    return "; ".join(parts) or "content differs"


def _map_changed(
    old: FileRecord, new: FileRecord, source: str | None, content_changed: set[str]
) -> Finding | None:
    """A map judged on its content (maps.py facts): consistent = a rebuild; different from
    its source while newer than it = edited directly; None when the content is unknown."""
    facts = new.facts if isinstance(new.facts, dict) else {}
    state = facts.get("map")
    src = source or "its source"
    if state == "consistent":
        return Finding(new.path, "MI-MAP-REBUILT", Severity.INFO,
                       f"map rebuilt: its content matches {src}", "content",
                       old.digest, new.digest)  # fmt: skip
    if state == "differs" and facts.get("stale"):
        return Finding(new.path, "MI-MAP-STALE", Severity.LOW,
                       f"map is older than {src} and not rebuilt yet ({_map_keys(facts)})",
                       "content", old.digest, new.digest,
                       fix=f"rebuild the map from {src}")  # fmt: skip
    if state == "differs":
        return _map_edited(new, src, old.digest)
    if state == "unreadable" and not (source and source in content_changed):
        why = as_str(facts.get("reason"))
        return Finding(new.path, "MI-MAP-UNREADABLE", Severity.LOW,
                       f"map changed; its content could not be compared with {src}: {why}",
                       "content", old.digest, new.digest)  # fmt: skip
    return None


def _map_edited(rec: FileRecord, src: str, before: str | None = None) -> Finding:
    facts = rec.facts if isinstance(rec.facts, dict) else {}
    return Finding(
        rec.path,
        "MI-MAP-EDITED",
        Severity.HIGH,
        f"map content is not what {src} says (edited directly?): {_map_keys(facts)}",
        "content",
        before,
        rec.digest,
        fix=f"rebuild the map from {src} and find out who wrote it",
    )


def _only_restamped(old: FileRecord, new: FileRecord) -> bool:
    """A generated file whose body (facts["body"]: all but the build stamp) is unchanged."""
    before = old.facts if isinstance(old.facts, dict) else {}
    after = new.facts if isinstance(new.facts, dict) else {}
    return bool(after.get("body")) and before == after and old.digest != new.digest


def _binary_changed(old: FileRecord, new: FileRecord, package: PackageVerdict | None) -> Finding:
    """A set-id binary replaced, or bytes that are not its package's own: critical."""
    where = f" ({package.text})" if package is not None else ""
    if (old.mode | new.mode) & S_SETID:
        rule, text = (
            "MI-SETID-BINARY-REPLACED",
            "set-id binary replaced: not explained by its package",
        )
    else:
        rule, text = "MI-BINARY-CHANGED", "binary content changed"
    foreign = package is not None and package.foreign
    sev = Severity.CRITICAL if rule == "MI-SETID-BINARY-REPLACED" or foreign else Severity.HIGH
    return Finding(new.path, rule, sev, text + where, "content", old.digest, new.digest)


def _meaning(old: FileRecord, new: FileRecord, rule: Rule | None) -> list[Finding]:
    if rule is None or rule.analyzer is None or old.facts == new.facts:
        return []
    an = analyzers.get(rule.analyzer)
    if an is None or old.facts is None or new.facts is None:
        return []
    return list(an.diff(new.path, old.facts, new.facts))
