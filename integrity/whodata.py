"""Who did it: a collector of kernel audit events, joined to findings by path and time.

Source: the Linux audit subsystem over netlink (``NETLINK_AUDIT``). Records are *read*
through the multicast read-log group (CAP_AUDIT_READ), the one auditd's own plugins use,
so a running auditd keeps its unicast stream and its log. Rules come from auditd's rules
directory (``mail-integrity.rules``, key ``mail-integrity``) when it is loaded; otherwise,
given CAP_AUDIT_CONTROL, this module adds watch rules itself (and enables auditing if it
was off) and takes both back at stop.

Events go into a bounded ring indexed by path and inode. ``attribute()`` gives each
finding the actor of the latest matching event since the path was last checked, waiting
at most ``wait`` seconds for a late record; a finding still without one goes out marked
unattributed and ``on_update`` is called if its record arrives within ``horizon``.
Problems (no capability, audit off or locked, lost records) call ``on_problem`` once per
cause: the daemon turns that into one MI-WHODATA-* event; findings keep flowing.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import errno
import os
import pwd
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import structlog

from integrity import auditrec
from integrity.auditrec import KEY, AuditEvent
from integrity.model import Actor, Finding

log = structlog.get_logger("mail-integrity.whodata")

NETLINK_AUDIT = 9
NLGRP_READLOG = 1
AUDIT_GET, AUDIT_SET = 1000, 1001
AUDIT_ADD_RULE, AUDIT_DEL_RULE, AUDIT_LIST_RULES = 1011, 1012, 1013
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK = 1, 4
AUDIT_STATUS_ENABLED = 1
AUDIT_FILTER_EXIT, AUDIT_ALWAYS = 4, 2
AUDIT_WATCH, AUDIT_PERM, AUDIT_DIR, AUDIT_FILTERKEY = 105, 106, 107, 210
AUDIT_EQUAL = 0x40000000
PERM = {"x": 1, "w": 2, "r": 4, "a": 8}
_STRING_FIELDS = frozenset({13, 14, 15, 16, 17, 19, 20, 21, 22, 23, 105, 107, 112, 210})
_HDR = struct.Struct("=IHHII")
_RULE_HEAD = struct.Struct("=III")
_WORDS = 64  # AUDIT_BITMASK_SIZE and AUDIT_MAX_FIELDS

#: finding attributes changed by chmod/chown/setxattr; content-like ones by writes
ATTR_FINDINGS = frozenset({"mode", "uid", "gid", "owner", "group", "caps", "acl", "selinux",
                           "xattrs"})  # fmt: skip
WRITE_FINDINGS = frozenset({"digest", "content", "facts", "size", "link_target", "ftype", ""})
ATTR_SYSCALLS = frozenset({"chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown",
                           "lchown", "fchownat", "setxattr", "lsetxattr", "fsetxattr",
                           "removexattr", "lremovexattr", "fremovexattr"})  # fmt: skip

UNAVAILABLE = "MI-WHODATA-UNAVAILABLE"
DEGRADED = "MI-WHODATA-DEGRADED"


class AuditError(OSError):
    """A netlink request the kernel refused (errno set)."""


@dataclass(frozen=True, slots=True)
class WatchRule:
    """``auditctl -w PATH -p PERMS -k mail-integrity``: a file (WATCH) or a subtree (DIR)."""

    path: str
    perms: str = "wa"
    tree: bool = False

    def pack(self, key: str = KEY) -> bytes:
        """``struct audit_rule_data`` as libaudit builds it for ``-w``."""
        path, k = os.fsencode(self.path), key.encode()
        perm = sum(PERM[c] for c in self.perms)
        fields = [AUDIT_DIR if self.tree else AUDIT_WATCH, AUDIT_PERM, AUDIT_FILTERKEY]
        values = [len(path), perm, len(k)]
        pad = [0] * (_WORDS - 3)
        return b"".join((
            _RULE_HEAD.pack(AUDIT_FILTER_EXIT, AUDIT_ALWAYS, 3),
            struct.pack(f"={_WORDS}I", *([0xFFFFFFFF] * _WORDS)),  # every syscall
            struct.pack(f"={_WORDS}I", *fields, *pad),
            struct.pack(f"={_WORDS}I", *values, *pad),
            struct.pack(f"={_WORDS}I", *([AUDIT_EQUAL] * 3), *pad),
            struct.pack("=I", len(path) + len(k)), path, k,
        ))  # fmt: skip


def rule_strings(data: bytes) -> tuple[list[str], list[str]]:
    """A listed ``audit_rule_data`` -> (watched paths, keys)."""
    _, _, count = _RULE_HEAD.unpack_from(data)
    base = _RULE_HEAD.size + 4 * _WORDS
    fields = struct.unpack_from(f"={_WORDS}I", data, base)
    values = struct.unpack_from(f"={_WORDS}I", data, base + 4 * _WORDS)
    buf = data[base + 12 * _WORDS + 4 :]  # after fields, values, fieldflags, buflen
    off, paths, keys = 0, [], []
    for i in range(min(count, _WORDS)):
        if fields[i] in _STRING_FIELDS:
            text = os.fsdecode(buf[off : off + values[i]])
            off += values[i]
            if fields[i] in (AUDIT_WATCH, AUDIT_DIR):
                paths.append(text)
            elif fields[i] == AUDIT_FILTERKEY:
                keys.extend(text.split("\x01"))
    return paths, keys


def watch_rules(
    files: Iterable[str], trees: Iterable[str], dirs: Iterable[str], queues: Iterable[str]
) -> list[WatchRule]:
    """The minimal rule set (host paths): writes and attribute changes of monitored files,
    one subtree rule per recursive directory, and only the *own attributes* of plain and
    queue directories (a rule on a queue's entries would log every message: see
    docs/whodata.md for the measurement)."""
    tree_list = sorted(set(trees))

    def inside(p: str) -> bool:
        return any(p == t or p.startswith(t.rstrip("/") + "/") for t in tree_list)

    rules = [WatchRule(t, "wa", tree=True) for t in tree_list]
    rules += [WatchRule(p, "wa") for p in sorted(set(files)) if not inside(p)]
    rules += [WatchRule(p, "a") for p in sorted(set(dirs) | set(queues)) if not inside(p)]
    return rules


class Netlink:
    """One NETLINK_AUDIT socket for requests (status, rules): needs CAP_AUDIT_CONTROL."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
        self.sock.bind((0, 0))
        self.sock.settimeout(2.0)
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, mtype: int, payload: bytes = b"") -> list[tuple[int, bytes]]:
        """Send one request with ACK; return the replies (a dump ends at NLMSG_DONE)."""
        self.seq += 1
        self.sock.send(_HDR.pack(_HDR.size + len(payload), mtype, NLM_F_REQUEST | NLM_F_ACK,
                                 self.seq, 0) + payload)  # fmt: skip
        replies: list[tuple[int, bytes]] = []
        while True:
            data = self.sock.recv(1 << 16)
            off = 0
            while off + _HDR.size <= len(data):
                length, rtype, _, seq, _ = _HDR.unpack_from(data, off)
                body = data[off + _HDR.size : off + length]
                off += (length + 3) & ~3
                if seq != self.seq:
                    continue
                if rtype == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", body)[0]
                    if err:
                        raise AuditError(err, os.strerror(err))
                    if mtype != AUDIT_LIST_RULES and (mtype != AUDIT_GET or replies):
                        return replies
                elif rtype == NLMSG_DONE:
                    return replies
                else:
                    replies.append((rtype, body))
                    if mtype == AUDIT_GET:
                        return replies
                if length == 0:
                    break

    def status(self) -> dict[str, int]:
        names = ("mask", "enabled", "failure", "pid", "rate_limit", "backlog_limit", "lost",
                 "backlog")  # fmt: skip
        (_, body), *_ = self.request(AUDIT_GET)
        return dict(zip(names, struct.unpack_from("=8I", body), strict=True))

    def set_enabled(self, flag: int) -> None:
        self.request(AUDIT_SET, struct.pack("=8I", AUDIT_STATUS_ENABLED, flag, 0, 0, 0, 0, 0, 0)
                     + bytes(12))  # fmt: skip

    def rules(self) -> list[tuple[list[str], list[str], bytes]]:
        """Loaded rules: (paths, keys, raw ``audit_rule_data`` for deleting it)."""
        return [(*rule_strings(body), body) for _, body in self.request(AUDIT_LIST_RULES)]

    def add(self, rule: WatchRule) -> None:
        self.request(AUDIT_ADD_RULE, rule.pack())

    def delete(self, rule: WatchRule) -> None:
        self.request(AUDIT_DEL_RULE, rule.pack())


class Ring:
    """The last ``size`` events of our key, indexed by path name and inode."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.events: collections.deque[AuditEvent] = collections.deque()
        self.index: dict[object, list[AuditEvent]] = {}

    @staticmethod
    def _keys(event: AuditEvent) -> set[object]:
        keys: set[object] = {p.name for p in event.paths}
        keys |= {("ino", p.inode) for p in event.paths if p.inode}
        return keys

    def add(self, event: AuditEvent) -> None:
        self.events.append(event)
        for k in self._keys(event):
            self.index.setdefault(k, []).append(event)
        while len(self.events) > self.size:
            old = self.events.popleft()
            for k in self._keys(old):
                bucket = self.index.get(k, [])
                if old in bucket:
                    bucket.remove(old)
                if not bucket:
                    self.index.pop(k, None)

    def latest(
        self, path: str, inode: int | None, since: float, kind: str | None
    ) -> AuditEvent | None:
        found = list(self.index.get(path, ()))
        if inode:
            found += self.index.get(("ino", inode), ())
        for event in sorted(found, key=lambda e: e.time, reverse=True):
            if event.time >= since and matches_kind(event, kind):
                return event
        return None


def finding_kind(f: Finding) -> str | None:
    if f.attribute in ATTR_FINDINGS:
        return "attr"
    if f.attribute in WRITE_FINDINGS:
        return "write"
    return None


def matches_kind(event: AuditEvent, kind: str | None) -> bool:
    """A mode finding is explained by a chmod, a content finding by a write (unknown
    syscall numbers, on other architectures, match either)."""
    name = auditrec.syscall_name(event.fields)
    if kind is None or name is None or name.isdigit():
        return True
    return (name in ATTR_SYSCALLS) == (kind == "attr")


def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return None


Problem = Callable[[str, str], None]
Update = Callable[[Finding], None]


class Whodata:
    """The collector: netlink reader thread, rules it manages, ring, pending findings."""

    def __init__(
        self,
        root: str,
        *,
        on_problem: Problem,
        on_update: Update,
        manage: bool = True,
        wait: float = 0.05,
        horizon: float = 10.0,
    ) -> None:
        self.root = root.rstrip("/")
        self.on_problem, self.on_update = on_problem, on_update
        self.manage, self.wait, self.horizon = manage, wait, horizon
        self.ring = Ring()
        self.cond = threading.Condition()
        self.pending: collections.OrderedDict[tuple[str, str], tuple[Finding, float, float]] = (
            collections.OrderedDict()
        )
        self.checked: collections.OrderedDict[str, float] = collections.OrderedDict()
        self.reason = ""  # set: attribution unavailable, and why
        self.reported: dict[str, float] = {}
        self.added: list[WatchRule] = []
        self.enabled_before: int | None = None
        self.control: Netlink | None = None
        self.reader: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self.lost = 0
        self.assembler = auditrec.Assembler()

    # -- problems --

    def problem(self, rule: str, message: str, *, unavailable: bool = False) -> None:
        """Report a cause once (again after 10 minutes); unavailable ones stop attribution."""
        if unavailable:
            self.reason = message
        now = time.monotonic()
        if now - self.reported.get(message, -1e9) < 600:
            return
        self.reported[message] = now
        log.warning("who-data " + ("unavailable" if unavailable else "degraded"), reason=message)
        try:
            self.on_problem(rule, message)
        except Exception:  # the reader thread must survive a failing sender
            log.exception("who-data problem hook failed")

    # -- start and stop --

    def start(self, rules: list[WatchRule]) -> None:
        """Open the read group, check state and rules; never raises (problems reported)."""
        try:
            self.reader = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
            self.reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self.reader.bind((0, 1 << (NLGRP_READLOG - 1)))
            self.reader.settimeout(1.0)
        except OSError as exc:
            why = {errno.EPERM: "no CAP_AUDIT_READ", errno.EACCES: "no CAP_AUDIT_READ",
                   errno.ECONNREFUSED: "audit refused (a container without audit?)",
                   errno.EPROTONOSUPPORT: "kernel built without audit"}.get(
                       exc.errno or 0, exc.strerror or str(exc))  # fmt: skip
            self._close_reader()
            self.problem(UNAVAILABLE, f"cannot read kernel audit events: {why}", unavailable=True)
            return
        self._setup_rules(rules)
        if self.reason:
            self._close_reader()
            return
        self.thread = threading.Thread(target=self._read_loop, name="whodata", daemon=True)
        self.thread.start()
        atexit.register(self.stop)  # a crashing daemon still takes its rules back

    def _setup_rules(self, rules: list[WatchRule]) -> None:
        try:
            self.control = Netlink()
            status = self.control.status()
        except OSError as exc:
            self._close_control()
            if exc.errno in (errno.EPERM, errno.EACCES):
                log.info("who-data: read-only (no CAP_AUDIT_CONTROL): trusting auditd's rules")
                return
            self.problem(UNAVAILABLE, f"kernel audit status unreadable: {exc.strerror}",
                         unavailable=True)  # fmt: skip
            return
        self._check_rules(self.control, status, rules)

    def _check_rules(
        self, control: Netlink, status: dict[str, int], rules: list[WatchRule]
    ) -> None:
        self.lost = status["lost"]
        ours = [raw for _, keys, raw in control.rules() if KEY in keys]
        if ours and status["pid"] == 0 and self.manage and status["enabled"] != 2:
            # no auditd loaded them: leftovers of a monitor that was killed; start afresh
            for raw in ours:
                with contextlib.suppress(OSError):
                    control.request(AUDIT_DEL_RULE, raw)
            ours = []
        if status["enabled"] == 2:
            if not ours:
                self.problem(UNAVAILABLE, "audit rules are locked (auditctl -e 2) and no "
                             f"{KEY} rules are loaded", unavailable=True)  # fmt: skip
            return
        if status["enabled"] == 0:
            if not self.manage:
                self.problem(UNAVAILABLE, "kernel audit is disabled (auditctl -e 0)",
                             unavailable=True)  # fmt: skip
                return
            control.set_enabled(1)
            self.enabled_before = 0
        if ours:
            log.info("who-data: using the loaded audit rules", rules=len(ours))
            return
        if not self.manage:
            self.problem(UNAVAILABLE, f"no {KEY} audit rules loaded (install "
                         "/etc/audit/rules.d/mail-integrity.rules)", unavailable=True)  # fmt: skip
            return
        failed = []
        for rule in rules:
            try:
                control.add(rule)
                self.added.append(rule)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    failed.append(f"{rule.path}: {exc.strerror}")
        if failed:
            self.problem(DEGRADED, f"{len(failed)} audit rules refused, changes there are not "
                         f"attributed: {'; '.join(failed[:3])}")  # fmt: skip
        log.info("who-data: audit rules added", rules=len(self.added))

    def stop(self) -> None:
        """Take back what we added: our rules, then the enabled flag as we found it."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(3)
        if self.control is not None:
            for rule in self.added:
                try:
                    self.control.delete(rule)
                except OSError as exc:
                    log.warning("who-data: audit rule not removed", path=rule.path,
                                error=exc.strerror)  # fmt: skip
            self.added = []
            if self.enabled_before is not None:
                try:
                    self.control.set_enabled(self.enabled_before)
                except OSError as exc:
                    log.warning("who-data: audit enabled flag not restored", error=exc.strerror)
                self.enabled_before = None
        self._close_control()
        self._close_reader()

    def _close_reader(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def _close_control(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None

    # -- reading --

    def _read_loop(self) -> None:
        reader = self.reader
        if reader is None:
            return
        next_poll = time.monotonic() + 5.0
        while not self.stopping.is_set():
            try:
                data = reader.recv(1 << 16)
            except TimeoutError:
                data = b""
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.problem(
                        DEGRADED,
                        "audit records lost: the reader fell behind "
                        "(netlink buffer overrun); some changes go unattributed",
                    )
                    continue
                if self.stopping.is_set():
                    return
                self.problem(UNAVAILABLE, f"audit socket failed: {exc.strerror}",
                             unavailable=True)  # fmt: skip
                return
            self.feed(data)
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + 5.0
                self._poll_status()

    def feed(self, data: bytes) -> None:
        """One netlink datagram of audit records -> events into the ring."""
        off = 0
        events: list[AuditEvent] = []
        while off + _HDR.size <= len(data):
            length, rtype, _, _, _ = _HDR.unpack_from(data, off)
            if length < _HDR.size:
                break
            text = data[off + _HDR.size : off + length].rstrip(b"\0").decode("utf-8", "replace")
            off += (length + 3) & ~3
            events += self.assembler.add(rtype, text)
        for event in events:
            if event.config is not None:
                self._config_change(event.config)
            elif event.key == KEY:
                self.add(event)

    def _config_change(self, rec: dict[str, str]) -> None:
        """Someone turned auditing off or removed our rules: say so (and who)."""
        if self.stopping.is_set():
            return
        who = f"auid={rec.get('auid', '?')} pid={rec.get('pid', '?')}"
        if rec.get("audit_enabled") == "0":
            self.problem(UNAVAILABLE, f"kernel audit was disabled ({who})", unavailable=True)
        elif rec.get("audit_enabled") in ("1", "2") and self.reason.startswith("kernel audit was"):
            self.reason = ""
        elif auditrec.value(rec.get("op", ""), "op") == "remove_rule" and KEY in rec.get("key", ""):
            self.problem(DEGRADED, f"a {KEY} audit rule was removed ({who})")

    def _poll_status(self) -> None:
        if self.control is None:
            return
        try:
            status = self.control.status()
        except OSError:
            return
        if status["lost"] > self.lost:
            self.problem(DEGRADED, f"the kernel lost {status['lost'] - self.lost} audit "
                         f"records (backlog limit {status['backlog_limit']})")  # fmt: skip
        self.lost = status["lost"]
        if status["enabled"] == 0:
            self.problem(UNAVAILABLE, "kernel audit is disabled (auditctl -e 0)", unavailable=True)

    def add(self, event: AuditEvent) -> None:
        with self.cond:
            self.ring.add(event)
            self.cond.notify_all()
            due = [k for k, (f, since, _) in self.pending.items() if self._match(event, f, since)]
            updates = [self.pending.pop(k)[0] for k in due]
            now = time.monotonic()
            for k in [k for k, (_, _, exp) in self.pending.items() if exp < now]:
                del self.pending[k]
        for f in updates:
            try:
                self.on_update(replace(f, actor=self.actor_of(event)))
            except Exception:
                log.exception("who-data update hook failed")

    # -- joining --

    def host(self, path: str) -> str:
        return self.root + path if self.root else path

    def _match(self, event: AuditEvent, f: Finding, since: float) -> bool:
        return (event.time >= since and event.touches(self.host(f.path))
                and matches_kind(event, finding_kind(f)))  # fmt: skip

    def actor_of(self, event: AuditEvent) -> Actor:
        return auditrec.actor(event, user_name=user_name, redact=auditrec.redact_args)

    def attribute(self, findings: list[Finding]) -> list[Finding]:
        """Each finding with its actor, or with the reason there is none (bounded wait)."""
        if not findings:
            return findings
        if self.reason:
            return [replace(f, actor=Actor(reason=self.reason)) for f in findings]
        now = time.time()
        deadline = time.monotonic() + self.wait
        out: list[Finding | None] = [None] * len(findings)
        since = [max(now - self.horizon, self.checked.get(f.path, 0.0)) for f in findings]
        inodes = [_inode(self.host(f.path)) for f in findings]
        with self.cond:
            while True:
                for i, f in enumerate(findings):
                    if out[i] is None:
                        ev = self.ring.latest(self.host(f.path), inodes[i], since[i],
                                              finding_kind(f))  # fmt: skip
                        if ev is not None:
                            out[i] = replace(f, actor=self.actor_of(ev))
                left = deadline - time.monotonic()
                if all(out) or left <= 0:
                    break
                self.cond.wait(left)
            result = []
            for i, f in enumerate(findings):
                g = out[i]
                if g is None:
                    g = replace(f, actor=Actor(reason=f"no audit record of this change within "
                                               f"{self.wait * 1000:.0f} ms"))  # fmt: skip
                    self.pending[(f.path, f.rule)] = (f, since[i], time.monotonic() + self.horizon)
                    while len(self.pending) > 256:
                        self.pending.popitem(last=False)
                result.append(g)
        for f in findings:
            self.checked[f.path] = now
            self.checked.move_to_end(f.path)
        while len(self.checked) > 10_000:
            self.checked.popitem(last=False)
        return result


def _inode(path: str) -> int | None:
    try:
        return os.lstat(path).st_ino
    except OSError:
        return None
