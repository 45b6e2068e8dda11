"""Collect: turn one path into a ``FileRecord`` without being fooled by the filesystem.

Everything here is defensive because the files belong to the adversary: symlinks are
recorded, never followed; FIFOs, sockets and devices are never opened; a regular file is
opened with ``O_NOFOLLOW|O_NONBLOCK`` and its ``fstat`` must match the earlier ``lstat``, so
we never hash something other than what we described. Per-file problems come back as
``ScanWarning`` values, never as exceptions.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import grp
import os
import pwd
import stat
import struct
import threading
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import TypeVar

import blake3

from integrity.model import FileRecord, FileType, ScanWarning

VANISHED = "vanished during scan"
DENIED = "permission denied"
CHANGED = "changed while being read; rescan"
SYMLINK_DIR = "is a symlink; not followed"
ESCAPES = "a parent directory is a symlink leading out of the root; not read"
OVERSIZE = "larger than the hash cap; not hashed"

_V = TypeVar("_V")

_CHUNK = 2**20  # one reusable 1 MiB buffer per thread
_THREADED_MIN = 8 * 2**20  # below this, blake3's thread pool costs more than it saves
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOATIME | os.O_CLOEXEC
_DIR_FLAGS = _READ_FLAGS | os.O_DIRECTORY
_ID_FILE_MAX = 64 * 2**20  # a passwd/group file larger than this is not a passwd file


@dataclass(frozen=True, slots=True)
class Collected:
    """What ``collect`` learned about a path that exists.

    ``warning`` is set when the record is usable but incomplete or in motion: the content
    was unreadable (``record.digest is None``, ``permission denied``) or the file changed
    while being hashed (the digest is of the bytes actually read; ``CHANGED``).
    ``text`` is the content read while hashing, only when asked for and small enough.
    """

    record: FileRecord
    text: bytes | None = None
    warning: ScanWarning | None = None


# --------------------------------------------------------------------------- id names


class IdNames:
    """uid/gid -> name, from ``<root>/etc/passwd`` and ``<root>/etc/group`` when present.

    With a root other than ``/`` the root's own files win (a chroot's uid 1000 is not the
    host's); when a file is absent, or the root is ``/``, the host's NSS (pwd/grp) answers.
    Results are cached for the life of the object. Unknown ids give ``None``.
    """

    def __init__(self, root: str = "/") -> None:
        self._root = root
        #: per-scan cache: does this parent directory resolve inside the root?
        self.parents: dict[str, bool] = {}
        self._tables: dict[str, list[list[str]] | None] = {}
        self._names: dict[tuple[str, int], str | None] = {}
        self._ids: dict[tuple[str, str], int | None] = {}

    def user(self, uid: int) -> str | None:
        return self._name("passwd", uid, lambda: pwd.getpwuid(uid).pw_name)

    def group(self, gid: int) -> str | None:
        return self._name("group", gid, lambda: grp.getgrgid(gid).gr_name)

    def uid_of(self, name: str) -> int | None:
        return self._id("passwd", name, lambda: pwd.getpwnam(name).pw_uid)

    def gid_of(self, name: str) -> int | None:
        return self._id("group", name, lambda: grp.getgrnam(name).gr_gid)

    def members(self, group: str) -> tuple[str, ...]:
        """Supplementary members listed in the group file (not users whose primary it is)."""
        rows = self._table("group")
        if rows is None:
            found = _ask_host(lambda: tuple(grp.getgrnam(group).gr_mem))
            return found or ()
        row = next((r for r in rows if r[0] == group), None)
        listed = row[3] if row is not None and len(row) > 3 else ""
        return tuple(m for m in listed.split(",") if m)

    def _name(self, table: str, ident: int, host: Callable[[], str]) -> str | None:
        """First matching line wins, as getpwuid does."""
        key = (table, ident)
        if key not in self._names:
            rows = self._table(table)
            self._names[key] = (
                _ask_host(host)
                if rows is None
                else next((r[0] for r in rows if r[2] == str(ident)), None)
            )
        return self._names[key]

    def _id(self, table: str, name: str, host: Callable[[], int]) -> int | None:
        key = (table, name)
        if key not in self._ids:
            rows = self._table(table)
            self._ids[key] = (
                _ask_host(host)
                if rows is None
                else next((int(r[2]) for r in rows if r[0] == name), None)
            )
        return self._ids[key]

    def _table(self, name: str) -> list[list[str]] | None:
        """Parsed rows of the root's file, or None to mean "ask the host"."""
        if name not in self._tables:
            full = host_path(self._root, f"/etc/{name}")
            if os.path.realpath(self._root) == "/" or not os.path.lexists(full):
                self._tables[name] = None
            elif _escapes_root(self._root, full):
                self._tables[name] = []  # the host's file is not the root's: know no one
            else:
                self._tables[name] = _parse_id_file(_read_small(full) or "")
        return self._tables[name]


def _ask_host(query: Callable[[], _V]) -> _V | None:
    """pwd/grp raise KeyError for unknown entries and OverflowError for ids out of range."""
    try:
        return query()
    except (KeyError, OverflowError):
        return None


def _parse_id_file(text: str) -> list[list[str]]:
    """Rows of a passwd/group file; comments, NIS ``+``/``-`` lines and bad ids skipped."""
    rows = []
    for line in text.splitlines():
        cols = line.split(":")
        if (
            len(cols) < 3
            or not cols[0]
            or cols[0][0] in "#+-"
            or not (cols[2].isascii() and cols[2].isdigit())
        ):
            continue
        rows.append(cols)
    return rows


def _read_small(full: str) -> str | None:
    """A small regular file's text (a passwd or group file), or None."""
    try:
        data = read_regular(full, _ID_FILE_MAX + 1)
    except (OSError, NotRegularError):
        return None
    return None if len(data) > _ID_FILE_MAX else data.decode("utf-8", "surrogateescape")


class NotRegularError(ValueError):
    """``read_regular`` met a FIFO, a device, a directory... and did not read it."""


def read_regular(full: str, limit: int, *, follow: bool = False) -> bytes:
    """At most ``limit`` bytes of a regular file: opened ``O_NONBLOCK`` (a FIFO never
    blocks us) and, unless ``follow``, ``O_NOFOLLOW``; anything but a regular file is
    refused before a byte is read. OSError when it cannot be opened or read."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(full, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularError(full)
        out = bytearray()
        # st_size + 1 at first, not the cap: os.read allocates the whole count asked for
        while len(out) < limit and (
            chunk := os.read(fd, min(limit - len(out), max(st.st_size + 1, 2**16)))
        ):
            out += chunk
        return bytes(out)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- collect


def host_path(root: str, path: str) -> str:
    """Where the model path ``/etc/mail/aliases`` lives on this host under ``root``."""
    return f"{root.rstrip('/')}/{path.lstrip('/')}" if root != "/" else f"/{path.lstrip('/')}"


def model_path(root: str, host: str) -> str | None:
    """``host_path`` reversed: the path inside ``root``, or None when it lies outside."""
    top = root.rstrip("/")
    if not top:
        return host
    if host == top:
        return "/"
    return host[len(top) :] if host.startswith(top + "/") else None


def collect(
    root: str,
    path: str,
    *,
    names: IdNames,
    read_content: bool = True,
    keep_text: bool = False,
    max_text: int = 16 * 2**20,
    lstat: Callable[[str], os.stat_result] = os.lstat,
    opener: Callable[..., int] = os.open,
    light: bool = False,
    xattrs: bool = False,
    user_max_hash: int | None = None,
) -> Collected | ScanWarning:
    """Describe ``path`` (absolute inside ``root``) as it is now.

    A bare ``ScanWarning`` means there is nothing trustworthy to record: the path vanished,
    was swapped between ``lstat`` and ``open``, could not be ``lstat``'ed (ELOOP, ENOTDIR,
    ENAMETOOLONG, EACCES on a parent...), or a parent symlink leads out of ``root``.
    Otherwise a ``Collected``; see its docstring for the partial cases.
    ``read_content=False`` never opens the file (queue files, mailboxes): digest None.
    ``light`` (with ``read_content=False``): no xattrs or flags, for permission-only checks;
    ``xattrs`` with ``light`` still reads the xattrs (a capability or ACL on a queue entry).
    ``user_max_hash``: for a file someone other than root can grow (not owned by root, or
    writable by a non-root group or by others), read at most that many bytes; a larger
    file (or one that grows past it while read) gets no digest and an ``OVERSIZE``
    warning, so a user growing his ``.forward`` cannot keep the hasher busy.
    """
    full = host_path(root, path)
    if _escapes_root(root, full, names.parents):
        return ScanWarning(path, ESCAPES)
    try:
        st = lstat(full)
    except OSError as exc:
        return _os_warning(path, exc)
    if stat.S_ISREG(st.st_mode) and read_content:
        max_hash = user_max_hash if user_max_hash is not None and user_growable(st) else None
        if max_hash is not None and st.st_size > max_hash:
            return Collected(_record(path, full, st, names), None, ScanWarning(path, OVERSIZE))
        return _collect_regular(
            path, full, st, names, opener, max_text if keep_text else -1, max_hash
        )
    bare = light and not read_content
    if stat.S_ISLNK(st.st_mode):
        return _with_link(path, full, st, names, light and not xattrs)
    return Collected(_record(path, full, st, names, light=bare, xattrs_only=xattrs))


def user_growable(st: os.stat_result) -> bool:
    """Whether someone other than root can write (grow) this file: owner, group or others."""
    group_writable = bool(st.st_mode & stat.S_IWGRP) and st.st_gid != 0
    return st.st_uid != 0 or group_writable or bool(st.st_mode & stat.S_IWOTH)


def _escapes_root(root: str, full: str, seen: dict[str, bool] | None = None) -> bool:
    """Under --root the kernel resolves an absolute symlink in a parent against the host.

    ``seen`` caches the answer per parent directory for one scan (``IdNames`` carries it):
    a queue of 30,000 files shares one parent, and realpath costs a syscall per component.
    """
    real_root = _realpath_root(root)
    if real_root == "/":
        return False
    directory = full.rpartition("/")[0] or "/"
    if seen is not None and directory in seen:
        return seen[directory]
    above, name = os.path.split(directory)
    if seen is not None and seen.get(above) is False and name not in ("", ".", ".."):
        # inside a directory known to stay in the root: only this one step can leave it
        escapes = os.path.islink(directory) and _leaves(real_root, directory)
    else:
        escapes = _leaves(real_root, directory)
    if seen is not None and len(seen) < 65536:
        seen[directory] = escapes
    return escapes


def _leaves(real_root: str, directory: str) -> bool:
    parent = os.path.realpath(directory)
    return os.path.commonpath([real_root, parent]) != real_root


@functools.lru_cache(maxsize=16)
def _realpath_root(root: str) -> str:
    return os.path.realpath(root)


def _os_warning(path: str, exc: OSError) -> ScanWarning:
    """The errno's message, never a traceback, never the host path."""
    if exc.errno == errno.ENOENT:
        return ScanWarning(path, VANISHED)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ScanWarning(path, DENIED)
    return ScanWarning(path, os.strerror(exc.errno) if exc.errno else type(exc).__name__)


_FTYPE_OF = {
    stat.S_IFREG: FileType.FILE,
    stat.S_IFDIR: FileType.DIR,
    stat.S_IFLNK: FileType.SYMLINK,
    stat.S_IFIFO: FileType.FIFO,
    stat.S_IFSOCK: FileType.SOCKET,
    stat.S_IFCHR: FileType.CHARDEV,
    stat.S_IFBLK: FileType.BLOCKDEV,
}


def _ftype(mode: int) -> FileType:
    return _FTYPE_OF.get(stat.S_IFMT(mode), FileType.UNKNOWN)


def _record(
    path: str,
    target: str | int,
    st: os.stat_result,
    names: IdNames,
    *,
    digest: str | None = None,
    link_target: str | None = None,
    light: bool = False,
    xattrs_only: bool = False,
) -> FileRecord:
    """Metadata, built once (xattrs and statx work on the path or the given fd).

    ``light``: owner, group and mode only, no xattr or flag syscalls (queue entries and
    mailboxes, checked by the thousand for their permissions); with ``xattrs_only`` the
    xattrs are read all the same (one listxattr, usually empty), never the flags.
    """
    xattrs: tuple[tuple[str, str], ...] = ()
    if light and xattrs_only:
        xattrs, caps, acl, selinux = read_xattrs(target)
        flags: frozenset[str] = frozenset()
    elif light:
        caps = selinux = None
        acl = _light_acl(target)  # an ACL can expose a queue file as surely as a mode
        flags = frozenset()
    else:
        xattrs, caps, acl, selinux = read_xattrs(target)
        flags = read_flags(target, st.st_mode)
    return FileRecord(
        path=path,
        ftype=_ftype(st.st_mode),
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        owner=names.user(st.st_uid),
        group=names.group(st.st_gid),
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
        inode=st.st_ino,
        nlink=st.st_nlink,
        digest=digest,
        link_target=link_target,
        xattrs=xattrs,
        caps=caps,
        acl=acl,
        selinux=selinux,
        flags=flags,
    )


def _light_acl(target: str | int) -> str | None:
    """The access ACL alone: one getxattr, usually ENODATA."""
    if isinstance(target, int):
        return None
    try:
        raw = os.getxattr(target, "system.posix_acl_access", follow_symlinks=False)
    except OSError:
        return None
    return decode_acl(raw)


def _with_link(
    path: str, full: str, st: os.stat_result, names: IdNames, light: bool
) -> Collected | ScanWarning:
    try:
        target = os.readlink(full)
    except OSError as exc:
        # lstat said symlink: ENOENT means it went away, EINVAL that it was replaced.
        gone = exc.errno == errno.ENOENT
        return _os_warning(path, exc) if gone else ScanWarning(path, CHANGED)
    return Collected(_record(path, full, st, names, link_target=target, light=light))


def _open_noatime(opener: Callable[..., int], full: str, flags: int) -> int:
    """O_NOATIME is refused (EPERM) to a non-owner without CAP_FOWNER: retry without it."""
    try:
        return opener(full, flags)
    except PermissionError as exc:
        if exc.errno != errno.EPERM or not flags & os.O_NOATIME:
            raise
        return opener(full, flags & ~os.O_NOATIME)


def _same_file(before: os.stat_result, after: os.stat_result) -> bool:
    return (
        stat.S_ISREG(after.st_mode)
        and after.st_ino == before.st_ino
        and after.st_dev == before.st_dev
    )


def _collect_regular(
    path: str,
    full: str,
    st: os.stat_result,
    names: IdNames,
    opener: Callable[..., int],
    max_text: int,
    max_hash: int | None = None,
) -> Collected | ScanWarning:
    """Hash the file lstat described, or say why not (max_text < 0: keep no text).

    ELOOP (now a symlink), ENXIO (now a socket) and an fstat that disagrees with the lstat
    all mean the path was swapped: nothing is hashed. Metadata, xattrs and flags then come
    from the open descriptor, so they describe the very inode hashed. Bytes read != fstat
    size, or an mtime that moved during the read, gives the digest of what was read plus
    ``CHANGED``. EACCES/EPERM: the lstat record without digest, plus ``DENIED``.
    """
    try:
        fd = _open_noatime(opener, full, _READ_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            return Collected(_record(path, full, st, names), None, ScanWarning(path, DENIED))
        swapped = exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR)
        return ScanWarning(path, CHANGED) if swapped else _os_warning(path, exc)
    try:
        fst = os.fstat(fd)
        if not _same_file(st, fst):
            return ScanWarning(path, CHANGED)
        keep = max_text >= 0 and fst.st_size <= max_text
        digest, text, count = _hash_fd(fd, fst.st_size, max_text if keep else -1, max_hash)
        after = os.fstat(fd)
        if max_hash is not None and count > max_hash:  # grew past the cap while read
            return Collected(_record(path, fd, after, names), None, ScanWarning(path, OVERSIZE))
        record = _record(path, fd, fst, names, digest=digest)
    except OSError as exc:
        return _os_warning(path, exc)
    finally:
        os.close(fd)
    steady = count == fst.st_size == after.st_size and after.st_mtime_ns == fst.st_mtime_ns
    warning = None if steady else ScanWarning(path, CHANGED)
    return Collected(record, text, warning)


_local = threading.local()


def _buffer() -> bytearray:
    """One 1 MiB buffer per thread, reused for every file: no allocation per read."""
    buf: bytearray | None = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = bytearray(_CHUNK)
    return buf


def _hash_fd(
    fd: int, size_hint: int, max_text: int, limit: int | None = None
) -> tuple[str, bytes | None, int]:
    """Digest, the bytes (when max_text >= 0 and they fit) and the count read.

    With ``limit``, reading stops once more than ``limit`` bytes were read.

    ``readinto`` a reused buffer, never ``update_mmap``: a file truncated under a mapping
    kills the process with SIGBUS.
    """
    threads = blake3.blake3.AUTO if size_hint > _THREADED_MIN else 1
    hasher = blake3.blake3(max_threads=threads)
    buf = _buffer()
    view = memoryview(buf)
    kept: bytearray | None = bytearray() if max_text >= 0 else None
    total = 0
    while (n := os.readv(fd, [buf])) > 0:
        hasher.update(view[:n])
        total += n
        if kept is not None:
            kept = kept + view[:n] if total <= max_text else None
        if limit is not None and total > limit:
            break
    return "blake3:" + hasher.hexdigest(), None if kept is None else bytes(kept), total


def hash_file(fd: int, size_hint: int) -> tuple[str, bytes | None]:
    """``("blake3:<hex>", None)`` for an open regular file, read from its current offset."""
    digest, _, _ = _hash_fd(fd, size_hint, -1)
    return digest, None


# --------------------------------------------------------------------------- xattrs


# linux/capability.h, numbers 0..40; unknown numbers decode as cap_<n>.
_CAP_NAMES = (  # noqa: SIM905 (a word list reads better than 41 quoted lines)
    "chown dac_override dac_read_search fowner fsetid kill setgid setuid setpcap "
    "linux_immutable net_bind_service net_broadcast net_admin net_raw ipc_lock ipc_owner "
    "sys_module sys_rawio sys_chroot sys_ptrace sys_pacct sys_admin sys_boot sys_nice "
    "sys_resource sys_time sys_tty_config mknod lease audit_write audit_control setfcap "
    "mac_override mac_admin syslog wake_alarm block_suspend audit_read perfmon bpf "
    "checkpoint_restore"
).split()
_ACL_TAGS = {0x01: "user:", 0x02: "user:", 0x04: "group:", 0x08: "group:", 0x10: "mask:"}
_ACL_TAGS[0x20] = "other:"
_ACL_WITH_ID = (0x02, 0x08)


def read_xattrs(
    target: str | int,
) -> tuple[tuple[tuple[str, str], ...], str | None, str | None, str | None]:
    """(sorted (name, hex) pairs, caps, acl, selinux) of a path itself (never a symlink's
    target) or of an open descriptor.

    Attributes the kernel will not give us (ENODATA after a race, EPERM on a symlink's
    ``user.*``, ENOTSUP) are left out rather than failing the record.
    """
    nofollow = isinstance(target, str)  # an fd takes no follow_symlinks argument
    try:
        keys = os.listxattr(target, follow_symlinks=not nofollow)
    except OSError:
        return (), None, None, None
    raw: dict[str, bytes] = {}
    for key in keys:
        try:
            raw[key] = os.getxattr(target, key, follow_symlinks=not nofollow)
        except OSError:
            continue
    cap = raw.get("security.capability")
    label = raw.get("security.selinux")
    return (
        tuple(sorted((k, v.hex()) for k, v in raw.items())),
        None if cap is None else decode_capability(cap),
        _acl_text(raw),
        None if label is None else decode_selinux(label),
    )


def _acl_text(raw: dict[str, bytes]) -> str | None:
    parts = [
        decode_acl(raw[key], prefix)
        for key, prefix in (
            ("system.posix_acl_access", ""),
            ("system.posix_acl_default", "default:"),
        )
        if key in raw
    ]
    return ",".join(p for p in parts if p) if parts else None


def _cap_name(n: int) -> str:
    return f"cap_{_CAP_NAMES[n]}" if n < len(_CAP_NAMES) else f"cap_{n}"


def decode_capability(raw: bytes) -> str:
    """``security.capability`` as ``cap_net_bind_service,cap_net_raw+ep``.

    Capabilities sharing the same flags are grouped (``+eip`` order, as libcap); groups are
    space-separated; a v3 (namespaced) capability gets `` [rootid=N]``. Anything that is
    not a vfs_cap_data of a known revision decodes to ``malformed`` (the hex stays in
    ``xattrs``), so a change in it is still seen.
    """
    if len(raw) < 4:
        return "malformed"
    (magic,) = struct.unpack_from("<I", raw)
    words = {0x01000000: 1, 0x02000000: 2, 0x03000000: 2}.get(magic & 0xFF000000)
    if words is None or len(raw) < 4 + 8 * words + (4 if magic >> 24 == 3 else 0):
        return "malformed"
    halves = struct.unpack_from(f"<{2 * words}I", raw, 4)
    permitted = sum(halves[2 * i] << (32 * i) for i in range(words))
    inheritable = sum(halves[2 * i + 1] << (32 * i) for i in range(words))
    text = _cap_groups(permitted, inheritable, bool(magic & 1))
    if magic >> 24 == 3:
        text += f" [rootid={struct.unpack_from('<I', raw, 4 + 8 * words)[0]}]"
    return text


def _cap_groups(permitted: int, inheritable: int, effective: bool) -> str:
    groups: dict[str, list[str]] = {}
    for n in range((permitted | inheritable).bit_length()):
        flags = "e" if effective else ""
        flags += "i" if inheritable >> n & 1 else ""
        flags += "p" if permitted >> n & 1 else ""
        if flags.strip("e"):
            groups.setdefault(flags, []).append(_cap_name(n))
    return " ".join(f"{','.join(caps)}+{flags}" for flags, caps in groups.items())


def decode_acl(raw: bytes, prefix: str = "") -> str:
    """``system.posix_acl_*`` as ``user::rwx,user:1000:rw-,...`` (ids kept numeric).

    Numeric ids because names depend on the passwd file of the moment; ``malformed`` for
    anything that is not version 2 with whole 8-byte entries.
    """
    if len(raw) < 4 or (len(raw) - 4) % 8 or struct.unpack_from("<I", raw)[0] != 2:
        return "malformed"
    out = []
    for tag, perm, ident in struct.iter_unpack("<HHI", raw[4:]):
        name = _ACL_TAGS.get(tag, f"tag{tag}:")
        who = str(ident) if tag in _ACL_WITH_ID else ""
        bits = "".join(c if perm & b else "-" for c, b in (("r", 4), ("w", 2), ("x", 1)))
        out.append(f"{prefix}{name}{who}:{bits}")
    return ",".join(out)


def decode_selinux(raw: bytes) -> str:
    """The label as text; trailing NULs stripped; odd bytes kept visible, not dropped."""
    return raw.rstrip(b"\0").decode("utf-8", "backslashreplace")


# --------------------------------------------------------------------------- flags


_STATX_IMMUTABLE = 0x10
_STATX_APPEND = 0x20
_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_NO_AUTOMOUNT = 0x800
_AT_EMPTY_PATH = 0x1000
_FS_IOC_GETFLAGS = 0x80086601


def read_flags(target: str | int, mode: int) -> frozenset[str]:
    """{"immutable", "append"} of a path (not followed) or an open descriptor.

    statx reads them without opening anything. A descriptor (always a regular file we
    opened to hash) answers the FS_IOC_GETFLAGS ioctl, the same inode flags for less.
    Without statx, fall back to the ioctl, but only on regular files and directories: on
    a device node the ioctl would go to the driver.
    """
    opened = isinstance(target, int) and (stat.S_ISREG(mode) or stat.S_ISDIR(mode))
    bits = _ioctl_regular_fd(target) if opened and isinstance(target, int) else None
    if bits is None:
        bits = _statx_attributes(target)
    if bits is None:
        bits = _ioctl_flags(target) if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else 0
    return frozenset(
        name
        for name, bit in (("immutable", _STATX_IMMUTABLE), ("append", _STATX_APPEND))
        if bits & bit
    )


@cache
def _statx_fn() -> Callable[..., int] | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).statx
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


def _statx_attributes(target: str | int) -> int | None:
    """stx_attributes of a path itself or of an fd; None when statx is unavailable, 0 on
    other errors (the flags are then unknown, and reported as none)."""
    fn = _statx_fn()
    if fn is None:
        return None
    buf: ctypes.Array[ctypes.c_char] | None = getattr(_local, "statx", None)
    if buf is None:
        buf = _local.statx = ctypes.create_string_buffer(256)  # one per thread, reused
    flags = _AT_SYMLINK_NOFOLLOW | _AT_NO_AUTOMOUNT
    if isinstance(target, int):
        dirfd, name, flags = target, b"", flags | _AT_EMPTY_PATH
    else:
        dirfd, name = _AT_FDCWD, os.fsencode(target)
    if fn(dirfd, name, flags, 0, buf) != 0:
        return None if ctypes.get_errno() == errno.ENOSYS else 0
    return int(struct.unpack_from("=Q", buf, 8)[0])


def _ioctl_regular_fd(fd: int) -> int | None:
    """FS_IOC_GETFLAGS on a descriptor we opened as a regular file (a quarter of the cost
    of statx through ctypes); None when the filesystem does not answer it."""
    out = array("i", [0])
    try:
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, out, True)
    except OSError:
        return None
    return int(out[0])


def _ioctl_flags(target: str | int) -> int:
    """FS_IOC_GETFLAGS on a regular file or directory (0 when refused: ENOTTY, EACCES...)."""
    if isinstance(target, int):
        return _ioctl_fd(target)
    try:
        fd = _open_noatime(os.open, target, _READ_FLAGS)
    except OSError:
        return 0
    try:
        return _ioctl_fd(fd)
    finally:
        os.close(fd)


def _ioctl_fd(fd: int) -> int:
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            return 0
        out = array("i", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, out, True)
        return int(out[0])
    except OSError:
        return 0


# --------------------------------------------------------------------------- walking


def list_dir(root: str, path: str) -> tuple[list[str], ScanWarning | None]:
    """Sorted entry names of a directory inside root; a symlinked directory is not followed.

    A vanished, unreadable or symlinked directory gives ``([], ScanWarning)``.
    """
    entries, warning = _scan(root, path)
    return [name for name, _ in entries], warning


def _scan(root: str, path: str) -> tuple[list[tuple[str, bool]], ScanWarning | None]:
    """(name, is_dir-without-following) pairs, read through an O_NOFOLLOW directory fd."""
    full = host_path(root, path)
    try:
        fd = _open_noatime(os.open, full, _DIR_FLAGS)
    except OSError as exc:
        return [], _dir_warning(path, full, exc)
    try:
        with os.scandir(fd) as it:
            entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    except OSError as exc:
        return [], _os_warning(path, exc)
    finally:
        os.close(fd)
    return sorted(entries), None


def _dir_warning(path: str, full: str, exc: OSError) -> ScanWarning:
    """O_DIRECTORY|O_NOFOLLOW on a symlink gives ENOTDIR (or ELOOP): say which it was."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return ScanWarning(path, SYMLINK_DIR if os.path.islink(full) else "not a directory")
    return _os_warning(path, exc)


def _child(parent: str, name: str) -> str:
    return f"{parent.rstrip('/')}/{name}"


def walk(root: str, path: str, *, max_depth: int = 32) -> Iterator[str | ScanWarning]:
    """Every path below ``path`` (not ``path`` itself), depth-first in name order.

    Symlinks are yielded, never entered. Children of ``path`` are depth 1; a directory at
    ``max_depth`` is yielded but not entered, with a warning (this also bounds bind-mount
    loops). Unreadable directories yield a ``ScanWarning`` and the walk goes on.
    """
    entries, warning = _scan(root, path)
    if warning is not None:
        yield warning
        return
    stack = [(path, 1, iter(entries))]
    while stack:
        parent, depth, it = stack[-1]
        entry = next(it, None)
        if entry is None:
            stack.pop()
            continue
        child = _child(parent, entry[0])
        yield child
        if not entry[1]:
            continue
        if depth >= max_depth:
            yield ScanWarning(child, f"deeper than {max_depth} levels; not entered")
            continue
        entries, warning = _scan(root, child)
        if warning is not None:
            yield warning
        else:
            stack.append((child, depth + 1, iter(entries)))


Entry = tuple[str, "os.stat_result | None"]


def walk_entries(root: str, path: str, *, max_depth: int = 32) -> Iterator[Entry | ScanWarning]:
    """``walk`` in directory order, each path with its ``lstat`` (None when that failed).

    For the thousands of entries of a mail queue: each directory is read as it is walked
    (no sorted list of a 30,000-file backlog in memory) and each entry is stat'ed relative
    to its open directory descriptor, so no path is looked up again. Symlinks are yielded,
    never entered; the same warnings as ``walk``.
    """
    full = host_path(root, path)
    try:
        fd = _open_noatime(os.open, full, _DIR_FLAGS)
    except OSError as exc:
        yield _dir_warning(path, full, exc)
        return
    yield from _entries_of(root, path, fd, 1, max_depth)


def _entries_of(
    root: str, path: str, fd: int, depth: int, max_depth: int
) -> Iterator[Entry | ScanWarning]:
    """Entries below the open directory ``fd`` (closed here, also when abandoned)."""
    try:
        with os.scandir(fd) as it:
            for entry in it:
                child = _child(path, entry.name)
                try:
                    st: os.stat_result | None = entry.stat(follow_symlinks=False)
                except OSError:
                    st = None  # vanished: the caller's collect says so
                yield child, st
                if st is None or not stat.S_ISDIR(st.st_mode):
                    continue
                if depth >= max_depth:
                    yield ScanWarning(child, f"deeper than {max_depth} levels; not entered")
                    continue
                full = host_path(root, child)
                try:
                    sub = _open_noatime(os.open, full, _DIR_FLAGS)
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        yield _dir_warning(child, full, exc)
                    continue
                yield from _entries_of(root, child, sub, depth + 1, max_depth)
    except OSError as exc:
        yield _os_warning(path, exc)
    finally:
        os.close(fd)
