"""Kernel audit records -> one event per audit serial -> the actor of a change.

Pure parsing shared by the real-time reader (records from the audit netlink socket) and
the offline reader (lines of auditd's ``/var/log/audit/audit.log``, the format ``ausearch
--raw`` prints). One audit *event* is every record with the same ``audit(<time>:<serial>)``
stamp: SYSCALL (who: pid, uids, exe...), CWD, PATH items (what: names, inodes), PROCTITLE
(the command line) and, over netlink, EOE closing it.

Untrusted strings (names, comm, exe, proctitle, key) come either quoted or hex-encoded
when they hold spaces, quotes or control bytes; ``value()`` undoes both.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from integrity.model import Actor

KEY = "mail-integrity"  # the key of our audit rules, in every record they produce

# record types (linux/audit.h)
SYSCALL, PATH, CWD, CONFIG_CHANGE, EOE, PROCTITLE = 1300, 1302, 1307, 1305, 1320, 1327
TYPE_NAMES = {"SYSCALL": SYSCALL, "PATH": PATH, "CWD": CWD, "CONFIG_CHANGE": CONFIG_CHANGE,
              "EOE": EOE, "PROCTITLE": PROCTITLE}  # fmt: skip
UNSET = 4294967295  # (u32)-1: login uid or session never set

#: x86_64 numbers of the syscalls a watch with perms "wa" reports (others stay numbers)
X86_64 = "c000003e"
SYSCALLS_X86_64 = {
    2: "open", 76: "truncate", 77: "ftruncate", 82: "rename", 83: "mkdir", 84: "rmdir",
    85: "creat", 86: "link", 87: "unlink", 88: "symlink", 90: "chmod", 91: "fchmod",
    92: "chown", 93: "fchown", 94: "lchown", 188: "setxattr", 189: "lsetxattr",
    190: "fsetxattr", 197: "removexattr", 198: "lremovexattr", 199: "fremovexattr",
    257: "openat", 258: "mkdirat", 260: "fchownat", 263: "unlinkat", 264: "renameat",
    265: "linkat", 266: "symlinkat", 268: "fchmodat", 316: "renameat2", 437: "openat2",
    452: "fchmodat2",
}  # fmt: skip
#: fields whose value is an untrusted string: quoted, hex, or "(null)"
_TEXT = frozenset({"name", "comm", "exe", "cwd", "proctitle", "key", "tty", "op"})
_STAMP = re.compile(r"audit\((\d+)\.(\d+):(\d+)\):\s?")
_FIELD = re.compile(r'([\w-]+)=("[^"]*"|\S*)')
_HEX = re.compile(r"[0-9A-F]+")


@dataclass(frozen=True, slots=True)
class PathItem:
    name: str  # absolute (a relative name is joined to the event's CWD)
    inode: int | None
    nametype: str  # NORMAL, PARENT, CREATE, DELETE...


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit serial: the syscall, the process that made it and the paths it touched."""

    event_id: str
    time: float
    fields: dict[str, str]  # the SYSCALL record's raw fields
    paths: tuple[PathItem, ...]
    args: tuple[str, ...]
    config: dict[str, str] | None = None  # a CONFIG_CHANGE record's fields, if any

    @property
    def key(self) -> str | None:
        return value(self.fields.get("key", ""), "key")

    def touches(self, path: str, inode: int | None = None) -> bool:
        return any(p.name == path or (inode and p.inode == inode) for p in self.paths)


def value(raw: str, name: str = "") -> str | None:
    """A field's text: quotes removed, hex decoded (untrusted strings), ``(null)`` -> None."""
    if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
        return raw[1:-1]
    if raw in ("(null)", "(none)", "?", ""):
        return None
    if name in _TEXT and len(raw) % 2 == 0 and _HEX.fullmatch(raw):
        return os.fsdecode(bytes.fromhex(raw))
    return raw


def split_record(text: str) -> tuple[str, float, dict[str, str]] | None:
    """``audit(1700000000.123:42): a=1 b="x"`` -> (event id, time, raw fields); None if
    the text carries no audit stamp. auditd's enriched log part (after 0x1d) is dropped."""
    m = _STAMP.search(text)
    if m is None:
        return None
    body = text[m.end() :].split("\x1d", 1)[0]
    event_id = f"{m[1]}.{m[2]}:{m[3]}"
    return event_id, float(f"{m[1]}.{m[2]}"), dict(_FIELD.findall(body))


def _int(raw: str | None) -> int | None:
    try:
        n = int(raw or "")
    except ValueError:
        return None
    return None if n == UNSET else n


def _proctitle(raw: str) -> tuple[str, ...]:
    if raw.startswith('"'):
        return (raw.strip('"'),)
    if len(raw) % 2 or not _HEX.fullmatch(raw):
        return (raw,)
    return tuple(os.fsdecode(a) for a in bytes.fromhex(raw).split(b"\0") if a)


class Assembler:
    """Records in, whole events out: by serial, closed by EOE or by the next serial.

    ``pending`` is bounded: an event whose EOE never comes is closed when ``limit`` others
    are open (records of one event are contiguous in practice).
    """

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self.open: dict[str, tuple[float, list[tuple[int, dict[str, str]]]]] = {}

    def add(self, rtype: int, text: str) -> list[AuditEvent]:
        parsed = split_record(text)
        if parsed is None:
            return []
        event_id, when, fields = parsed
        done: list[AuditEvent] = []
        if rtype == EOE:
            entry = self.open.pop(event_id, None)
            return [build(event_id, entry[0], entry[1])] if entry else []
        entry = self.open.setdefault(event_id, (when, []))
        entry[1].append((rtype, fields))
        while len(self.open) > self.limit:
            old = next(iter(self.open))
            t, recs = self.open.pop(old)
            done.append(build(old, t, recs))
        return done

    def flush(self) -> list[AuditEvent]:
        out = [build(e, t, r) for e, (t, r) in self.open.items()]
        self.open.clear()
        return out


def build(event_id: str, when: float, records: Iterable[tuple[int, dict[str, str]]]) -> AuditEvent:
    """The records of one serial -> an event (paths joined to the CWD, args decoded)."""
    fields: dict[str, str] = {}
    cwd = "/"
    items: list[dict[str, str]] = []
    args: tuple[str, ...] = ()
    config = None
    for rtype, rec in records:
        if rtype == SYSCALL:
            fields = rec
        elif rtype == CWD:
            cwd = value(rec.get("cwd", ""), "cwd") or "/"
        elif rtype == PATH:
            items.append(rec)
        elif rtype == PROCTITLE:
            args = _proctitle(rec.get("proctitle", ""))
        elif rtype == CONFIG_CHANGE:
            config = rec
    paths = []
    for rec in items:
        name = value(rec.get("name", ""), "name")
        if name is None:
            continue
        full = os.path.normpath(os.path.join(cwd, name))
        inode = rec.get("inode", "")
        paths.append(PathItem(full, int(inode) if inode.isdigit() else None,
                              rec.get("nametype", "")))  # fmt: skip
    return AuditEvent(event_id, when, fields, tuple(paths), args, config)


def syscall_name(fields: dict[str, str]) -> str | None:
    raw = fields.get("syscall")
    if raw is None:
        return None
    if fields.get("arch") == X86_64 and raw.isdigit():
        return SYSCALLS_X86_64.get(int(raw), raw)
    return raw


def actor(
    event: AuditEvent,
    *,
    user_name: Callable[[int], str | None],
    redact: Callable[[tuple[str, ...]], tuple[str, ...]],
) -> Actor:
    """The actor of one event; names looked up through ``user_name`` (pwd at the edge)."""
    f = event.fields

    def named(key: str) -> tuple[int | None, str | None]:
        uid = _int(f.get(key))
        return uid, (None if uid is None else user_name(uid))

    uid, user = named("uid")
    euid, euser = named("euid")
    auid, auser = named("auid")
    return Actor(
        uid=uid, user=user, euid=euid, euser=euser, auid=auid, auser=auser,
        pid=_int(f.get("pid")), ppid=_int(f.get("ppid")),
        exe=value(f.get("exe", ""), "exe"), comm=value(f.get("comm", ""), "comm"),
        args=redact(event.args), tty=value(f.get("tty", ""), "tty"),
        session=_int(f.get("ses")), event_id=event.event_id, syscall=syscall_name(f),
    )  # fmt: skip


def read_log(lines: Iterable[str], *, since: float = 0.0, key: str = KEY) -> Iterator[AuditEvent]:
    """auditd log lines (``type=SYSCALL msg=audit(...): ...``) -> our key's events since
    ``since``. Records of one serial are contiguous in the log; only a serial whose
    SYSCALL record carries our key is parsed (a log of other events costs a scan only)."""
    marker = f'key="{key}"'
    current = ""
    group: list[str] = []

    def close() -> Iterator[AuditEvent]:
        if not any(g.startswith("type=SYSCALL ") and marker in g for g in group):
            return
        records = []
        when = 0.0
        for g in group:
            rtype = TYPE_NAMES.get(g[5:].split(" ", 1)[0])
            parsed = split_record(g)
            if rtype is not None and parsed is not None:
                when = parsed[1]
                records.append((rtype, parsed[2]))
        if when >= since:
            yield build(current, when, records)

    for line in lines:
        start = line.find("msg=audit(")
        if not line.startswith("type=") or start < 0:
            continue
        stamp = line[start + 10 : line.find(")", start)]
        if stamp != current:
            yield from close()
            current, group = stamp, []
        group.append(line)
    yield from close()


def log_files(directory: str, since: float) -> list[str]:
    """auditd's log and its rotations (``audit.log.N``, older first) written since ``since``."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    found = []
    for name in names:
        if name == "audit.log" or (name.startswith("audit.log.") and name[10:].isdigit()):
            path = os.path.join(directory, name)
            try:
                if os.stat(path).st_mtime >= since:
                    found.append((int(name[10:] or 0), path))
            except OSError:
                continue
    return [p for _, p in sorted(found, reverse=True)]


_SECRET_OPT = re.compile(r"(?i)^-{1,2}[\w-]*(pass(word|wd|phrase)?|secret|token|key)[\w-]*$")
_SECRET_KV = re.compile(
    r"(?i)^(-{0,2}[\w.-]*(pass(word|wd|phrase)?|secret|token|key)[\w.-]*[=:])(.+)$"
)
_URL_CRED = re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^/:@\s]*:)[^@/\s]+@")
REDACTED = "[redacted]"
#: programs whose ``-p`` is a password (``-pSECRET`` attached, or the next argument)
_DASH_P = frozenset({"mysql", "mariadb", "mysqldump", "mysqladmin", "sshpass", "smbclient"})


def redact_args(args: tuple[str, ...]) -> tuple[str, ...]:
    """Minimal redaction of secrets on a command line: the value after ``-p``/``--password``
    (and any option naming a password, secret, token or key), ``name=value`` pairs of those
    names, and ``user:password@`` in URLs. Stand-in until the shared redaction layer lands."""
    out: list[str] = []
    hide_next = False
    dash_p = bool(args) and os.path.basename(args[0]) in _DASH_P
    for arg in args:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if dash_p and arg.startswith("-p") and len(arg) > 2:
            out.append("-p" + REDACTED)
            continue
        if (dash_p and arg == "-p") or _SECRET_OPT.match(arg):
            out.append(arg)
            hide_next = True
            continue
        m = _SECRET_KV.match(arg)
        if m:
            out.append(m[1] + REDACTED)
            continue
        out.append(_URL_CRED.sub(lambda m: m[1] + REDACTED + "@", arg))
    return tuple(out)
