"""Which directories to watch, in which order, and which ones the kernel really watches.

The kernel limits inotify watches per user (``fs.inotify.max_user_watches``). watchdog
raises only when a watch *root* is refused and silently skips refused subdirectories, so
the daemon asks the kernel instead: ``/proc/self/fdinfo`` lists every watch this process
holds, by inode. Watches are added in priority order (binaries, configs, aliases, then
queues), so what the limit leaves out is the least urgent.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from watchdog.events import (
    DirAttribEvent,
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

from integrity import scanner
from integrity.inotify import AttribReader, QueueReader
from integrity.lanes import DirtySet
from integrity.model import Finding, Role, Severity
from integrity.session import Session

log = structlog.get_logger("mail-integrity.watch")

#: what we listen for: no opened/closed-no-write, so our own reads do not wake us
#: (FileModifiedEvent is what makes watchdog 7.1 ask the kernel for IN_ATTRIB)
EVENT_FILTER = [
    FileCreatedEvent, FileDeletedEvent, FileModifiedEvent, FileMovedEvent, FileAttribEvent,
    FileClosedEvent, DirCreatedEvent, DirDeletedEvent, DirModifiedEvent, DirMovedEvent,
    DirAttribEvent,
]  # fmt: skip
ATTRIB_EVENTS = (FileAttribEvent, DirAttribEvent)


class Handler(FileSystemEventHandler):
    """Runs on watchdog's dispatcher thread: only sorts paths into lanes, can never raise."""

    def __init__(self, attr: DirtySet, content: DirtySet) -> None:
        self.attr, self.content = attr, content

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            if isinstance(event, ATTRIB_EVENTS):
                self.attr.add(os.fsdecode(event.src_path))
                return
            paths = [os.fsdecode(event.src_path)]
            dest = getattr(event, "dest_path", "")
            if dest:
                paths.append(os.fsdecode(dest))
            self.content.add(*paths)
        except Exception:  # a dead dispatcher thread would mean a deaf daemon
            self.content.request_full()


#: lower is watched first
ROLE_RANK = {
    Role.BINARY: 0,
    Role.SECRET: 1,
    Role.CONFIG: 1,
    Role.GENERATED: 1,
    Role.MAP: 1,
    Role.DIRECTORY: 1,
    Role.ALIASES: 2,
    Role.VOLATILE: 2,
    Role.QUEUE: 3,
    Role.SPOOL: 3,
}


@dataclass(frozen=True, slots=True, order=True)
class WatchDir:
    """One directory to watch: its rank (lower first), host path, and recursion."""

    rank: int
    path: str
    recursive: bool = False


def order(
    flat: Iterable[str], deep: Iterable[str], ranks: dict[str, int], default: int = 2
) -> list[WatchDir]:
    """Flat and recursive (``deep``) watch roots, most urgent first.

    ``ranks`` maps a directory to the best rank of what it holds; a directory inside a
    recursive root is covered by that root and left out.
    """
    deep = sorted(set(deep))
    out = [WatchDir(ranks.get(d, default), d, True) for d in deep]
    for d in sorted(set(flat) - set(deep)):
        if not any(d.startswith(r.rstrip("/") + "/") for r in deep):
            out.append(WatchDir(ranks.get(d, default), d, False))
    return sorted(out)


def dir_key(st: os.stat_result) -> tuple[int, int]:
    """(inode, device as the kernel prints it in fdinfo: major << 20 | minor)."""
    return st.st_ino, os.major(st.st_dev) << 20 | os.minor(st.st_dev)


def watched_inodes(pid: str = "self", exclude: Iterable[int] = ()) -> set[tuple[int, int]] | None:
    """Every (inode, device) this process holds an inotify watch on, on descriptors other
    than ``exclude`` (a second watch on the same directory proves nothing); None if
    /proc is unreadable."""
    skip = {str(fd) for fd in exclude}
    found: set[tuple[int, int]] = set()
    base = f"/proc/{pid}/fdinfo"
    try:
        fds = os.listdir(base)
    except OSError:
        return None
    for fd in fds:
        if fd in skip:
            continue
        try:
            with open(f"{base}/{fd}") as fh:
                lines = [line for line in fh if line.startswith("inotify wd:")]
        except OSError:
            continue  # the descriptor listdir itself used, or one closed meanwhile
        for line in lines:
            fields = dict(f.split(":", 1) for f in line.split()[1:] if ":" in f)
            try:
                found.add((int(fields["ino"], 16), int(fields["sdev"], 16)))
            except (KeyError, ValueError):
                continue
    return found


def wanted_dirs(watch: WatchDir, max_dirs: int = 200_000) -> list[str]:
    """The directories a watch root should cover: itself, and for a recursive one every
    directory below it (symlinks not followed)."""
    if not watch.recursive:
        return [watch.path]
    out = [watch.path]
    for top, dirs, _ in os.walk(watch.path, followlinks=False):
        dirs[:] = [d for d in sorted(dirs) if not os.path.islink(os.path.join(top, d))]
        out.extend(os.path.join(top, d) for d in dirs)
        if len(out) >= max_dirs:
            break
    return out


def unwatched(roots: Iterable[WatchDir], have: set[tuple[int, int]]) -> list[WatchDir]:
    """The directories of ``roots`` the kernel does not watch (a vanished one is not
    missing), each as a WatchDir of its root's rank: recursive below a recursive root."""
    missing: list[WatchDir] = []
    for root in roots:
        for path in wanted_dirs(root):
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if dir_key(st) not in have:
                missing.append(WatchDir(root.rank, path, root.recursive))
    return sorted(missing)


class Watches:
    """Every inotify watch of the daemon, and the degraded mode.

    watchdog watches binaries, configs and aliases (in priority order, so the watch limit
    leaves out the least urgent), the queue reader the queue trees, and the attribute
    fast path, when watches are to spare, the same directories for IN_ATTRIB alone. What
    the kernel refused is reported once (MI-WATCH-DEGRADED), rescanned by the daemon every
    ``rescan_interval`` and retried; once all is watched again the alert is resolved.
    """

    def __init__(
        self,
        session: Session,
        handler: FileSystemEventHandler,
        queue_wake: Callable[[], None],
        attr_now: Callable[[list[str]], None],
        attr_all: Callable[[], None],
        alert: Callable[[Finding, bool], None],
        rescan_interval: float,
        *,
        queue_depth: int = 4,
    ) -> None:
        self.session, self.handler, self.queue_wake = session, handler, queue_wake
        self.attr_now, self.attr_all, self.alert = attr_now, attr_all, alert
        self.rescan_interval = rescan_interval
        self.queue_depth = queue_depth
        self.lock = threading.RLock()
        self.observer: Any = None
        self.reader: QueueReader | None = None
        self.attrib: AttribReader | None = None
        self.roots: list[WatchDir] = []
        self.scheduled: dict[str, Any] = {}
        self.missing: list[WatchDir] = []
        self.degraded: Finding | None = None
        self.next_rescan = float("inf")
        self.inodes: dict[str, int | None] = {}  # directories whose replacement means rebuild
        self.count = 0

    def start(self) -> None:
        """(Re)build every watch: watchdog in priority order, then the queue reader."""
        with self.lock:
            s = self.session
            self.stop()  # free the old watches first: the limit counts them all
            flat, deep = s.watch_dirs()
            queues = s.queue_dirs()
            self.inodes = {p: _inode(p) for p in flat | deep | s.watched_dir_paths()}
            ranks = _ranks(s, deep)
            self.roots = [w for w in order(flat - queues, deep - queues, ranks)
                          if os.path.isdir(w.path)]  # fmt: skip
            self.observer = Observer()
            self.observer.start()
            self.scheduled = {}
            refused = [w for w in self.roots if not self._schedule(w)]
            tops = sorted(
                q for q in queues
                if os.path.isdir(q) and not any(q.startswith(d + "/") for d in deep)
            )  # fmt: skip
            self.reader = QueueReader(tops, self.queue_wake, max_depth=self.queue_depth - 1)
            self.reader.watch_all()
            self.reader.start()
            self.count = len(self.scheduled) + len(tops)
            self.check(refused)
            self.start_attrib()

    def stop(self) -> None:
        with self.lock:
            if self.observer is not None:
                self.observer.stop()
                self.observer.join(5)
                self.observer = None
            if self.reader is not None:
                self.reader.stop()
                self.reader = None
            if self.attrib is not None:
                self.attrib.stop()
                self.attrib = None

    def start_attrib(self) -> None:
        """The attribute fast path, only with watches to spare (never when degraded)."""
        if self.missing or self.attrib is not None:
            return
        dirs = [d for w in self.roots for d in wanted_dirs(w)]
        self.attrib = AttribReader(dirs, self.attr_now, self.attr_all)
        self.attrib.start()

    def _schedule(self, w: WatchDir) -> bool:
        """One watchdog root; False when the kernel refused it (the watch limit)."""
        try:
            self.scheduled[w.path] = self.observer.schedule(
                self.handler, w.path, recursive=w.recursive, event_filter=EVENT_FILTER
            )
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.ENOMEM):
                log.warning("cannot watch", path=w.path, error=exc.strerror)
            return False
        return True

    def check(self, refused: Iterable[WatchDir] = ()) -> None:
        """Ask the kernel what it watches; enter, stay in or leave degraded mode."""
        with self.lock:
            skip = [self.attrib.ino.fd] if self.attrib else []
            have = watched_inodes(exclude=skip)
            missing = list(refused) if have is None else unwatched(self.roots, have)
            queue_missing = sorted(self.reader.unwatched) if self.reader is not None else []
            missing += [WatchDir(ROLE_RANK[Role.QUEUE], q) for q in queue_missing]
            self.missing = sorted(set(missing))
            if not self.missing:
                if self.degraded is not None:
                    self.alert(self.degraded, True)
                    self.degraded, self.next_rescan = None, float("inf")
                return
            if self.degraded is None:
                self.degraded = self._degraded_alert()
                self.alert(self.degraded, False)
            else:
                log.warning("still degraded: directories not watched", missing=len(self.missing))
            self.next_rescan = time.monotonic() + self.rescan_interval

    def _degraded_alert(self) -> Finding:
        first = self.session.model_path(self.missing[0].path) or self.missing[0].path
        n = len(self.missing)
        return Finding(
            first,
            "MI-WATCH-DEGRADED",
            Severity.HIGH,
            f"inotify refused {n} watch(es) (fs.inotify.max_user_watches): {n} directories, "
            f"{first} the most urgent, are rescanned every {self.rescan_interval:g} s "
            "instead of watched; retrying",
            "inotify",
            None,
            str(n),
        )

    def retry(self) -> list[str]:
        """Add what the kernel refused, most urgent first, stopping at the first refusal;
        returns the directories newly watched (to be looked at once)."""
        added: list[str] = []
        with self.lock:
            if self.observer is None:
                return added
            for w in [m for m in self.missing if m.rank < ROLE_RANK[Role.QUEUE]]:
                old = self.scheduled.pop(w.path, None)
                if old is not None:
                    self.observer.unschedule(old)
                if not self._schedule(w):
                    break
                added.append(w.path)
                if w not in self.roots:
                    self.roots.append(w)
            if self.reader is not None:
                self.reader.retry()
            self.check()
            self.start_attrib()
        return added

    def replaced(self, host_paths: Iterable[str]) -> bool:
        """A watched directory was renamed, replaced or recreated: its watch follows the
        old inode, so the watches must be rebuilt."""
        return any(_inode(h) != self.inodes[h] for h in set(host_paths) & self.inodes.keys())

    def alive(self) -> bool:
        if not self.lock.acquire(blocking=False):  # being rebuilt: not dead
            return True
        try:
            observer_ok = self.observer is not None and self.observer.is_alive()
            return observer_ok and self.reader is not None and self.reader.is_alive()
        finally:
            self.lock.release()


def _ranks(s: Session, deep: Iterable[str]) -> dict[str, int]:
    """Directory (host path) -> the best rank of the targets in it (or below it, for a
    recursive root): binaries first, then configs, aliases, queues."""
    roots = sorted(deep)
    ranks: dict[str, int] = {}
    for target in s.plan.targets.values():
        rank = ROLE_RANK.get(target.role, 2)
        host = scanner.host_path(s.root, target.path)
        dirs = [host, os.path.dirname(host)]
        dirs += [r for r in roots if host.startswith(r.rstrip("/") + "/")]
        for d in dirs:
            ranks[d] = min(ranks.get(d, rank), rank)
    return ranks


def _inode(path: str) -> int | None:
    try:
        return os.lstat(path).st_ino
    except OSError:
        return None
