"""The verify fast path: is this path still exactly its baseline record?

A verify of 20,000 files spends its time on Python work per file, not on syscalls or
hashing. For the common answer ("nothing moved") this module goes straight from the
syscalls to the canonical record JSON (``model.record_text``: the bytes stored) and
compares it with the stored text: no ``FileRecord``, no JSON parsing. Anything unusual
(a race, a refused open, a record that does not compare equal) returns ``None`` or a
different text, and the caller takes the full path in ``scanner``/``snapshot``, which
decides and reports. So this module can only make a verify faster: it never decides that
something changed, and it says "unchanged" only when every attribute the full collector
records is equal.

The same safety rules as ``scanner``: ``lstat`` first, only a regular file is opened
(``O_NOFOLLOW|O_NONBLOCK``), its ``fstat`` must be the inode ``lstat`` described, and the
metadata recorded is the descriptor's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import struct
import threading
from collections.abc import Callable, Iterator

import blake3

from integrity import scanner
from integrity.model import flags_json, json_str, json_value
from integrity.model import record_text as _record_text

_READ = scanner._READ_FLAGS
#: S_IFMT -> the ftype member's JSON text (unknown types: the full collector)
_FTYPE = {kind: json_str(str(ftype)) for kind, ftype in scanner._FTYPE_OF.items()}


class Names:
    """uid/gid -> JSON text of the name (``null`` when unknown), cached for one run."""

    def __init__(self, names: scanner.IdNames) -> None:
        self._names = names
        self._users: dict[int, str] = {}
        self._groups: dict[int, str] = {}

    def user(self, uid: int) -> str:
        text = self._users.get(uid)
        if text is None:
            text = self._users[uid] = json_str(self._names.user(uid))
        return text

    def group(self, gid: int) -> str:
        text = self._groups.get(gid)
        if text is None:
            text = self._groups[gid] = json_str(self._names.group(gid))
        return text


def record_text(
    root: str, path: str, names: Names, *, content: bool, trusted: str | None = None
) -> str | None:
    """The canonical record JSON of ``path`` as it is now, without facts; None when the
    full collector must look (gone, refused, swapped, moving, unreadable...).

    ``content``: hash a regular file (False for roles whose content is never read).
    ``trusted`` (``verify --trust-ctime`` only): the stored record, facts cut out as this
    text has none; when the file's size, mtime, ctime and inode (and every other
    attribute) are still the stored ones, its stored digest is reused and the file is not
    read. A write changes the ctime, which
    only root can forge (clock or raw device): hence an option, never the default.
    """
    full = scanner.host_path(root, path)
    if scanner._escapes_root(root, full, names._names.parents):
        return None
    try:
        st = os.lstat(full)
    except OSError:
        return None
    mode = st.st_mode
    if stat.S_ISREG(mode) and content:
        if trusted is not None:
            unread = _unread(full, st, names, trusted)
            if unread == trusted:
                return unread
        return _regular(full, st, names)
    link = "null"
    if stat.S_ISLNK(mode):
        try:
            link = json_str(os.readlink(full))
        except OSError:
            return None
    return _text(st, names, "null", link, full)


def _unread(full: str, st: os.stat_result, names: Names, stored: str) -> str | None:
    """The record text with the stored digest and the live metadata, the file unopened."""
    start = stored.find('"digest":"blake3:')
    end = stored.find('"', start + 17) if start >= 0 else -1
    if end < 0:
        return None
    return _text(st, names, stored[start + 9 : end + 1], "null", full)


def _regular(full: str, st: os.stat_result, names: Names) -> str | None:
    """Hashed as ``scanner._collect_regular`` hashes: the inode lstat described, steady
    while read; metadata, xattrs and flags from the open descriptor."""
    try:
        fd = scanner._open_noatime(os.open, full, _READ)  # as the collector opens it
    except OSError:
        return None  # EACCES, a swap (ELOOP, ENXIO): the full path says which
    try:
        fst = os.fstat(fd)
        if not scanner._same_file(st, fst):
            return None
        digest, _, count = scanner._hash_fd(fd, fst.st_size, -1)
        after = os.fstat(fd)
        if not count == fst.st_size == after.st_size or after.st_mtime_ns != fst.st_mtime_ns:
            return None
        return _text(fst, names, f'"{digest}"', "null", fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def _text(
    st: os.stat_result, names: Names, digest: str, link: str, target: str | int
) -> str | None:
    """The canonical text (``model.record_text``); xattrs and flags read from ``target``,
    the path itself or the open descriptor, by the collector's own functions."""
    ftype = _FTYPE.get(stat.S_IFMT(st.st_mode))
    if ftype is None:
        return None
    pairs, caps, acl, selinux = scanner.read_xattrs(target)
    flags = scanner.read_flags(target, st.st_mode)
    return _record_text(
        json_str(acl), json_str(caps), st.st_ctime_ns, digest, "null", flags_json(flags),
        ftype, st.st_gid, names.group(st.st_gid), st.st_ino, link, stat.S_IMODE(st.st_mode),
        st.st_mtime_ns, st.st_nlink, names.user(st.st_uid), json_str(selinux), st.st_size,
        st.st_uid, json_value([list(p) for p in pairs]) if pairs else "[]",
    )  # fmt: skip


#: targets per message from the helper
CHUNK = 64
_EXTRA, _TEXTS = b"X", b"T"
_HEAD = struct.Struct("<cI")
#: the helper sends a text's BLAKE3 fingerprint, not the text: 16 bytes instead of ~600
#: per file in its memory file (a second preimage of 128 bits is out of anyone's reach)
FINGERPRINT = 16
_NO_TEXT = b"\0" * FINGERPRINT  # "no text": the full collector decides


def fingerprint(text: str) -> bytes:
    """What the helper sends for ``text``; compare with ``fingerprint(stored record)``."""
    return blake3.blake3(text.encode("utf-8", "surrogateescape")).digest(FINGERPRINT)


def same_text(made: str | bytes, record: str) -> bool:
    """A text made here, or the helper's fingerprint of one, against a stored record."""
    return made == record if isinstance(made, str) else made == fingerprint(record)


class Texts:
    """``record_text`` of ``items`` ((path, content), or None for "not wanted"), in order;
    for the helper's half, their fingerprints (compare with ``same_text``).

    With ``workers`` > 1 a forked helper process makes the second half of the texts while
    this one makes the first (the work is Python per file, which threads would serialise
    on the GIL), after running ``extra`` (the queue entries' check) for this process,
    which gets its result from ``extra_result``. The helper writes to an unlinked memory
    file, so it is never held back waiting for this process; a byte on a pipe tells that a
    message is complete. If the helper dies, this process makes what is missing itself.
    Forked only from a single-threaded process (``verify``), never from the daemon.
    """

    def __init__(
        self,
        root: str,
        items: list[tuple[str, bool] | None],
        names: Names,
        *,
        workers: int = 1,
        extra: Callable[[], object] | None = None,
    ) -> None:
        self._root, self._items, self._names = root, items, names
        self._stopped = False
        self._pid = 0
        self._split = len(items)
        self._pipe = self._mem = -1
        self._offset = 0
        self._extra: list[object] = []
        if workers > 1 and len(items) > 2 * CHUNK and threading.active_count() == 1:
            self._split = len(items) // 2  # before the fork: the helper starts there
            try:
                self._fork(extra)
            except OSError:  # no fork or memfd here (limits, seccomp's EPERM): one process
                self._split = len(items)

    @property
    def forked(self) -> bool:
        return self._pid != 0

    def stop(self) -> None:
        """No more texts are wanted (each comes back None): the helper is ended."""
        self._stopped = True
        self.close()

    def extra_result(self) -> list[object]:
        """``[result of extra]`` made by the helper, or ``[]``: make it yourself."""
        while not self._extra and self._pid and self._next() is not None:
            pass  # texts not asked for yet are skipped: the result is wanted now
        return self._extra

    def close(self) -> None:
        if self._pid:
            with contextlib.suppress(OSError):
                os.kill(self._pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            self._pid = 0
        for fd in (self._pipe, self._mem):
            if fd >= 0:
                os.close(fd)
        self._pipe = self._mem = -1

    def __iter__(self) -> Iterator[str | bytes | None]:
        for item in self._items[: self._split]:
            yield self._make(item)
        pending: list[bytes | None] = []
        for item in self._items[self._split :]:
            if not pending and self._pipe >= 0:
                pending = self._next_texts()
            yield pending.pop(0) if pending else self._make(item)

    def _make(self, item: tuple[str, bool] | None) -> str | None:
        if self._stopped or item is None:
            return None
        return record_text(self._root, item[0], self._names, content=item[1])

    def _fork(self, extra: Callable[[], object] | None) -> None:
        mem = os.memfd_create("mail-integrity-texts", os.MFD_CLOEXEC)
        try:
            read, write = os.pipe()
        except OSError:
            os.close(mem)
            raise
        try:
            pid = os.fork()
        except OSError:
            for fd in (mem, read, write):
                os.close(fd)
            raise
        if pid == 0:  # the helper: extra, then the second half, then out
            code = 0
            try:
                os.close(read)
                self._serve(mem, write, extra)
            except BaseException:  # the parent makes what is missing
                code = 1
            finally:
                os._exit(code)
        os.close(write)
        self._pid, self._pipe, self._mem = pid, read, mem

    def _serve(self, mem: int, ready: int, extra: Callable[[], object] | None) -> None:
        def send(kind: bytes, payload: bytes) -> None:
            os.write(mem, _HEAD.pack(kind, len(payload)) + payload)
            os.write(ready, b".")

        if extra is not None:
            import pickle

            send(_EXTRA, pickle.dumps(extra()))
        rest = self._items[self._split :]
        for start in range(0, len(rest), CHUNK):
            parts = []
            for item in rest[start : start + CHUNK]:
                text = self._make(item)
                parts.append(_NO_TEXT if text is None else fingerprint(text))
            send(_TEXTS, b"".join(parts))

    def _next_texts(self) -> list[bytes | None]:
        """The helper's next chunk of fingerprints; [] once it is gone (the rest is made
        here)."""
        while (payload := self._next()) is not None:
            kind, data = payload
            if kind == _TEXTS:
                return _texts_of(data)
        return []

    def _next(self) -> tuple[bytes, bytes] | None:
        """The helper's next message (an extra result is kept aside); None when it is
        gone, and then for good."""
        try:
            if os.read(self._pipe, 1) != b".":
                raise EOFError
            head = os.pread(self._mem, _HEAD.size, self._offset)
            kind, size = _HEAD.unpack(head)
            data = os.pread(self._mem, size, self._offset + _HEAD.size)
            if len(data) != size:
                raise EOFError
            self._offset += _HEAD.size + size
            if kind == _EXTRA:
                self._extra.append(_unpickle(data))
        except (OSError, EOFError, struct.error, ValueError):
            self.close()
            return None
        return kind, data


def _unpickle(data: bytes) -> object:
    """The helper's result (pickled by our own fork); ValueError if it cannot be read."""
    import pickle

    try:
        return pickle.loads(data)  # noqa: S301 - written by our own forked process
    except Exception as exc:
        raise ValueError("unreadable helper result") from exc


def _texts_of(data: bytes) -> list[bytes | None]:
    cut = (data[at : at + FINGERPRINT] for at in range(0, len(data), FINGERPRINT))
    return [None if f == _NO_TEXT else f for f in cut]
