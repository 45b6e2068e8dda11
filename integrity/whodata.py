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
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import structlog

from integrity import auditrec
from integrity.auditnl import _HDR, NETLINK_AUDIT, NLGRP_READLOG, Netlink, WatchRule
from integrity.auditrec import KEY, AuditEvent
from integrity.model import Actor, Finding
from integrity.whojoin import Ring, finding_kind, matches_kind, user_name

log = structlog.get_logger("mail-integrity.whodata")


UNAVAILABLE = "MI-WHODATA-UNAVAILABLE"
DEGRADED = "MI-WHODATA-DEGRADED"


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
        state_dir: str | None = None,
    ) -> None:
        self.root = root.rstrip("/")
        self.on_problem, self.on_update = on_problem, on_update
        self.manage, self.wait, self.horizon = manage, wait, horizon
        #: "we switched auditing on": survives a killed daemon, so the next one switches it off
        self.marker = os.path.join(state_dir, "whodata-enabled-audit") if state_dir else None
        self.ring = Ring()
        self.cond = threading.Condition()
        self.pending: collections.OrderedDict[tuple[str, str], tuple[Finding, float, float]] = (
            collections.OrderedDict()
        )
        self.checked: collections.OrderedDict[str, float] = collections.OrderedDict()
        self.reason = ""  # set: attribution unavailable, and why
        #: (files, subtrees) the audit rules cover: a finding elsewhere (a queue entry, a
        #: file new in a plain directory) has no record to wait for
        self.covered: tuple[frozenset[str], tuple[str, ...]] | None = None
        self.reported: dict[str, float] = {}
        self.added: list[WatchRule] = []
        self.enabled_before: int | None = None
        self.control: Netlink | None = None
        self.reader: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self.lost = 0
        self.own_removals = 0  # leftover rules we deleted ourselves at start
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
            self.stop()
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
        try:
            self._check_rules(self.control, status, rules)
        except OSError as exc:  # refused half-way (e.g. locked meanwhile): say so
            self.problem(UNAVAILABLE, f"audit rules could not be set up: {exc.strerror}",
                         unavailable=True)  # fmt: skip

    def _check_rules(
        self, control: Netlink, status: dict[str, int], rules: list[WatchRule]
    ) -> None:
        self.lost = status["lost"]
        ours = [raw for _, keys, raw in control.rules() if KEY in keys]
        if ours and status["pid"] == 0 and self.manage and status["enabled"] != 2:
            # no auditd loaded them: leftovers of a monitor that was killed; start afresh
            for raw in ours:
                with contextlib.suppress(OSError):
                    control.delete(raw)
                    self.own_removals += 1  # the kernel reports it back: not an intruder
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
            self._mark(True)
        elif self.manage and self.marker and os.path.exists(self.marker):
            self.enabled_before = 0  # a killed predecessor switched it on: ours to undo
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
        took = [r for r in rules if not any(f.startswith(r.path + ":") for f in failed)]
        self.covered = (  # our own rules, so we know what has no record to wait for
            frozenset(r.path for r in took if not r.tree),
            tuple(r.path + "/" for r in took if r.tree),
        )
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
                    self._mark(False)
                except OSError as exc:
                    log.warning("who-data: audit enabled flag not restored", error=exc.strerror)
                self.enabled_before = None
        self._close_control()
        self._close_reader()

    def _mark(self, on: bool) -> None:
        if self.marker is None:
            return
        try:
            if on:
                with open(self.marker, "w") as fh:
                    fh.write("mail-integrity watch enabled kernel auditing\n")
            else:
                os.unlink(self.marker)
        except OSError as exc:
            log.info("who-data: state marker", path=self.marker, error=exc.strerror)

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
        elif rec.get("audit_enabled") in ("1", "2") and "disabled" in self.reason:
            self.reason = ""  # switched back on: attribute again
        elif auditrec.value(rec.get("op", ""), "op") == "remove_rule" and KEY in rec.get("key", ""):
            if self.own_removals > 0:
                self.own_removals -= 1
                return
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
        elif self.reason.startswith("kernel audit") and "disabled" in self.reason:
            self.reason = ""  # switched back on: attribute again

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

    def _audited(self, f: Finding) -> bool:
        """A change of a file, directory or subtree an audit rule watches."""
        return self.covered is None or _covered_by(self.covered, self.host(f.path))

    def attribute(self, findings: list[Finding]) -> list[Finding]:
        """Each finding with its actor, or with the reason there is none (bounded wait)."""
        if not findings:
            return findings
        if self.reason:
            return [replace(f, actor=Actor(reason=self.reason)) for f in findings]
        if self.covered is not None:
            bare = [f for f in findings if not self._audited(f)]
            if bare:
                done = {id(f) for f in bare}
                rest = self.attribute([f for f in findings if id(f) not in done])
                it = iter(rest)
                why = Actor(reason="no audit rule covers this path (queue entries and new "
                            "files in plain directories are not audited)")  # fmt: skip
                return [replace(f, actor=why) if id(f) in done else next(it) for f in findings]
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


def _covered_by(covered: tuple[frozenset[str], tuple[str, ...]], host: str) -> bool:
    files, trees = covered
    return host in files or host.startswith(trees)


def _inode(path: str) -> int | None:
    try:
        return os.lstat(path).st_ino
    except OSError:
        return None
