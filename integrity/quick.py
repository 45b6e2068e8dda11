"""The verify fast path: is this path still exactly its baseline record?

A verify of 20,000 files spends its time on Python work per file, not on syscalls or
hashing. For the common answer ("nothing moved") this module goes straight from the
syscalls to the canonical record JSON (``store.record_json``'s bytes) and compares it with
the stored text: no ``FileRecord``, no JSON parsing. Anything unusual (a race, a refused
open, a record that does not compare equal) returns ``None`` or a different text, and the
caller takes the full path in ``scanner``/``snapshot``, which decides and reports. So this
module can only make a verify faster: it never decides that something changed, and it says
"unchanged" only when every attribute the full collector records is equal.

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
from json import dumps
from json.encoder import encode_basestring_ascii as _quote

import blake3

from integrity import scanner

_READ = scanner._READ_FLAGS
_SMALL = 2**20  # read in one call up to this size (a mail tree's files are small)
_IMMUTABLE, _APPEND = scanner._STATX_IMMUTABLE, scanner._STATX_APPEND
_FTYPE = {
    stat.S_IFREG: '"file"',
    stat.S_IFDIR: '"dir"',
    stat.S_IFLNK: '"symlink"',
    stat.S_IFIFO: '"fifo"',
    stat.S_IFSOCK: '"socket"',
    stat.S_IFCHR: '"chardev"',
    stat.S_IFBLK: '"blockdev"',
}
_FLAGS = {0: "[]", _APPEND: '["append"]', _IMMUTABLE: '["immutable"]'}
_FLAGS[_APPEND | _IMMUTABLE] = '["append","immutable"]'
#: the JSON texts of a record's acl, caps, selinux and xattrs members
_Extra = tuple[str, str, str, str]
_NO_XATTRS: _Extra = ("null", "null", "null", "[]")


class Names:
    """uid/gid -> JSON text of the name (``null`` when unknown), cached for one run."""

    def __init__(self, names: scanner.IdNames) -> None:
        self._names = names
        self._users: dict[int, str] = {}
        self._groups: dict[int, str] = {}

    def user(self, uid: int) -> str:
        text = self._users.get(uid)
        if text is None:
            text = self._users[uid] = _json_str(self._names.user(uid))
        return text

    def group(self, gid: int) -> str:
        text = self._groups.get(gid)
        if text is None:
            text = self._groups[gid] = _json_str(self._names.group(gid))
        return text


def _json_str(value: str | None) -> str:
    return "null" if value is None else str(_quote(value))


def record_text(
    root: str, path: str, names: Names, *, content: bool, trusted: str | None = None
) -> str | None:
    """The canonical record JSON of ``path`` as it is now, without facts; None when the
    full collector must look (gone, refused, swapped, moving, unreadable...).

    ``content``: hash a regular file (False for roles whose content is never read).
    ``trusted`` (``verify --trust-ctime`` only): the stored record; when the file's size,
    mtime, ctime and inode (and every other attribute) are still the stored ones, its
    stored digest is reused and the file is not read. A write changes the ctime, which
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
            link = str(_quote(os.readlink(full)))
        except OSError:
            return None
    extra = _xattrs(full)
    if extra is None:
        return None
    flags = scanner._statx_attributes(full)
    if flags is None:  # no statx here: the full collector knows the fallbacks
        return None
    return _text(st, names, "null", link, extra, flags)


def _unread(full: str, st: os.stat_result, names: Names, stored: str) -> str | None:
    """The record text with the stored digest and the live metadata, the file unopened."""
    start = stored.find('"digest":"blake3:')
    end = stored.find('"', start + 17) if start >= 0 else -1
    extra = _xattrs(full) if end > 0 else None
    flags = scanner._statx_attributes(full) if extra is not None else None
    if extra is None or flags is None:
        return None
    return _text(st, names, stored[start + 9 : end + 1], "null", extra, flags)


def _regular(full: str, st: os.stat_result, names: Names) -> str | None:
    try:
        fd = os.open(full, _READ)
    except OSError:
        return None  # EPERM for O_NOATIME, EACCES, a swap (ELOOP, ENXIO): the full path
    try:
        fst = os.fstat(fd)
        if fst.st_ino != st.st_ino or fst.st_dev != st.st_dev or not stat.S_ISREG(fst.st_mode):
            return None
        size = fst.st_size
        if size < _SMALL:  # one read into the thread's reused buffer: no page faults
            buf = scanner._buffer()
            count = os.readv(fd, [buf])
            if count != size:
                return None
            digest = blake3.blake3(memoryview(buf)[:count]).hexdigest()
        else:
            prefixed, _, count = scanner._hash_fd(fd, size, -1)
            if count != size:
                return None
            digest = prefixed.removeprefix("blake3:")
        after = os.fstat(fd)
        if after.st_size != size or after.st_mtime_ns != fst.st_mtime_ns:
            return None
        extra = _xattrs(fd)
        if extra is None:
            return None
        flags = scanner._ioctl_regular_fd(fd)  # what scanner.read_flags reads first
        if flags is None:  # ENOTTY, EOPNOTSUPP: the filesystem may still answer statx
            flags = scanner._statx_attributes(fd)
            if flags is None:
                return None
    except OSError:
        return None
    finally:
        os.close(fd)
    return _text(fst, names, f'"blake3:{digest}"', "null", extra, flags)


def _xattrs(target: str | int) -> _Extra | None:
    """The JSON texts of the acl, caps, selinux and xattrs members; None on error.

    The common case (no extended attribute at all) is one syscall and a constant.
    """
    try:
        keys = (
            os.listxattr(target, follow_symlinks=False)
            if isinstance(target, str)
            else (os.listxattr(target))
        )
    except OSError:
        return None
    if not keys:
        return _NO_XATTRS
    pairs, caps, acl, selinux = scanner.read_xattrs(target)
    xattrs = dumps([list(p) for p in pairs], separators=(",", ":"))
    return dumps(acl), dumps(caps), dumps(selinux), xattrs


def _text(
    st: os.stat_result, names: Names, digest: str, link: str, extra: _Extra, flags: int
) -> str | None:
    ftype = _FTYPE.get(stat.S_IFMT(st.st_mode))
    if ftype is None:
        return None
    acl, caps, selinux, xattrs = extra
    return (
        f'{{"acl":{acl},"caps":{caps},"ctime_ns":{st.st_ctime_ns},"digest":{digest},'
        f'"facts":null,"flags":{_FLAGS[flags & (_IMMUTABLE | _APPEND)]},"ftype":{ftype},'
        f'"gid":{st.st_gid},"group":{names.group(st.st_gid)},"inode":{st.st_ino},'
        f'"link_target":{link},"mode":{stat.S_IMODE(st.st_mode)},'
        f'"mtime_ns":{st.st_mtime_ns},"nlink":{st.st_nlink},"owner":{names.user(st.st_uid)},'
        f'"selinux":{selinux},"size":{st.st_size},"uid":{st.st_uid},"xattrs":{xattrs}}}'
    )


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
