"""``mail-integrity watch``: inotify events -> lanes -> verify -> remote syslog.

Threads: watchdog's observer for binaries, configs and aliases (handlers only mark paths
dirty: an exception there would kill its dispatcher); the queue reader (integrity.inotify:
raw inotify on its own descriptor, so a mail flood neither floods watchdog nor overflows
the queue the binaries share); three lane workers (integrity.lanes): attributes (never
waits behind hashing), content (and every full verify), queue entries; the syslog sender;
the main thread (sd_notify, heartbeats, re-alerts, overflow reports, signals).

Never blind: a full verify at start and every ``full_verify_interval``. After an inotify
overflow (either descriptor) binaries, configs and aliases are re-checked at once,
attributes first, then content, the queues after, and the overflow itself is reported
(MI-WATCH-OVERFLOW). When the kernel refuses watches (max_user_watches) the daemon keeps
what it has in priority order, says so once (MI-WATCH-DEGRADED), rescans every
``rescan_interval`` and retries the watches. Any thread dying ends the process so systemd
restarts it rather than leaving a deaf daemon.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import structlog

from integrity import api, auditnl, emit, scanner, sdnotify, whodata
from integrity.compare import compare
from integrity.config import Config
from integrity.errors import BaselineCorruptError, BaselineTamperedError, IOFailure, MonitorError
from integrity.inotify import Pending
from integrity.judge import judge
from integrity.lanes import DirtySet, attr_owned, attribute_view, carry
from integrity.model import FileRecord, Finding, Role, ScanWarning, Severity
from integrity.session import Session
from integrity.store import row_finding
from integrity.syslog import SyslogSender, facility_code
from integrity.watches import Handler, Watches

log = structlog.get_logger("mail-integrity.watch")

OVERFLOW_REPORT_EVERY = 10.0  # seconds between two MI-WATCH-OVERFLOW of one source
GIL_SWITCH = 0.0005  # seconds; see run()
#: an attribute check is cheap (no content): wait at most this long for more events
ATTR_DEBOUNCE = 0.005
#: queue churn: batch at least this long (fewer, larger batches under a mail flood)
QUEUE_DEBOUNCE = 0.05
MAX_TOUCHED = 100_000  # paths remembered for a running full verify, beyond: pruned
QUEUE_DEPTH = 4  # entries below a queue directory that are checked (as snapshot does)


class Watcher:
    """The daemon's state and loops."""

    def __init__(
        self, opts: api.Options, cfg: Config, sender: SyslogSender | None, *, enforce: bool = False
    ) -> None:
        self.cfg = cfg
        self.session = Session(opts, enforce=enforce)
        self.sender = sender
        self.host = cfg.syslog.hostname or api.hostname()
        self.attr = DirtySet()  # host paths whose attributes changed
        self.content = DirtySet()  # host paths whose content or existence changed
        self.queue = DirtySet()  # queue entries named by other lanes; wakes the queue lane
        self.attr_all = threading.Event()  # overflow: re-check every attribute at once
        self.attr_lock = threading.Lock()  # attribute checks: the lane and the fast path
        self.db = threading.RLock()  # the session's store and reloads
        self.stop = threading.Event()
        self.fatal: BaseException | None = None
        self.workers: list[threading.Thread] = []
        self.last_full = 0.0
        self.rebuild_due = threading.Event()
        self.watches = Watches(
            self.session, Handler(self.attr, self.content), self.queue.wake.set, self.attr_now,
            self.recheck_attributes, self.alert, cfg.watch.rescan_interval,
            queue_depth=QUEUE_DEPTH,
        )  # fmt: skip
        self.touched: dict[str, float] = {}  # path -> when a fast lane changed its findings
        self.verifying: float | None = None  # when the running full verify began
        self._ovf_lock = threading.Lock()
        self.overflows: dict[str, int] = {}
        self.overflow_sent: dict[str, float] = {}
        self.cap = int(cfg.watch.user_max_hash)
        self.whodata: whodata.Whodata | None = None  # who made each change (issue 13)

    # -- emitting --

    def send(self, event: tuple[str, str, dict[str, str], dict[str, Any]]) -> None:
        if self.sender is None:
            return
        try:
            self.sender.send(*event)
        except IOFailure as exc:  # outbox unwritable (disk full?): the journal still has it
            log.error("syslog outbox refused a message", error=exc.message, msgid=event[1])

    def seen(self, f: Finding) -> emit.Observed | None:
        """The file as it is now, for the event's ECS ``file.*`` (only when we send)."""
        return None if self.sender is None else emit.observe(self.session.root, f)

    def publish(self, new: list[Finding], resolved: list[dict[str, Any]]) -> None:
        """Send what a lane decided; called outside the database lock (who-data waits)."""
        if self.whodata is not None and new:
            new = self.whodata.attribute(new)  # bounded wait; late records follow as updates
        for f in new:
            if not f.fix:  # the first message says what to do
                f = replace(
                    f, fix=f"if intended: mail-integrity update --accept {f.path} --reason '...'"
                )
            self.send(emit.finding_event(f, host=self.host, seen=self.seen(f)))
            log.warning(
                "finding", path=f.path, rule=f.rule, severity=str(f.severity), message=f.message
            )
        for row in resolved:
            f = row_finding(row)
            self.send(emit.resolved_event(f, host=self.host, seen=self.seen(f)))
            log.info("resolved", path=f.path, rule=f.rule)
        if new:
            with self.db:
                self.session.mark_sent(_keys(new))

    def realert(self) -> None:
        with self.db:
            rows = self.session.open_findings(Severity.HIGH.rank)
        for row in rows:  # outside the lock: seen() may hash a changed file
            f = row_finding(row)
            self.send(emit.finding_event(f, host=self.host, action="realert", seen=self.seen(f)))
        if rows:
            with self.db:
                self.session.mark_sent(str(r["key"]) for r in rows)

    def alert(self, f: Finding, resolved: bool = False) -> None:
        """A message about the daemon itself: sent, logged, never kept as a finding."""
        event = emit.resolved_event(f, host=self.host) if resolved else None
        self.send(event or emit.finding_event(f, host=self.host))
        (log.info if resolved else log.error)(
            "resolved" if resolved else "watch alert", rule=f.rule, path=f.path, message=f.message
        )

    # -- paths --

    def model(self, host_paths: Iterable[str]) -> set[str]:
        return {p for p in (self.session.model_path(h) for h in host_paths) if p}

    def hpath(self, path: str) -> str:
        return scanner.host_path(self.session.root, path)

    def touch(self, new: list[Finding], resolved: list[dict[str, Any]]) -> None:
        """Remember what a fast lane just decided, for a full verify running meanwhile."""
        now = time.monotonic()
        for f in new:
            self.touched[f.path] = now
        for row in resolved:
            self.touched[str(row["path"])] = now
        if len(self.touched) > MAX_TOUCHED:  # only a running full verify needs them
            cutoff = self.verifying if self.verifying is not None else now
            self.touched = {p: t for p, t in self.touched.items() if t >= cutoff}

    def refresh(self) -> None:
        """An admin accepted changes: load the new baseline (under the database lock)."""
        with self.db:
            if self.session.stale():
                self.session.reload()

    # -- the attribute lane --

    def attr_step(self) -> None:
        time.sleep(min(self.cfg.watch.debounce, ATTR_DEBOUNCE))
        every = self.attr_all.is_set()
        self.attr_all.clear()
        paths, full = self.attr.take()
        if every or full:
            self.attr_check(self.session.plan.targets)
            self.report_overflows()
            if full:
                self.content.request_full()
        if paths:
            self.attr_check(self.model(paths))

    def recheck_attributes(self) -> None:
        """Every attribute, at once, on the attribute lane."""
        self.attr_all.set()
        self.attr.wake.set()

    def attr_now(self, host_paths: list[str]) -> None:
        """The fast path's thread checks at once: no hand-over, no debounce (on a loaded
        host every thread hop is a wait for a CPU). Never raises: the lane retries."""
        try:
            self.attr_check(self.model(host_paths))
        except Exception:
            log.exception("attribute fast path failed; handing over to the lane")
            self.attr.add(*host_paths)

    def attr_check(self, paths: Iterable[str]) -> None:
        with self.attr_lock:  # one at a time: a stale view never overwrites a newer one
            self._attr_check(paths)

    def _attr_check(self, paths: Iterable[str]) -> None:
        """lstat + xattrs + flags of each path, judged on the baseline's content: never
        opens a file, so it never waits for one. Anything else goes to its lane."""
        self.refresh()
        s = self.session
        names = scanner.IdNames(s.root)
        baseline, targets = s.baseline, s.plan.targets
        queued = s.queue_entries(p for p in paths if p not in targets)
        base: dict[str, FileRecord] = {}
        view: dict[str, FileRecord] = {}
        roles: dict[str, Role] = {}
        others: set[str] = set()
        for path in sorted(paths):
            old, target = baseline.get(path), targets.get(path)
            if path in queued:
                self.queue.add(self.hpath(path))
                continue
            if old is None or target is None:
                others.add(path)  # new or unknown: the content lane owns all of it
                continue
            got = scanner.collect(s.root, path, names=names, read_content=False)
            if isinstance(got, ScanWarning) or got.record.ftype != old.ftype:
                others.add(path)  # vanished or retyped: content lane
                continue
            base[path], view[path] = old, attribute_view(old, got.record)
            roles[path] = s.roles.get(path, target.role)
        if others:
            self.content.add(*(self.hpath(p) for p in others))
        if not base:
            return
        changes = compare(base, view, roles)
        found = [f for f in judge(changes, base, view, s.policy, roles) if attr_owned(f.attribute)]
        if s.enforce:
            from integrity.enforce import enforce

            done, _ = enforce(s.root, found, base, view)
            found.extend(done)
        with self.db:
            rows = s.store.open_findings(0) if s.run_id is not None else []
            mine = carry(found, rows, set(base), lambda _p, a: not attr_owned(a))
            new, resolved = s.track(mine, sorted(base))
            self.touch(new, resolved)
        self.publish(new, resolved)

    # -- the content lane --

    def content_step(self) -> None:
        time.sleep(self.cfg.watch.debounce)
        paths, full = self.content.take()
        if paths and self.new_glob_dir(paths):
            self.rebuild_due.set()  # a drop-in directory: watch it, and see what it holds
        if self.rebuild_due.is_set():
            self.rebuild_due.clear()
            self.session.replan()
            self.start_watches()
            full = True
        if full:
            self.full_verify("inotify overflow, event flood or SIGHUP")
        elif paths:
            self.content_check(paths)
        now = time.monotonic()
        if self.watches.degraded is not None and now >= self.watches.next_rescan:
            self.full_verify("degraded: periodic rescan of what inotify does not watch")
            added = self.watches.retry()
            if added:
                self.content.add(*added)  # what changed while it was not watched
        elif now >= self.last_full + self.cfg.watch.full_verify_interval:
            self.full_verify("periodic")
            self.watches.check()  # directories made since, that watchdog could not add

    def content_timeout(self) -> float:
        due = self.last_full + self.cfg.watch.full_verify_interval
        return max(0.1, min(due, self.watches.next_rescan) - time.monotonic())

    def content_check(self, host_paths: set[str]) -> None:
        s = self.session
        paths = self.model(host_paths)
        queued = s.queue_entries(p for p in paths if p not in s.plan.targets)
        if queued:
            self.queue.add(*(self.hpath(p) for p in queued))
        paths -= queued
        if paths:
            self.refresh()
            report, snap = s.scan(sorted(paths), user_max_hash=self.cap)
            with self.db:
                rows = s.store.open_findings(0) if s.run_id is not None else []
                scope = paths | set(snap.records)
                base, live = s.baseline, snap.records

                def attrs(p: str, a: str) -> bool:
                    return p in base and p in live and attr_owned(a)

                mine = carry(report.findings, rows, scope, attrs)
                new, resolved = s.track(mine, sorted(paths), snap, report)
            self.publish(new, resolved)
        if self.watches.replaced(host_paths):
            # a watched directory was renamed, replaced or recreated: its inotify watch
            # follows the old inode, so watch again and look at everything once
            self.session.replan()
            self.start_watches()
            self.full_verify("a watched directory was replaced")

    def full_verify(self, why: str) -> None:
        """Everything, hashed (with the user cap); a fast lane's newer verdicts stand."""
        log.info("full verify", reason=why)
        start = self.verifying = time.monotonic()
        self.refresh()
        s = self.session
        report, snap = s.scan(None, user_max_hash=self.cap)
        with self.db:
            touched = {p for p, t in self.touched.items() if t >= start}
            rows = s.store.open_findings(0) if touched and s.run_id is not None else []
            base, queued = s.baseline, s.queue_entries(touched)

            def fast(p: str, a: str) -> bool:
                return p in queued or (p in base and attr_owned(a))

            mine = carry(report.findings, rows, touched, fast)
            new, resolved = s.track(mine, None, snap, report)
            self.touched = {p: t for p, t in self.touched.items() if t >= start}
            self.verifying = None
        self.publish(new, resolved)
        self.last_full = time.monotonic()

    # -- the queue lane --

    def new_glob_dir(self, host_paths: Iterable[str]) -> bool:
        """A directory that appeared where a profile glob reaches below it
        (``/etc/systemd/system/postfix.service.d`` for ``.../postfix*.d/**``): no watch
        covers it yet, so a file written into it at once would wait for the next full verify."""
        globs: list[list[str]] | None = None  # worked out only once a new directory is seen
        for host in host_paths:
            if host in self.watches.inodes or os.path.islink(host) or not os.path.isdir(host):
                continue
            model = self.session.model_path(host)
            if model is None:
                continue
            if globs is None:
                rules = self.session.policy.rules
                globs = [r.pattern.strip("/").split("/") for r in rules if r.is_glob]
            parts = model.strip("/").split("/")
            if any(len(g) > len(parts) and all(map(fnmatch.fnmatchcase, parts, g)) for g in globs):
                return True
        return False

    def queue_step(self) -> None:
        time.sleep(max(self.cfg.watch.debounce, QUEUE_DEBOUNCE))
        extra, full = self.queue.take()  # clears the wake-up first: nothing is missed
        reader = self.watches.reader
        pending = reader.take() if reader is not None else Pending()
        s = self.session
        if pending.overflows:
            self.note_overflow("queue", pending.overflows)
        if pending.tops or pending.overflows:
            tops = pending.tops or set(reader.tops if reader else ())
            self.attr.add(*tops)  # the queue directories' own attributes
        if pending.replaced:
            self.rebuild_due.set()
            self.content.wake.set()
        paths = self.model(extra)
        for directory, names in pending.names.items():
            model = s.model_path(directory)
            if model is not None:
                paths.update(f"{model.rstrip('/')}/{n}" for n in names)
        wholes = set(pending.whole) | (set(reader.tops) if full and reader else set())
        for directory in wholes:
            model = s.model_path(directory)
            if model is not None:
                walk = scanner.walk(s.root, model, max_depth=QUEUE_DEPTH)
                paths.update(p for p in walk if isinstance(p, str))
        targets = {p for p in paths if p in s.plan.targets}
        if targets:  # a directory the profile names inside a queue: the other lanes
            self.attr.add(*(self.hpath(p) for p in targets))
            self.content.add(*(self.hpath(p) for p in targets))
        if paths - targets:
            self.queue_check(paths - targets)
        if pending.overflows:
            self.report_overflows()

    def queue_check(self, paths: set[str]) -> None:
        """Queue and spool entries: owner, mode, ACL, capabilities; never their content."""
        self.refresh()
        report, snap = self.session.scan(sorted(paths))
        with self.db:
            new, resolved = self.session.track(report.findings, sorted(paths), snap, report)
            self.touch(new, resolved)
        self.publish(new, resolved)

    # -- overflows --

    def note_overflow(self, source: str, count: int = 1) -> None:
        """Events were lost: re-check attributes at once, then content and queues."""
        with self._ovf_lock:
            self.overflows[source] = self.overflows.get(source, 0) + count
        if source == "watchdog":
            self.recheck_attributes()
            self.content.request_full()  # content of everything, queue entries included

    def report_overflows(self) -> None:
        now = time.monotonic()
        with self._ovf_lock:
            due = {
                src: n
                for src, n in self.overflows.items()
                if n and now - self.overflow_sent.get(src, -1e9) >= OVERFLOW_REPORT_EVERY
            }
            for src in due:
                self.overflows[src] = 0
                self.overflow_sent[src] = now
        for src, n in due.items():
            what = "queue directories" if src == "queue" else "binaries, configs and aliases"
            self.alert(
                Finding(
                    "/" if src == "watchdog" else self._queue_top(),
                    "MI-WATCH-OVERFLOW",
                    Severity.MEDIUM,
                    f"the kernel dropped inotify events {n} time(s) on the {what} watches "
                    "(IN_Q_OVERFLOW): everything was re-checked (attributes first)",
                    "inotify",
                    None,
                    str(n),
                )
            )

    def _queue_top(self) -> str:
        tops = self.watches.reader.tops if self.watches.reader is not None else []
        return (self.session.model_path(tops[0]) or tops[0]) if tops else "/"

    # -- watching --

    def start_watches(self) -> None:
        """(Re)build every watch, then listen for watchdog's overflow warning."""
        self.watches.start()
        emit.clear_overflow_hooks()
        emit.add_overflow_hook(lambda: self.note_overflow("watchdog"))

    def healthy(self) -> bool:
        threads_ok = bool(self.workers) and all(t.is_alive() for t in self.workers)
        sender_ok = self.sender is None or self.sender.alive()
        return threads_ok and self.watches.alive() and sender_ok and self.fatal is None

    def lane(
        self,
        name: str,
        wake: threading.Event,
        step: Callable[[], None],
        timeout: Callable[[], float] = lambda: 1.0,
    ) -> threading.Thread:
        """A worker thread: wait for work, do one step; a baseline problem is fatal."""

        def loop() -> None:
            try:
                while not self.stop.is_set():
                    wake.wait(timeout())
                    if not self.stop.is_set():
                        step()
            except (BaselineCorruptError, BaselineTamperedError) as exc:
                alarm(self.sender, self.session.opts.db, exc, close=False)
                self.fatal = exc
                self.stop.set()
            except BaseException as exc:
                self.fatal = exc
                log.exception(f"{name} lane died")
                self.stop.set()

        thread = threading.Thread(target=loop, name=f"{name}-lane", daemon=True)
        self.workers.append(thread)
        return thread


def start_whodata(watcher: Watcher) -> whodata.Whodata | None:
    """Attribution through kernel audit: rules for what the profiles monitor, read group
    joined; problems and late attributions go to the SIEM. None when configured off."""
    mode = watcher.cfg.watch.whodata
    if mode == "off":
        return None
    s = watcher.session
    rules = audit_rules(s)
    w = whodata.Whodata(
        s.root,
        manage=mode == "auto",
        wait=watcher.cfg.watch.whodata_wait,
        state_dir=os.path.dirname(watcher.cfg.syslog.outbox),  # writable state, like the outbox
        on_problem=lambda rule, why: watcher.send(emit.whodata_event(rule, why, host=watcher.host)),
        on_update=lambda f: watcher.send(emit.attribution_event(f, host=watcher.host)),
    )
    w.start(rules)
    return w


def audit_rules(s: Session) -> list[auditnl.WatchRule]:
    """Who-data rules for what the profiles monitor (host paths; minimal, see whodata)."""
    dir_roles = (Role.DIRECTORY, Role.QUEUE, Role.SPOOL)
    files = {t.path for t in s.plan.targets.values() if t.role not in dir_roles}
    files |= {r.pattern for r in s.policy.rules if not r.is_glob and r.role not in dir_roles}
    dirs = {t.path for t in s.plan.targets.values() if t.role == Role.DIRECTORY}
    return auditnl.watch_rules(
        [scanner.host_path(s.root, p) for p in files if _parent_exists(s.root, p)],
        s.watch_dirs()[1],
        [scanner.host_path(s.root, p) for p in dirs],
        s.queue_dirs(),
    )


def print_audit_rules(opts: api.Options) -> str:
    """``watch --audit-rules``: the rules ``watch`` would add, for auditd's rules.d."""
    session = Session(opts)
    try:
        return auditnl.rules_text(audit_rules(session))
    finally:
        session.close()


def _parent_exists(root: str, path: str) -> bool:
    return os.path.isdir(os.path.dirname(scanner.host_path(root, path)))


def alarm(sender: SyslogSender | None, db: str, exc: MonitorError, *, close: bool = True) -> None:
    """The baseline itself cannot be trusted: critical, to the SIEM before anything else."""
    rule = (
        "MI-BASELINE-SIGNATURE-INVALID"
        if isinstance(exc, BaselineTamperedError)
        else "MI-BASELINE-CORRUPT"
    )
    finding = Finding(db, rule, Severity.CRITICAL, exc.message, "baseline")
    log.critical("baseline not trusted", path=db, rule=rule, message=exc.message)
    if sender is not None:
        sender.start()  # idempotent; a cron verify has not started it yet
        sender.send(*emit.finding_event(finding, host=sender.hostname))
        if close:
            sender.close(10.0)


def _keys(findings: Iterable[Finding]) -> list[str]:
    from integrity.store import finding_key

    return [finding_key(f) for f in findings]


def _version() -> str:
    try:
        return version("mail-integrity")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0"


def make_sender(cfg: Config, url: str | None) -> SyslogSender | None:
    url = url or cfg.syslog.url
    if not url:
        return None
    s = cfg.syslog
    return SyslogSender(
        url,
        outbox_path=s.outbox,
        hostname=s.hostname or api.hostname(),
        ca_file=s.ca_file,
        cert_file=s.cert_file,
        key_file=s.key_file,
        verify_hostname=s.verify_hostname,
        facility=facility_code(s.facility),
        backoff=(min(1.0, s.reconnect_max), s.reconnect_max),
        framing="newline" if s.framing == "newline" else "octet-counting",
        udp_max_size=s.udp_max_size,
        enterprise_number=s.enterprise_number,
    )


def run(
    opts: api.Options,
    cfg: Config,
    *,
    syslog_url: str | None,
    once: bool,
    verbose: int,
    enforce: bool = False,
) -> int:
    """The daemon's main: returns the process exit code."""
    emit.configure_logging(verbose, json=not os.isatty(2))
    # The attribute lane makes a few dozen syscalls per alert, and each one hands the GIL
    # back; while the queue lane is busy in a storm, taking it again waits a whole switch
    # interval (5 ms by default): a convoy of ~100 ms per alert. 0.5 ms bounds it.
    sys.setswitchinterval(GIL_SWITCH)
    sender = make_sender(cfg, syslog_url)
    if sender is None:
        log.warning("no --syslog URL and none in the config: findings go to the log only")
    else:
        sender.start()
    try:
        watcher = Watcher(opts, cfg, sender, enforce=enforce)
    except (BaselineCorruptError, BaselineTamperedError) as exc:
        alarm(sender, opts.db, exc)
        raise
    watcher.send(emit.lifecycle_event("start", host=watcher.host, version=_version()))
    watcher.whodata = start_whodata(watcher)
    sdnotify.notify("STATUS=initial full verify")
    watcher.full_verify("start")
    watcher.start_watches()
    for thread in (
        watcher.lane("attr", watcher.attr.wake, watcher.attr_step),
        watcher.lane("content", watcher.content.wake, watcher.content_step,
                     watcher.content_timeout),
        watcher.lane("queue", watcher.queue.wake, watcher.queue_step),
    ):  # fmt: skip
        thread.start()
    _install_signals(watcher)
    sdnotify.notify("READY=1", f"STATUS=watching {watcher.watches.count} directories")
    log.info("watching", directories=watcher.watches.count, root=watcher.session.root)
    code = 0 if once else _main_loop(watcher)
    _shutdown(watcher, sender)
    if watcher.fatal is not None:
        return 70
    return code


def _install_signals(watcher: Watcher) -> None:
    def stop(signum: int, _frame: object) -> None:
        watcher.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, lambda *_: watcher.content.request_full())


def _main_loop(watcher: Watcher) -> int:
    period = sdnotify.watchdog_period()
    heartbeat = watcher.cfg.syslog.heartbeat
    next_beat = time.monotonic() + heartbeat
    next_realert = time.monotonic() + watcher.cfg.watch.realert_interval
    beat = 0
    while not watcher.stop.wait(min(1.0, period or 1.0)):
        if not watcher.healthy():
            log.error("a monitoring thread died; exiting so systemd restarts us")
            return 70
        if period:
            sdnotify.notify("WATCHDOG=1")
        now = time.monotonic()
        if now >= next_beat and watcher.sender is not None:
            beat += 1
            watcher.send(emit.heartbeat_event(beat, watcher.sender.stats(), host=watcher.host))
            next_beat = now + heartbeat
        if now >= next_realert:
            watcher.realert()
            next_realert = now + watcher.cfg.watch.realert_interval
        watcher.report_overflows()  # those a rate limit held back
    return 70 if watcher.fatal is not None else 0


def _shutdown(watcher: Watcher, sender: SyslogSender | None) -> None:
    sdnotify.notify("STOPPING=1")
    watcher.stop.set()
    watcher.watches.stop()
    for lane in (watcher.attr, watcher.content, watcher.queue):
        lane.wake.set()
    for thread in watcher.workers:
        thread.join(10)
    if watcher.whodata is not None:
        watcher.whodata.stop()  # our audit rules and the enabled flag back as they were
    watcher.send(emit.lifecycle_event("stop", host=watcher.host, version=_version()))
    if sender is not None:
        sender.close(10.0)
