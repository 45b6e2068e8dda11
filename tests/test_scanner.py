"""The collector on real files: symlinks, specials, races, permissions, xattrs, flags."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrity import scanner
from integrity.model import FileType, ScanWarning
from integrity.scanner import (
    CHANGED,
    DENIED,
    ESCAPES,
    VANISHED,
    Collected,
    IdNames,
    collect,
    decode_acl,
    decode_capability,
    decode_selinux,
    hash_file,
    list_dir,
    walk,
)

REPO = Path(__file__).resolve().parents[1]
NAMES = IdNames()


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def alarm() -> Iterator[None]:
    """Turn a hang (a FIFO opened blocking) into a test failure after 5 s."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError("collect blocked")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


class Opens:
    """A recording opener: the real os.open, plus an optional action just before it."""

    def __init__(self, before: Callable[[], None] | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.before = before

    def __call__(self, path: str, flags: int, *args: Any) -> int:
        self.calls.append((path, flags))
        if self.before is not None:
            self.before()
            self.before = None
        return os.open(path, flags, *args)


def got(result: Collected | ScanWarning) -> Collected:
    assert isinstance(result, Collected), result
    return result


def run(root: Path, path: str, **kw: Any) -> Collected | ScanWarning:
    return collect(str(root), path, names=NAMES, **kw)


def b3(data: bytes) -> str:
    return "blake3:" + blake3.blake3(data).hexdigest()


def run_cmd(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


# --------------------------------------------------------------------------- regular files


@pytest.mark.parametrize("size", [0, 1, 4096, 2**20 + 7, 9 * 2**20])
def test_digest_is_blake3_of_the_bytes(tmp_path: Path, size: int) -> None:
    """A regular file's digest is blake3 of its bytes, below and above the threaded size."""
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    rec = got(run(tmp_path, "/f")).record
    assert rec.digest == b3(data)
    assert (rec.ftype, rec.size) == (FileType.FILE, size)


@pytest.mark.parametrize(
    ("keep", "max_text", "size", "kept"),
    [
        (True, 100, 100, True),
        (True, 100, 101, False),
        (False, 100, 10, False),
        (True, 16 * 2**20, 3 * 2**20, True),
    ],
)
def test_text_is_returned_only_when_asked_and_small(
    tmp_path: Path, keep: bool, max_text: int, size: int, kept: bool
) -> None:
    """keep_text returns the very bytes hashed, only for files up to max_text."""
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    res = got(run(tmp_path, "/f", keep_text=keep, max_text=max_text))
    assert res.text == (data if kept else None)
    assert res.record.digest == b3(data)


def test_metadata_is_recorded(tmp_path: Path) -> None:
    """Mode keeps all 12 bits; uid, gid, size, times, inode and link count come from stat."""
    f = tmp_path / "sendmail"
    f.write_bytes(b"x" * 10)
    os.chown(f, 4242, 4343)
    os.chmod(f, 0o6755)
    os.utime(f, ns=(1_000_000_123, 2_000_000_456))
    os.link(f, tmp_path / "hard")
    rec = got(run(tmp_path, "/sendmail")).record
    st_ = os.lstat(f)
    assert (rec.mode, rec.uid, rec.gid, rec.size) == (0o6755, 4242, 4343, 10)
    assert (rec.mtime_ns, rec.ctime_ns, rec.inode, rec.nlink) == (
        2_000_000_456,
        st_.st_ctime_ns,
        st_.st_ino,
        2,
    )
    assert rec.path == "/sendmail"


def test_read_content_false_never_opens(tmp_path: Path) -> None:
    """Queue files and mailboxes: metadata only, the file is never opened."""
    (tmp_path / "qfABC").write_bytes(b"private mail")
    opens = Opens()
    res = got(run(tmp_path, "/qfABC", read_content=False, keep_text=True, opener=opens))
    assert opens.calls == []
    assert (res.record.digest, res.text, res.record.size) == (None, None, 12)


def test_open_uses_the_safe_flags(tmp_path: Path) -> None:
    """The content is opened read-only, no-follow, non-blocking, no-atime, close-on-exec."""
    (tmp_path / "f").write_bytes(b"x")
    opens = Opens()
    got(run(tmp_path, "/f", opener=opens))
    want = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOATIME | os.O_CLOEXEC
    assert [(p, fl & want, fl & os.O_ACCMODE) for p, fl in opens.calls] == [
        (str(tmp_path / "f"), want, os.O_RDONLY)
    ]


def test_noatime_refusal_is_retried_without_it(tmp_path: Path) -> None:
    """EPERM for O_NOATIME (non-owner) leads to a second open without the flag."""
    (tmp_path / "f").write_bytes(b"abc")
    flags_seen: list[int] = []

    def picky(path: str, flags: int) -> int:
        flags_seen.append(flags)
        if flags & os.O_NOATIME:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        return os.open(path, flags)

    assert got(run(tmp_path, "/f", opener=picky)).record.digest == b3(b"abc")
    assert [bool(f & os.O_NOATIME) for f in flags_seen] == [True, False]


def test_hash_file_helper_hashes_an_open_fd(tmp_path: Path) -> None:
    """hash_file gives the tagged blake3 digest of what the descriptor reads."""
    (tmp_path / "f").write_bytes(b"hello")
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        assert hash_file(fd, 5) == (b3(b"hello"), None)
    finally:
        os.close(fd)


def test_size_disagreeing_with_bytes_read_is_flagged() -> None:
    """A file whose bytes read differ from its stat size (procfs: size 0) gets CHANGED."""
    res = got(collect("/", "/proc/self/status", names=NAMES, keep_text=True))
    assert res.warning == ScanWarning("/proc/self/status", CHANGED)
    assert res.text is not None and b"Pid:" in res.text
    assert res.record.digest == b3(res.text)


def test_sparse_gigabyte_hashes_in_bounded_memory(tmp_path: Path) -> None:
    """A 1 GiB sparse file hashes by streaming: Python memory stays far below its size."""
    f = tmp_path / "sparse"
    with f.open("wb") as fh:
        fh.truncate(2**30)
    tracemalloc.start()
    try:
        rec = got(run(tmp_path, "/sparse")).record
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    ref = blake3.blake3(max_threads=blake3.blake3.AUTO)
    zeros = bytes(2**20)
    for _ in range(1024):
        ref.update(zeros)
    assert rec.digest == "blake3:" + ref.hexdigest()
    assert peak < 16 * 2**20


# --------------------------------------------------------------------------- links, specials


@pytest.mark.parametrize("target", ["real", "missing", "fifo", "/etc/passwd", "../../x"])
def test_symlink_is_recorded_never_followed(tmp_path: Path, alarm: None, target: str) -> None:
    """A symlink's target is recorded, nothing is opened, there is no digest."""
    (tmp_path / "real").write_bytes(b"data")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to(target)
    opens = Opens()
    rec = got(run(tmp_path, "/link", opener=opens)).record
    assert (rec.ftype, rec.link_target, rec.digest) == (FileType.SYMLINK, target, None)
    assert opens.calls == []


def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _socket(p: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    s.close()


def _chardev(p: Path) -> None:
    os.mknod(p, stat.S_IFCHR | 0o666, os.makedev(1, 3))


def _blockdev(p: Path) -> None:
    os.mknod(p, stat.S_IFBLK | 0o660, os.makedev(7, 0))


@pytest.mark.parametrize(
    ("make", "ftype"),
    [
        (_fifo, FileType.FIFO),
        (_socket, FileType.SOCKET),
        (_chardev, FileType.CHARDEV),
        (_blockdev, FileType.BLOCKDEV),
    ],
)
def test_special_files_are_never_opened(
    tmp_path: Path, alarm: None, make: Callable[[Path], None], ftype: FileType
) -> None:
    """FIFOs, sockets and device nodes: type, mode and owner only; never opened."""
    try:
        make(tmp_path / "s")
    except PermissionError as exc:
        pytest.skip(f"cannot create this node here: {exc}")
    os.chmod(tmp_path / "s", 0o640)
    opens = Opens()
    rec = got(run(tmp_path, "/s", opener=opens, keep_text=True)).record
    assert (rec.ftype, rec.mode, rec.digest, rec.owner) == (ftype, 0o640, None, "root")
    assert opens.calls == []


def test_fifo_with_the_real_opener_does_not_hang(tmp_path: Path, alarm: None) -> None:
    """A FIFO with no writer returns at once with the default opener."""
    os.mkfifo(tmp_path / "pipe")
    assert got(run(tmp_path, "/pipe")).record.ftype == FileType.FIFO


# --------------------------------------------------------------------------- errors and races


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (errno.ENOENT, VANISHED),
        (errno.EACCES, DENIED),
        (errno.ELOOP, os.strerror(errno.ELOOP)),
        (errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG)),
        (errno.ENOTDIR, os.strerror(errno.ENOTDIR)),
        (errno.EIO, os.strerror(errno.EIO)),
    ],
)
def test_lstat_errors_become_warnings(tmp_path: Path, code: int, message: str) -> None:
    """Any lstat failure is a ScanWarning with the errno's message, never an exception."""

    def failing(path: str) -> os.stat_result:
        raise OSError(code, os.strerror(code), path)

    assert run(tmp_path, "/x", lstat=failing) == ScanWarning("/x", message)


def _loop(root: Path) -> str:
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    return "/a/x"


def _notdir(root: Path) -> str:
    (root / "file").write_bytes(b"")
    return "/file/child"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: "/never-existed", VANISHED),
        (_loop, os.strerror(errno.ELOOP)),
        (_notdir, os.strerror(errno.ENOTDIR)),
        (lambda root: "/" + "n" * 300, os.strerror(errno.ENAMETOOLONG)),
    ],
)
def test_real_path_errors_become_warnings(
    tmp_path: Path, make: Callable[[Path], str], message: str
) -> None:
    """Missing paths, symlink loops, file-as-dir and long names give warnings on real files."""
    path = make(tmp_path)
    assert run(tmp_path, path) == ScanWarning(path, message)


def _swap_symlink(f: Path) -> None:
    (f.parent / "other").write_bytes(b"other")
    (f.parent / "tmp").symlink_to("other")
    os.replace(f.parent / "tmp", f)


def _swap_file(f: Path) -> None:
    (f.parent / "tmp").write_bytes(b"same size!")
    os.replace(f.parent / "tmp", f)


def _swap_fifo(f: Path) -> None:
    f.unlink()
    os.mkfifo(f)


def _swap_socket(f: Path) -> None:
    f.unlink()
    _socket(f)


def _swap_dir(f: Path) -> None:
    f.unlink()
    f.mkdir()


@pytest.mark.parametrize(
    ("swap", "message"),
    [
        (_swap_symlink, CHANGED),
        (_swap_file, CHANGED),
        (_swap_fifo, CHANGED),
        (_swap_dir, CHANGED),
        (_swap_socket, CHANGED),
        (lambda f: f.unlink(), VANISHED),
    ],
)
def test_swap_between_lstat_and_open_hashes_nothing(
    tmp_path: Path, alarm: None, swap: Callable[[Path], None], message: str
) -> None:
    """A path replaced after lstat yields only a warning: nothing else is hashed."""
    f = tmp_path / "aliases"
    f.write_bytes(b"root: admin")
    opens = Opens(before=lambda: swap(f))
    assert run(tmp_path, "/aliases", opener=opens) == ScanWarning("/aliases", message)


@pytest.mark.parametrize(("now", "message"), [("file", CHANGED), ("missing", VANISHED)])
def test_symlink_replaced_before_readlink_warns(tmp_path: Path, now: str, message: str) -> None:
    """lstat saw a symlink but readlink finds a file (or nothing): a warning, no record."""
    (tmp_path / "link").symlink_to("elsewhere")
    link_stat = os.lstat(tmp_path / "link")
    if now == "file":
        (tmp_path / "p").write_bytes(b"")

    def stale(path: str) -> os.stat_result:
        return link_stat

    assert run(tmp_path, "/p", lstat=stale) == ScanWarning("/p", message)


def as_nobody(root: Path, path: str) -> dict[str, Any]:
    """collect() in a forked child running as nobody (the interpreter lives under /root)."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.close(rfd)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            res = collect(str(root), path, names=IdNames())
            if isinstance(res, Collected):
                w = res.warning.message if res.warning else None
                out = {"digest": res.record.digest, "owner": res.record.owner, "warning": w}
            else:
                out = {"warning": res.message}
            os.write(wfd, json.dumps(out).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return dict(json.loads(data))


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory an unprivileged user can traverse (pytest's tmp_path is root-only)."""
    d = Path(tempfile.mkdtemp(prefix="scanner-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to nobody")
@pytest.mark.parametrize(
    ("dir_mode", "file_mode", "expect"),
    [
        (0o755, 0o600, {"digest": None, "owner": "root", "warning": DENIED}),
        (0o700, 0o644, {"warning": DENIED}),
        (0o755, 0o644, {"digest": b3(b"secret=1"), "owner": "root", "warning": None}),
    ],
)
def test_unprivileged_scan_degrades_to_warnings(
    shared_dir: Path, dir_mode: int, file_mode: int, expect: dict[str, Any]
) -> None:
    """As nobody: unreadable content -> record without digest; untraversable -> warning."""
    (shared_dir / "d").mkdir(mode=dir_mode)
    (shared_dir / "d").chmod(dir_mode)
    f = shared_dir / "d" / "f"
    f.write_bytes(b"secret=1")
    f.chmod(file_mode)
    out = as_nobody(shared_dir, "/d/f")
    assert out == expect
    assert "secret=1" not in json.dumps(out)


# --------------------------------------------------------------------------- xattrs


def test_user_xattrs_are_recorded_sorted_as_hex(tmp_path: Path) -> None:
    """Extended attributes appear as sorted (name, hex) pairs."""
    f = tmp_path / "f"
    f.write_bytes(b"")
    os.setxattr(f, "user.zeta", b"\x00\xff")
    os.setxattr(f, "user.alpha", b"hi")
    rec = got(run(tmp_path, "/f")).record
    assert rec.xattrs == (("user.alpha", "6869"), ("user.zeta", "00ff"))
    assert (rec.caps, rec.acl, rec.selinux) == (None, None, None)


def test_real_capability_is_decoded(tmp_path: Path) -> None:
    """setcap on a copy of /bin/true decodes to libcap-style text."""
    if shutil.which("setcap") is None:
        pytest.skip("setcap not installed (apt-get install libcap2-bin)")
    f = tmp_path / "true"
    shutil.copy("/bin/true", f)
    proc = run_cmd("setcap", "cap_net_bind_service,cap_net_raw+ep", str(f))
    if proc.returncode:
        pytest.skip(f"filesystem refused setcap: {proc.stderr.strip()}")
    rec = got(run(tmp_path, "/true")).record
    assert rec.caps == "cap_net_bind_service,cap_net_raw+ep"
    assert [name for name, _ in rec.xattrs] == ["security.capability"]


def _cap(magic: int, *words: int) -> bytes:
    return struct.pack(f"<I{len(words)}I", magic, *words)


_BIT = 1 << 10 | 1 << 13  # net_bind_service, net_raw


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (_cap(0x02000001, _BIT, 0, 0, 0), "cap_net_bind_service,cap_net_raw+ep"),
        (_cap(0x02000000, _BIT, 0, 0, 0), "cap_net_bind_service,cap_net_raw+p"),
        (_cap(0x02000000, 0, 1 << 5, 0, 0), "cap_kill+i"),
        (_cap(0x02000001, 1, 1, 0, 0), "cap_chown+eip"),
        (_cap(0x02000001, 1 | 1 << 21, 1, 0, 0), "cap_chown+eip cap_sys_admin+ep"),
        (_cap(0x02000001, 0, 0, 1 << 8, 0), "cap_checkpoint_restore+ep"),
        (_cap(0x02000001, 0, 0, 1 << 13, 0), "cap_45+ep"),
        (_cap(0x01000001, 1 << 7, 0), "cap_setuid+ep"),
        (
            _cap(0x03000001, _BIT, 0, 0, 0, 1000),
            "cap_net_bind_service,cap_net_raw+ep [rootid=1000]",
        ),
        (_cap(0x02000001, 0, 0, 0, 0), ""),
        (_cap(0x03000001, _BIT, 0, 0, 0), "malformed"),
        (_cap(0x02000001, _BIT), "malformed"),
        (_cap(0x09000001, _BIT, 0, 0, 0), "malformed"),
        (b"\x01", "malformed"),
    ],
)
def test_decode_capability(raw: bytes, text: str) -> None:
    """vfs_cap_data revisions 1-3 decode to grouped +eip text; junk decodes to 'malformed'."""
    assert decode_capability(raw) == text


def _acl(*entries: tuple[int, int, int]) -> bytes:
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


_NOID = 0xFFFFFFFF


@pytest.mark.parametrize(
    ("raw", "prefix", "text"),
    [
        (
            _acl((1, 7, _NOID), (2, 6, 1000), (4, 5, _NOID), (0x10, 7, _NOID), (0x20, 4, _NOID)),
            "",
            "user::rwx,user:1000:rw-,group::r-x,mask::rwx,other::r--",
        ),
        (_acl((8, 1, 50)), "default:", "default:group:50:--x"),
        (_acl((0x40, 0, 0)), "", "tag64::---"),
        (b"\x02\x00\x00\x00\x01", "", "malformed"),
        (struct.pack("<I", 1), "", "malformed"),
    ],
)
def test_decode_acl(raw: bytes, prefix: str, text: str) -> None:
    """POSIX ACL xattrs decode to getfacl-like text with numeric ids."""
    assert decode_acl(raw, prefix) == text


@given(st.binary(max_size=80))
def test_decoders_never_raise(raw: bytes) -> None:
    """Any bytes at all decode to some text: a hostile xattr cannot crash a scan."""
    assert isinstance(decode_capability(raw), str)
    assert isinstance(decode_acl(raw), str)
    assert isinstance(decode_selinux(raw), str)


def test_real_acls_are_decoded(tmp_path: Path) -> None:
    """setfacl access and default entries come back as one getfacl-like string."""
    if shutil.which("setfacl") is None:
        pytest.skip("setfacl not installed (apt-get install acl)")
    d = tmp_path / "d"
    d.mkdir(mode=0o750)
    d.chmod(0o750)
    proc = run_cmd("setfacl", "-m", "u:1000:rw", "-d", "-m", "g:50:rx", str(d))
    if proc.returncode:
        pytest.skip(f"filesystem refused setfacl: {proc.stderr.strip()}")
    rec = got(run(tmp_path, "/d")).record
    assert rec.acl == (
        "user::rwx,user:1000:rw-,group::r-x,mask::rwx,other::---,"
        "default:user::rwx,default:group::r-x,default:group:50:r-x,"
        "default:mask::r-x,default:other::---"
    )


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"system_u:object_r:etc_t:s0\x00", "system_u:object_r:etc_t:s0"),
        (b"system_u:object_r:etc_t:s0", "system_u:object_r:etc_t:s0"),
        (b"odd\xff", "odd\\xff"),
    ],
)
def test_decode_selinux(raw: bytes, text: str) -> None:
    """SELinux labels lose their trailing NUL; undecodable bytes stay visible."""
    assert decode_selinux(raw) == text


def test_real_selinux_label_is_recorded(tmp_path: Path) -> None:
    """A security.selinux xattr on disk becomes the record's label."""
    f = tmp_path / "f"
    f.write_bytes(b"")
    try:
        os.setxattr(f, "security.selinux", b"system_u:object_r:etc_mail_t:s0\0")
    except OSError as exc:
        pytest.skip(f"kernel refused security.selinux: {exc}")
    assert got(run(tmp_path, "/f")).record.selinux == "system_u:object_r:etc_mail_t:s0"


def test_symlink_xattr_errors_are_ignored(tmp_path: Path) -> None:
    """A symlink's xattrs are read from the link itself and refusals do not fail it."""
    (tmp_path / "target").write_bytes(b"")
    os.setxattr(tmp_path / "target", "user.x", b"1")
    (tmp_path / "link").symlink_to("target")
    assert got(run(tmp_path, "/link")).record.xattrs == ()


# --------------------------------------------------------------------------- flags


@pytest.fixture
def chattr(tmp_path: Path) -> Iterator[Callable[[str, Path], None]]:
    """chattr that undoes itself, skipping where the filesystem refuses."""
    done: list[Path] = []

    def apply(flag: str, path: Path) -> None:
        proc = run_cmd("chattr", flag, str(path))
        if proc.returncode:
            pytest.skip(f"filesystem refused chattr {flag}: {proc.stderr.strip()}")
        done.append(path)

    yield apply
    for p in done:
        run_cmd("chattr", "-i", "-a", str(p))


@pytest.mark.parametrize(
    ("flags", "expect"),
    [("+i", {"immutable"}), ("+a", {"append"}), ("+ia", {"immutable", "append"})],
)
@pytest.mark.parametrize("kind", ["file", "dir"])
def test_immutable_and_append_flags(
    tmp_path: Path, chattr: Callable[[str, Path], None], flags: str, expect: set[str], kind: str
) -> None:
    """chattr +i/+a show up as flags, through statx and through the ioctl fallback."""
    p = tmp_path / "p"
    p.mkdir() if kind == "dir" else p.write_bytes(b"x")
    chattr(flags, p)
    assert got(run(tmp_path, "/p")).record.flags == frozenset(expect)
    statx_bits = scanner._statx_attributes(str(p))
    assert statx_bits is not None
    assert scanner._ioctl_flags(str(p)) & 0x30 == statx_bits & 0x30 != 0


def test_no_flags_on_plain_files(tmp_path: Path) -> None:
    """An ordinary file has no flags."""
    (tmp_path / "f").write_bytes(b"")
    assert got(run(tmp_path, "/f")).record.flags == frozenset()


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("raw", [b"caf\xe9", b"\xff\xfe.cf", "ünï".encode()])
def test_non_utf8_names_round_trip(tmp_path: Path, raw: bytes) -> None:
    """Names from os.fsdecode survive listing, walking and collecting byte for byte."""
    fd = os.open(os.path.join(os.fsencode(tmp_path), raw), os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"data")
    os.close(fd)
    name = os.fsdecode(raw)
    assert list_dir(str(tmp_path), "/") == ([name], None)
    assert list(walk(str(tmp_path), "/")) == ["/" + name]
    rec = got(run(tmp_path, "/" + name)).record
    assert os.fsencode(rec.path) == b"/" + raw
    assert rec.digest == b3(b"data")


# --------------------------------------------------------------------------- root


def test_parent_symlink_out_of_root_is_refused(tmp_path: Path) -> None:
    """Under --root, an absolute symlink in a parent would read the host's file: refused."""
    (tmp_path / "etc").symlink_to("/etc")
    assert run(tmp_path, "/etc/passwd") == ScanWarning("/etc/passwd", ESCAPES)


def test_parent_symlink_inside_root_is_allowed(tmp_path: Path) -> None:
    """A relative parent symlink that stays inside the root is fine (/var/mail -> spool)."""
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "bob").write_bytes(b"mail")
    (tmp_path / "mail").symlink_to("spool")
    assert got(run(tmp_path, "/mail/bob")).record.digest == b3(b"mail")


@pytest.fixture
def id_root(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "# comment\nroot:x:0:0::/root:/bin/sh\n+nis::::::\nbroken\nsmmsp:x:4242:4343::/:/no\n"
        "dup:x:4242:1::/:/no\nbad:x:notanumber:1::/:/no\n"
    )
    (tmp_path / "etc" / "group").write_text(
        "root:x:0:\nsmmsp:x:4343:alice,bob\nmail:x:8:\n-nis:::\n"
    )
    return tmp_path


@pytest.mark.parametrize(
    ("call", "arg", "expect"),
    [
        ("user", 4242, "smmsp"),
        ("user", 0, "root"),
        ("user", 99999, None),
        ("group", 4343, "smmsp"),
        ("group", 8, "mail"),
        ("group", 99999, None),
        ("uid_of", "smmsp", 4242),
        ("uid_of", "dup", 4242),
        ("uid_of", "bad", None),
        ("uid_of", "nis", None),
        ("gid_of", "smmsp", 4343),
        ("gid_of", "nobody-here", None),
        ("members", "smmsp", ("alice", "bob")),
        ("members", "mail", ()),
        ("members", "absent", ()),
    ],
)
def test_root_id_files_win(id_root: Path, call: str, arg: Any, expect: Any) -> None:
    """With a root, its own passwd/group answer (first line wins; junk lines ignored)."""
    assert getattr(IdNames(str(id_root)), call)(arg) == expect


def test_host_answers_when_root_has_no_id_files(tmp_path: Path) -> None:
    """A root without etc/passwd falls back to the host's user database."""
    names = IdNames(str(tmp_path))
    assert (names.user(0), names.group(0), names.uid_of("root")) == ("root", "root", 0)
    assert names.user(2**40) is None


def test_collect_uses_the_roots_names(id_root: Path) -> None:
    """Owner and group names of a record come from the root's own files."""
    f = id_root / "etc" / "f"
    f.write_bytes(b"")
    os.chown(f, 4242, 4343)
    rec = collect(str(id_root), "/etc/f", names=IdNames(str(id_root)))
    assert (got(rec).record.owner, got(rec).record.group) == ("smmsp", "smmsp")


# --------------------------------------------------------------------------- list_dir, walk


def test_list_dir_sorts_and_refuses_symlinked_dirs(tmp_path: Path) -> None:
    """Entries come back sorted; a symlinked, missing or non-directory path warns."""
    (tmp_path / "d").mkdir()
    for n in ["b", "a", "C"]:
        (tmp_path / "d" / n).write_bytes(b"")
    (tmp_path / "ld").symlink_to("d")
    root = str(tmp_path)
    assert list_dir(root, "/d") == (["C", "a", "b"], None)
    assert list_dir(root, "/ld") == ([], ScanWarning("/ld", "is a symlink; not followed"))
    assert list_dir(root, "/gone") == ([], ScanWarning("/gone", VANISHED))
    assert list_dir(root, "/d/a") == ([], ScanWarning("/d/a", "not a directory"))


def test_walk_is_depth_first_and_never_follows_links(tmp_path: Path) -> None:
    """Walk yields every path below the start, in order, and enters no symlink (even loops)."""
    for d in ["etc/mail/m4", "etc/postfix"]:
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "etc/mail/aliases").write_bytes(b"")
    (tmp_path / "etc/mail/m4/cf.m4").write_bytes(b"")
    (tmp_path / "etc/mail/loop").symlink_to("..")
    (tmp_path / "etc/postfix/self").symlink_to("/etc/postfix")
    assert list(walk(str(tmp_path), "/etc")) == [
        "/etc/mail",
        "/etc/mail/aliases",
        "/etc/mail/loop",
        "/etc/mail/m4",
        "/etc/mail/m4/cf.m4",
        "/etc/postfix",
        "/etc/postfix/self",
    ]


def test_walk_stops_at_max_depth_with_a_warning(tmp_path: Path) -> None:
    """A directory at the depth bound is yielded, not entered, and reported."""
    (tmp_path / "a/b/c").mkdir(parents=True)
    assert list(walk(str(tmp_path), "/", max_depth=2)) == [
        "/a",
        "/a/b",
        ScanWarning("/a/b", "deeper than 2 levels; not entered"),
    ]


def test_walk_of_a_missing_or_linked_start_warns(tmp_path: Path) -> None:
    """Starting at a missing or symlinked directory yields just a warning."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    assert list(walk(str(tmp_path), "/gone")) == [ScanWarning("/gone", VANISHED)]
    assert list(walk(str(tmp_path), "/link")) == [
        ScanWarning("/link", "is a symlink; not followed")
    ]


@given(st.lists(st.sampled_from(["a", "b", "a/c", "b/d", "a/c/e", "a/f"]), unique=True))
def test_walk_finds_what_os_walk_finds(dirs: list[str]) -> None:
    """For any tree, walk yields the same paths as os.walk without following links."""
    with tempfile.TemporaryDirectory() as tmp:
        for d in dirs:
            os.makedirs(os.path.join(tmp, d), exist_ok=True)
            Path(tmp, d, "file").write_bytes(b"")
        expect = {os.path.join(top, n)[len(tmp) :] for top, ds, fs in os.walk(tmp) for n in ds + fs}
        found = list(walk(tmp, "/"))
        assert set(found) == expect
        assert len(found) == len(expect)
