"""``mail-integrity watch``: inotify events -> dirty paths -> verify -> remote syslog.

Threads: watchdog's observer (handlers only mark paths dirty: an exception there would
kill its dispatcher), one worker (debounce, verify, emit), the syslog sender, and the
main thread (sd_notify, heartbeats, re-alerts, signals). Never blind: a full verify at
start and every ``full_verify_interval``, and at once when inotify overflows; any thread
dying ends the process so systemd restarts it rather than leaving a deaf daemon.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from integrity import api, auditnl, emit, scanner, sdnotify, whodata
from integrity.config import Config
from integrity.errors import BaselineCorruptError, BaselineTamperedError, IOFailure, MonitorError
from integrity.model import Finding, Role, Severity
from integrity.session import Session
from integrity.syslog import SyslogSender, facility_code

log = structlog.get_logger("mail-integrity.watch")

#: what we listen for: no opened/closed-no-write, so our own reads do not wake us
EVENT_FILTER = [
    FileCreatedEvent, FileDeletedEvent, FileModifiedEvent, FileMovedEvent, FileAttribEvent,
    FileClosedEvent, DirCreatedEvent, DirDeletedEvent, DirModifiedEvent, DirMovedEvent,
]  # fmt: skip
try:
    from watchdog.events import DirAttribEvent

    EVENT_FILTER.append(DirAttribEvent)
except ImportError:  # pragma: no cover - watchdog < 7
    pass

#: queue and spool directories: only what can expose mail (a new entry, a chmod, a move
#: in). Writes, closes and deletions are left out at the kernel: a storm of 10,000 queue
#: files a second then costs a fifth of the events, and an open finding on a deleted queue
#: file is resolved by the next full verify.
QUEUE_FILTER = [FileCreatedEvent, FileAttribEvent, FileMovedEvent, DirCreatedEvent,
                DirMovedEvent]  # fmt: skip
if DirAttribEvent in EVENT_FILTER:
    QUEUE_FILTER.append(DirAttribEvent)

MAX_DIRTY = 100_000  # beyond this many pending paths, a full verify is cheaper and bounded


class DirtySet:
    """Paths touched since the worker last looked; bounded, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: set[str] = set()
        self._full = False
        self.wake = threading.Event()

    def add(self, *paths: str) -> None:
        with self._lock:
            if len(self._paths) < MAX_DIRTY:
                self._paths.update(paths)
            else:
                self._full = True
        self.wake.set()

    def request_full(self) -> None:
        with self._lock:
            self._full = True
        self.wake.set()

    def take(self) -> tuple[set[str], bool]:
        with self._lock:
            paths, full = self._paths, self._full
            self._paths, self._full = set(), False
            self.wake.clear()
        return paths, full


class Handler(FileSystemEventHandler):
    """Runs on watchdog's dispatcher thread: only records paths, can never raise."""

    def __init__(self, dirty: DirtySet) -> None:
        self.dirty = dirty

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            paths = [os.fsdecode(event.src_path)]
            dest = getattr(event, "dest_path", "")
            if dest:
                paths.append(os.fsdecode(dest))
            self.dirty.add(*paths)
        except Exception:  # a dead dispatcher thread would mean a deaf daemon
            self.dirty.request_full()


class Watcher:
    """The daemon's state and loops."""

    def __init__(
        self, opts: api.Options, cfg: Config, sender: SyslogSender | None, *, enforce: bool = False
    ) -> None:
        self.cfg = cfg
        self.session = Session(opts, enforce=enforce)
        self.sender = sender
        self.host = api.hostname()
        self.dirty = DirtySet()
        self.stop = threading.Event()
        self.fatal: BaseException | None = None
        self.observer: Any = None
        self.worker: threading.Thread | None = None
        self.last_full = 0.0
        self.watched = 0
        self.watch_inodes: dict[str, int | None] = {}
        self.realert_due = threading.Event()  # set by the main loop, served by the worker
        self.whodata: whodata.Whodata | None = None  # who made each change (issue 13)

    # -- emitting --

    def send(self, event: tuple[str, str, dict[str, str], dict[str, Any]]) -> None:
        if self.sender is None:
            return
        try:
            self.sender.send(*event)
        except IOFailure as exc:  # outbox unwritable (disk full?): the journal still has it
            log.error("syslog outbox refused a message", error=exc.message, msgid=event[1])

    def publish(self, new: list[Finding], resolved: list[dict[str, Any]]) -> None:
        if self.whodata is not None:
            new = self.whodata.attribute(new)  # bounded wait; late records follow as updates
        for f in new:
            if not f.fix:  # the first message says what to do
                f = replace(
                    f, fix=f"if intended: mail-integrity update --accept {f.path} --reason '...'"
                )
            self.send(emit.finding_event(f, host=self.host))
            log.warning(
                "finding", path=f.path, rule=f.rule, severity=str(f.severity), message=f.message
            )
        for row in resolved:
            f = _row_finding(row)
            self.send(emit.resolved_event(f, host=self.host))
            log.info("resolved", path=f.path, rule=f.rule)
        if new:
            self.session.mark_sent(_keys(new))

    def realert(self) -> None:
        rows = self.session.open_findings(Severity.HIGH.rank)
        for row in rows:
            self.send(emit.finding_event(_row_finding(row), host=self.host, action="realert"))
        if rows:
            self.session.mark_sent(str(r["key"]) for r in rows)

    # -- checking --

    def full_verify(self, why: str) -> None:
        log.info("full verify", reason=why)
        _, new, resolved = self.session.check(None)
        self.last_full = time.monotonic()
        self.publish(new, resolved)

    def check_dirty(self, host_paths: Iterable[str]) -> None:
        host_paths = set(host_paths)
        paths = {p for p in (self.session.model_path(h) for h in host_paths) if p}
        queued = self.session.queue_entries(paths)
        # binaries and configs first: a SUID bit must not wait behind a queue storm
        for batch in (paths - queued, queued):
            if batch:
                _, new, resolved = self.session.check(sorted(batch))
                self.publish(new, resolved)
        if any(_inode(h) != self.watch_inodes[h] for h in host_paths & self.watch_inodes.keys()):
            # a watched directory was renamed, replaced or recreated: its inotify watch
            # follows the old inode, so watch again and look at everything once
            self.session.replan()
            self.start_observer()
            self.full_verify("a watched directory was replaced")

    def work(self) -> None:
        """Worker loop: debounce, then re-check what was touched."""
        debounce = self.cfg.watch.debounce
        try:
            while not self.stop.is_set():
                timeout = max(
                    0.1, self.last_full + self.cfg.watch.full_verify_interval - time.monotonic()
                )
                if not self.dirty.wake.wait(timeout):
                    self.full_verify("periodic")
                    continue
                time.sleep(debounce)
                paths, full = self.dirty.take()
                if full:
                    self.full_verify("inotify overflow or event flood")
                elif paths:
                    self.check_dirty(paths)
                if self.realert_due.is_set():
                    self.realert_due.clear()
                    self.realert()
        except (BaselineCorruptError, BaselineTamperedError) as exc:
            alarm(self.sender, self.session.opts.db, exc, close=False)
            self.fatal = exc
            self.stop.set()
        except BaseException as exc:
            self.fatal = exc
            log.exception("worker died")
            self.stop.set()

    # -- watching --

    def start_observer(self) -> None:
        """(Re)build the inotify watches; a new observer runs before the old one stops."""
        flat, deep = self.session.watch_dirs()
        self.watch_inodes = {p: _inode(p) for p in flat | deep | self.session.watched_dir_paths()}
        observer = Observer()
        handler = Handler(self.dirty)
        scheduled = 0
        for path in sorted(deep):
            if os.path.isdir(path):
                observer.schedule(handler, path, recursive=True, event_filter=EVENT_FILTER)
                scheduled += 1
        queues = self.session.queue_dirs()
        for path in sorted(queues - deep):
            if os.path.isdir(path) and not any(path.startswith(d + "/") for d in deep):
                observer.schedule(handler, path, recursive=True, event_filter=QUEUE_FILTER)
                scheduled += 1
        for path in sorted(flat - deep - queues):
            if os.path.isdir(path) and not any(path.startswith(d + "/") for d in deep):
                observer.schedule(handler, path, recursive=False, event_filter=EVENT_FILTER)
                scheduled += 1
        observer.start()
        old, self.observer = self.observer, observer
        if old is not None:
            old.stop()
            old.join(5)
        self.watched = scheduled
        emit.clear_overflow_hooks()
        emit.add_overflow_hook(lambda: self.dirty.request_full())
        watches = count_inotify_watches()
        if 0 <= watches < scheduled:
            log.warning(
                "inotify watch limit reached: some directories are not watched; "
                "falling back to a full verify every minute",
                missing=scheduled - watches,
            )
            self.cfg = _with_interval(self.cfg, 60.0)

    def healthy(self) -> bool:
        threads_ok = self.worker is not None and self.worker.is_alive()
        observer_ok = self.observer is not None and self.observer.is_alive()
        sender_ok = self.sender is None or self.sender.alive()
        return threads_ok and observer_ok and sender_ok and self.fatal is None


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
        sender.send(*emit.finding_event(finding, host=api.hostname()))
        if close:
            sender.close(10.0)


def _with_interval(cfg: Config, seconds: float) -> Config:
    return replace(cfg, watch=replace(cfg.watch, full_verify_interval=seconds))


def _inode(path: str) -> int | None:
    try:
        return os.lstat(path).st_ino
    except OSError:
        return None


def count_inotify_watches() -> int:
    """Watches this process holds (watchdog stops silently at max_user_watches)."""
    total = 0
    try:
        for fd in os.listdir("/proc/self/fdinfo"):
            try:
                with open(f"/proc/self/fdinfo/{fd}") as fh:
                    total += sum(1 for line in fh if line.startswith("inotify wd:"))
            except OSError:
                continue
    except OSError:
        return -1
    return total


def _row_finding(row: dict[str, Any]) -> Finding:
    return Finding(
        str(row["path"]),
        str(row["rule"]),
        Severity(str(row["severity"])),
        str(row["message"]),
        str(row.get("attribute") or ""),
        row.get("before"),
        row.get("after"),
    )


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
        hostname=api.hostname(),
        ca_file=s.ca_file,
        cert_file=s.cert_file,
        key_file=s.key_file,
        verify_hostname=s.verify_hostname,
        facility=facility_code(s.facility),
        backoff=(min(1.0, s.reconnect_max), s.reconnect_max),
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
    watcher.start_observer()
    watcher.worker = threading.Thread(target=watcher.work, name="verify-worker", daemon=True)
    watcher.worker.start()
    _install_signals(watcher)
    sdnotify.notify("READY=1", f"STATUS=watching {watcher.watched} directories")
    log.info("watching", directories=watcher.watched, root=watcher.session.root)
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
    signal.signal(signal.SIGHUP, lambda *_: watcher.dirty.request_full())


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
            watcher.realert_due.set()  # the worker owns the database connection
            watcher.dirty.wake.set()
            next_realert = now + watcher.cfg.watch.realert_interval
    return 70 if watcher.fatal is not None else 0


def _shutdown(watcher: Watcher, sender: SyslogSender | None) -> None:
    sdnotify.notify("STOPPING=1")
    watcher.stop.set()
    if watcher.observer is not None:
        watcher.observer.stop()
        watcher.observer.join(5)
    if watcher.worker is not None:
        watcher.dirty.wake.set()
        watcher.worker.join(10)
    if watcher.whodata is not None:
        watcher.whodata.stop()  # our audit rules and the enabled flag back as they were
    watcher.send(emit.lifecycle_event("stop", host=watcher.host, version=_version()))
    if sender is not None:
        sender.close(10.0)
