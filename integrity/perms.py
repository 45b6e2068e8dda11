"""Permission judgement: which granted bits are dangerous for which kind of path.

Shared by the judge (a bit that appeared since the baseline) and by the state checks
(`init`, `audit`, queue entries: a bit the profile or the mail rules never allow). Pure.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, replace

from integrity.model import FileRecord, FileType, Finding, Role, Severity

S_SETID = stat.S_ISUID | stat.S_ISGID
#: roles whose files must stay root-controlled (sendmail's safe-file rule)
TRUSTED_ROLES = frozenset(
    {Role.BINARY, Role.CONFIG, Role.ALIASES, Role.GENERATED, Role.MAP, Role.SECRET, Role.DIRECTORY}
)


def fmt(mode: int) -> str:
    return f"{mode:04o}"


_PLAIN = re.compile(r"[A-Za-z0-9_./+@%:,=-]+")
_PLAIN_BYTES = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./+@%:,=-"
)


def shell_path(path: str) -> str:
    """A path as one shell word of printable ASCII that names the real file: plain names
    as they are, anything else in bash's $'...' form with every other byte as \\xNN
    (a newline, a quote, a non-UTF-8 byte of an ``os.fsdecode`` name: its real byte)."""
    if _PLAIN.fullmatch(path):
        return path
    raw = os.fsencode(path)
    return "$'" + "".join(chr(b) if b in _PLAIN_BYTES else f"\\x{b:02x}" for b in raw) + "'"


def fix_cmd(command: str, path: str) -> str:
    """``chmod 0644 <path>``: a fix command naming ``path`` as a shell word."""
    return f"{command} {shell_path(path)}"


#: fix commands that act on the file itself (their path is rewritten to the host path)
FIX_COMMANDS = ("chmod ", "chown ", "chgrp ", "setfacl ", "setcap ", "rm ")


def host_fixes(findings: list[Finding], root: str) -> list[Finding]:
    """With ``--root``, a fix command must name the file on this host (root + path), or
    it would act on the host's own /etc/mail. Called where the root is known (api)."""
    if os.path.realpath(root) == "/":
        return findings
    out = []
    for f in findings:
        token = shell_path(f.path)
        if f.fix and f.fix.startswith(FIX_COMMANDS) and f.fix.endswith(" " + token):
            host = os.path.join(root, f.path.lstrip("/"))
            f = replace(f, fix=f.fix[: -len(token)] + shell_path(host))
        out.append(f)
    return out


def symbolic(bits: int) -> str:
    """0o4002 -> 'u+s,o+w': short and readable in messages."""
    parts = []
    for who, shift, special, letter in (("u", 6, stat.S_ISUID, "s"), ("g", 3, stat.S_ISGID, "s")):
        perms = "".join(c for c, b in zip("rwx", (4, 2, 1), strict=True) if bits >> shift & b)
        if bits & special:
            perms += letter
        if perms:
            parts.append(f"{who}+{perms}")
    other = "".join(c for c, b in zip("rwx", (4, 2, 1), strict=True) if bits & b)
    if bits & stat.S_ISVTX:
        other += "t"
    if other:
        parts.append(f"o+{other}")
    return ",".join(parts) or "none"


@dataclass(frozen=True, slots=True)
class Grant:
    """One dangerous grant: rule stem, severity and why it matters."""

    stem: str
    severity: Severity
    why: str
    bits: int


def is_sticky_dir(rec: FileRecord, mode: int | None = None) -> bool:
    m = rec.mode if mode is None else mode
    return rec.ftype == FileType.DIR and bool(m & stat.S_ISVTX)


def classify_grant(bits: int, rec: FileRecord, role: Role, mode_after: int) -> list[Grant]:
    """Split newly granted ``bits`` into judged grants (most serious first)."""
    grants: list[Grant] = []
    is_dir = rec.ftype == FileType.DIR
    if rec.ftype == FileType.SYMLINK:
        return grants  # a symlink's own mode means nothing on Linux
    if bits & S_SETID and not is_dir:
        who = "user" if bits & stat.S_ISUID else "group"
        grants.append(
            Grant(
                "SETID",
                Severity.CRITICAL,
                f"set-{who}-ID bit: it now runs with its owner's or group's privileges",
                bits & S_SETID,
            )
        )
    if bits & stat.S_ISGID and is_dir:
        grants.append(
            Grant("DIR-SETGID", Severity.LOW, "set-group-ID on a directory", bits & stat.S_ISGID)
        )
    if bits & stat.S_ISUID and is_dir:
        grants.append(
            Grant(
                "DIR-SETUID",
                Severity.MEDIUM,
                "set-user-ID on a directory (unusual)",
                bits & stat.S_ISUID,
            )
        )
    if bits & stat.S_IWOTH:
        if is_dir and mode_after & stat.S_ISVTX:
            grants.append(
                Grant(
                    "PERM-WORLD-WRITABLE",
                    Severity.CRITICAL,
                    "anyone on the host can now create files in it (sticky only protects "
                    "files from deletion by others)",
                    stat.S_IWOTH,
                )
            )
        else:
            grants.append(
                Grant(
                    "PERM-WORLD-WRITABLE",
                    Severity.CRITICAL,
                    "anyone on the host can now modify it",
                    stat.S_IWOTH,
                )
            )
    if bits & stat.S_IWGRP:
        sev = Severity.HIGH if role in TRUSTED_ROLES | {Role.QUEUE} else Severity.MEDIUM
        grants.append(
            Grant(
                "PERM-GROUP-WRITABLE",
                sev,
                f"members of group {rec.group or rec.gid} can now modify it",
                stat.S_IWGRP,
            )
        )
    rest = bits & ~(S_SETID | stat.S_IWOTH | stat.S_IWGRP | stat.S_ISVTX)
    if role == Role.SECRET and rest & (stat.S_IROTH | stat.S_IRGRP):
        who = "anyone on the host" if rest & stat.S_IROTH else f"group {rec.group or rec.gid}"
        sev = Severity.HIGH if rest & stat.S_IROTH else Severity.MEDIUM
        grants.append(
            Grant(
                "SECRET-READABLE",
                sev,
                f"{who} can now read this secret",
                rest & (stat.S_IROTH | stat.S_IRGRP),
            )
        )
        rest &= ~(stat.S_IROTH | stat.S_IRGRP)
    if role in (Role.QUEUE, Role.SPOOL) and rest & 0o077:
        grants.append(
            Grant(
                "QUEUE-LOOSENED",
                Severity.HIGH,
                "mail at rest becomes readable or listable by others",
                rest & 0o077,
            )
        )
        rest &= ~0o077
    if rest:
        grants.append(Grant("PERM-LOOSENED", Severity.MEDIUM, "more access than before", rest))
    return grants


def universal_deny(rec: FileRecord, role: Role, allow_setid: bool) -> int:
    """Bits no mail path may carry, whatever the profile says."""
    deny = 0
    if rec.ftype == FileType.SYMLINK:
        return 0
    if not is_sticky_dir(rec):
        deny |= stat.S_IWOTH
    if rec.ftype != FileType.DIR and not allow_setid:
        deny |= S_SETID
    if role == Role.SECRET:
        deny |= stat.S_IRWXO
    if role in TRUSTED_ROLES and role != Role.DIRECTORY:
        deny |= stat.S_IWGRP if rec.gid != 0 else 0
    if role == Role.QUEUE:
        deny |= stat.S_IRWXO
    return deny


def grant_findings(
    rec: FileRecord, role: Role, bits: int, *, change: bool, before: int | None = None
) -> list[Finding]:
    """Findings for dangerous ``bits`` on ``rec``: granted since the baseline or not allowed."""
    out = []
    for g in classify_grant(bits, rec, role, rec.mode):
        if change:
            rule = "MI-SETID-ADDED" if g.stem == "SETID" else f"MI-{g.stem}"
            message = f"{symbolic(g.bits)} added ({fmt(before or 0)} -> {fmt(rec.mode)}): {g.why}"
        else:
            rule = f"MI-EXPECT-{g.stem}"
            message = f"mode {fmt(rec.mode)} has {symbolic(g.bits)}, which it must not: {g.why}"
        out.append(
            Finding(
                rec.path,
                rule,
                g.severity,
                message,
                "mode",
                fmt(before) if before is not None else None,
                fmt(rec.mode),
                fix=fix_cmd(f"chmod {fmt(rec.mode & ~g.bits)}", rec.path),
            )
        )
    return out
