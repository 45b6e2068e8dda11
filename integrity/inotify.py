"""Raw inotify for queue and spool directories: its own descriptor, batched reads.

Why not watchdog here: a mail flood makes 10,000 queue files a second, and watchdog turns
every kernel event into Python objects passed through three threads and an unbounded
queue, all sharing one inotify descriptor (and so one kernel queue) with the binaries and
configs; the overflow that follows loses set-uid alerts. This reader watches only the
queue trees, with a mask of what can expose mail (an entry created or moved in, an
attribute change: chmod, chown, setxattr, capabilities, ACLs; watchdog 7.1 leaves
IN_ATTRIB out of the mask it builds for such a filter), reads the events in one
``os.read`` per batch, and keeps only *which names in which directory* changed, bounded
per directory. Its overflow is its own: it is seen, and means "rescan the queues".

A collector: it produces plain values (``Pending``) for the daemon's queue lane.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import struct
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

IN_ATTRIB = 0x00000004
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

#: what can expose mail in a queue: a new entry, one moved in, an attribute change
QUEUE_MASK = (
    IN_CREATE | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF
    | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK
)  # fmt: skip
#: the attribute fast path for binaries, configs and aliases: chmod, chown, setxattr only
ATTRIB_MASK = IN_ATTRIB | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK
READ_SIZE = 256 * 1024  # about 8,000 events per read
MAX_NAMES = 4096  # names remembered per directory; beyond, the directory is rescanned
_HEADER = struct.Struct("iIII")


class Inotify:
    """One inotify descriptor (non-blocking, close-on-exec) through libc."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = [ctypes.c_int, ctypes.c_int]
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self.fd: int = fd

    def add(self, path: str, mask: int = QUEUE_MASK) -> int:
        """Watch descriptor; OSError(ENOSPC) when max_user_watches is reached."""
        wd = int(self._add(self.fd, os.fsencode(path), mask))
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        return wd

    def remove(self, wd: int) -> None:
        self._rm(self.fd, wd)  # EINVAL when the kernel already dropped it: fine

    def read(self) -> list[tuple[int, int, bytes]]:
        """(wd, mask, name) of every queued event; [] when none is pending."""
        try:
            buf = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return []
        return parse(buf)

    def close(self) -> None:
        os.close(self.fd)


def parse(buf: bytes) -> list[tuple[int, int, bytes]]:
    """struct inotify_event records -> (wd, mask, name without its NUL padding)."""
    out = []
    i, end, size = 0, len(buf), _HEADER.size
    while i + size <= end:
        wd, mask, _cookie, length = _HEADER.unpack_from(buf, i)
        i += size
        name = buf[i : i + length].rstrip(b"\0") if length else b""
        i += length
        out.append((wd, mask, name))
    return out


@dataclass(slots=True)
class Pending:
    """What changed in the queues since the lane last looked (host paths)."""

    names: dict[str, set[str]] = field(default_factory=dict)  # directory -> entry names
    whole: set[str] = field(default_factory=set)  # directories to rescan in full
    tops: set[str] = field(default_factory=set)  # queue directories whose own attributes moved
    overflows: int = 0
    replaced: bool = False  # a queue directory itself was removed or renamed

    def __bool__(self) -> bool:
        return bool(self.names or self.whole or self.tops or self.overflows or self.replaced)


class _Reader(threading.Thread):
    """A thread reading one inotify descriptor until ``stop``: a pipe wakes its poll."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.ino = Inotify()
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        self.stopping = False

    def handle(self, events: list[tuple[int, int, bytes]]) -> None:
        raise NotImplementedError

    def run(self) -> None:
        poller = select.poll()
        poller.register(self.ino.fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        while not self.stopping:
            ready = poller.poll()
            if any(fd == self._stop_r for fd, _ in ready):
                break
            events = self.ino.read()
            if events:
                self.handle(events)

    def stop(self) -> None:
        self.stopping = True
        os.write(self._stop_w, b"x")
        if self.is_alive():
            self.join(5)
        self.ino.close()
        os.close(self._stop_r)
        os.close(self._stop_w)


class QueueReader(_Reader):
    """Watches queue trees (to ``max_depth``) and collects what changed, per directory."""

    def __init__(
        self, tops: Iterable[str], wake: Callable[[], None], *, max_depth: int = 3
    ) -> None:
        super().__init__("queue-inotify")
        self.tops = sorted(set(tops))
        self.wake = wake
        self.max_depth = max_depth  # directories at this depth below a top are watched
        self._lock = threading.Lock()
        self._dirs: dict[int, tuple[str, int]] = {}  # wd -> (directory, depth)
        self._pending = Pending()
        self.unwatched: set[str] = set()  # directories the kernel refused (ENOSPC)
        self.events = 0  # kernel events read, for the heartbeat and the bench

    # -- watches --

    def watch_all(self) -> set[str]:
        """Add every queue tree; returns the directories that could not be watched."""
        for top in self.tops:
            self.watch_tree(top, 0)
        return set(self.unwatched)

    def watch_tree(self, path: str, depth: int) -> None:
        """Watch ``path`` and its directories down to ``max_depth`` (never following links)."""
        if not self._watch(path, depth):
            return
        if depth >= self.max_depth:
            return
        try:
            with os.scandir(path) as it:
                subdirs = [e.path for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            return
        for sub in sorted(subdirs):
            self.watch_tree(sub, depth + 1)

    def _watch(self, path: str, depth: int) -> bool:
        try:
            wd = self.ino.add(path)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.ENOMEM):
                with self._lock:
                    self.unwatched.add(path)
            return False  # ENOENT/ENOTDIR: gone or not a directory, nothing to watch
        with self._lock:
            self._dirs[wd] = (path, depth)
            self.unwatched.discard(path)
        return True

    def retry(self) -> set[str]:
        """Try the refused directories again; returns those still unwatched."""
        with self._lock:
            todo = sorted(self.unwatched)
        for path in todo:
            depth = self._depth(path)
            if depth is not None and os.path.isdir(path):
                self.watch_tree(path, depth)
                self._mark_whole(path)  # what happened while unwatched
            else:
                with self._lock:
                    self.unwatched.discard(path)
        with self._lock:
            return set(self.unwatched)

    def _depth(self, path: str) -> int | None:
        for top in self.tops:
            if path == top:
                return 0
            if path.startswith(top.rstrip("/") + "/"):
                return path[len(top.rstrip("/")) :].count("/")
        return None

    def watched(self) -> int:
        with self._lock:
            return len(self._dirs)

    # -- events --

    def take(self) -> Pending:
        """Everything collected so far (the queue lane calls this)."""
        with self._lock:
            out, self._pending = self._pending, Pending()
        return out

    def _mark_whole(self, directory: str) -> None:
        with self._lock:
            self._pending.whole.add(directory)
            self._pending.names.pop(directory, None)
        self.wake()

    def handle(self, events: list[tuple[int, int, bytes]]) -> None:
        """Fold a batch of kernel events into the pending set (bounded per directory)."""
        self.events += len(events)
        new_dirs: list[tuple[str, int]] = []
        with self._lock:
            pending = self._pending
            for wd, mask, raw in events:
                if mask & IN_Q_OVERFLOW:
                    pending.overflows += 1
                    pending.whole.update(self.tops)
                    continue
                where = self._dirs.get(wd)
                if where is None:
                    continue
                directory, depth = where
                if mask & IN_IGNORED:
                    del self._dirs[wd]
                    continue
                if not raw:  # the watched directory itself
                    if depth == 0 and mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                        pending.replaced = True
                    elif depth == 0 and mask & IN_ATTRIB:
                        pending.tops.add(directory)
                    continue
                name = os.fsdecode(raw)
                if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO) and depth < self.max_depth:
                    new_dirs.append((f"{directory}/{name}", depth + 1))
                if directory in pending.whole:
                    continue
                names = pending.names.setdefault(directory, set())
                names.add(name)
                if len(names) > MAX_NAMES:
                    del pending.names[directory]
                    pending.whole.add(directory)
        for path, depth in new_dirs:
            self.watch_tree(path, depth)
            with self._lock:
                self._pending.whole.add(path)  # entries made before its watch existed
        self.wake()


class AttribReader(_Reader):
    """IN_ATTRIB alone on the directories of binaries, configs and aliases: one thread from
    the kernel to the attribute lane.

    watchdog reports the same events too, but through three threads (reader, emitter,
    dispatcher), each a wait for the GIL and a CPU on a loaded host; this reader hands
    the path straight to the lane. Best effort on top of watchdog: a refused watch here
    (the watch limit) costs speed, not coverage, and an overflow costs nothing (watchdog's
    descriptor has its own queue and the daemon reacts to its overflow).
    """

    def __init__(
        self,
        dirs: Iterable[str],
        on_paths: Callable[[list[str]], None],
        on_overflow: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__("attrib-inotify")
        self.on_paths, self.on_overflow = on_paths, on_overflow
        self._dirs: dict[int, str] = {}
        for d in sorted(set(dirs)):
            try:
                self._dirs[self.ino.add(d, ATTRIB_MASK)] = d
            except OSError:
                continue  # limit reached or gone: watchdog still covers it

    def watched(self) -> int:
        return len(self._dirs)

    def handle(self, events: list[tuple[int, int, bytes]]) -> None:
        paths = []
        for wd, mask, raw in events:
            directory = self._dirs.get(wd)
            if mask & IN_Q_OVERFLOW:
                self.on_overflow()  # cheap insurance: re-check every attribute
            elif mask & IN_IGNORED:
                self._dirs.pop(wd, None)
            elif directory is not None and mask & IN_ATTRIB:
                paths.append(f"{directory}/{os.fsdecode(raw)}" if raw else directory)
        if paths:
            self.on_paths(paths)
