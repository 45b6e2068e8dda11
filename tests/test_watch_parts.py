"""The watch daemon's parts on real inotify and real files: the raw queue reader, the
kernel's own list of watches, lane ownership of findings, queue-entry xattrs in verify."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from integrity import api, inotify, scanner, watches
from integrity.demo import build_sandbox
from integrity.lanes import attr_owned, carry, keep_content, oversize_findings
from integrity.model import FileRecord, FileType, Finding, ScanWarning, Severity

IS_ROOT = os.geteuid() == 0


def wait_for(pred, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.01)
    return pred()


def test_parse_reads_batched_kernel_records():
    """Two packed inotify_event records (one with a padded name) parse to (wd, mask, name)."""
    buf = struct.pack("iIII", 1, inotify.IN_ATTRIB, 0, 0)
    buf += struct.pack("iIII", 2, inotify.IN_CREATE, 0, 16) + b"qfA1\0" + b"\0" * 11
    assert inotify.parse(buf) == [(1, inotify.IN_ATTRIB, b""), (2, inotify.IN_CREATE, b"qfA1")]


def test_queue_reader_sees_chmod_create_and_new_subdirectory(tmp_path: Path):
    """chmod of an existing entry, a new entry and a file in a new subdir all reach Pending."""
    top = tmp_path / "mqueue"
    top.mkdir()
    (top / "qfOLD").write_text("x")
    woke: list[int] = []
    reader = inotify.QueueReader([str(top)], lambda: woke.append(1))
    assert reader.watch_all() == set()
    reader.start()
    try:
        os.chmod(top / "qfOLD", 0o644)
        (top / "dfNEW").write_text("y")
        (top / "sub").mkdir()
        assert wait_for(lambda: reader.watched() == 2)
        (top / "sub" / "qfDEEP").write_text("z")
        os.chmod(top, 0o755)
        pending = inotify.Pending()

        def collected() -> bool:
            got = reader.take()
            for d, names in got.names.items():
                pending.names.setdefault(d, set()).update(names)
            pending.whole |= got.whole
            pending.tops |= got.tops
            return (
                {"qfOLD", "dfNEW"} <= pending.names.get(str(top), set())
                and bool(pending.names.get(str(top / "sub")) or str(top / "sub") in pending.whole)
                and str(top) in pending.tops
            )

        assert wait_for(collected), pending
    finally:
        reader.stop()
    assert woke


def test_queue_reader_forgets_names_beyond_the_bound(tmp_path: Path):
    """More distinct names than MAX_NAMES in one directory collapse to one full rescan."""
    reader = inotify.QueueReader([str(tmp_path)], lambda: None)
    reader.watch_all()
    wd = next(iter(reader._dirs))
    events = [(wd, inotify.IN_CREATE, f"q{i}".encode()) for i in range(inotify.MAX_NAMES + 5)]
    reader.handle(events)
    got = reader.take()
    assert str(tmp_path) in got.whole and str(tmp_path) not in got.names
    reader.stop()


def test_queue_reader_reports_its_own_overflow(tmp_path: Path):
    """A kernel IN_Q_OVERFLOW record marks every queue tree for a rescan and counts."""
    reader = inotify.QueueReader([str(tmp_path)], lambda: None)
    reader.watch_all()
    reader.handle([(-1, inotify.IN_Q_OVERFLOW, b"")])
    got = reader.take()
    assert got.overflows == 1 and got.whole == {str(tmp_path)}
    reader.stop()


def test_kernel_lists_the_watched_inodes(tmp_path: Path):
    """fdinfo names the watched directory's (inode, device); an unwatched one is missing."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    ino = inotify.Inotify()
    try:
        ino.add(str(a))
        have = watches.watched_inodes()
        assert have is not None
        assert watches.dir_key(a.stat()) in have
        missing = watches.unwatched(
            [watches.WatchDir(0, str(a)), watches.WatchDir(3, str(b))], have
        )
        assert missing == [watches.WatchDir(3, str(b))]
    finally:
        ino.close()


def test_recursive_root_counts_every_subdirectory(tmp_path: Path):
    """A recursive watch root wants itself and every directory below it, links not followed."""
    (tmp_path / "x" / "y").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "x")
    wanted = watches.wanted_dirs(watches.WatchDir(1, str(tmp_path), True))
    assert sorted(wanted) == sorted([str(tmp_path), str(tmp_path / "x"), str(tmp_path / "x/y")])


def test_watch_order_puts_binaries_first_and_skips_covered_dirs():
    """Rank decides the order; a flat dir inside a recursive root is not watched twice."""
    got = watches.order(
        ["/usr/sbin", "/etc/mail/sub", "/var/spool"], ["/etc/mail"],
        {"/usr/sbin": 0, "/etc/mail": 1, "/var/spool": 3},
    )  # fmt: skip
    assert [w.path for w in got] == ["/usr/sbin", "/etc/mail", "/var/spool"]
    assert got[1].recursive and not got[0].recursive


def _f(path: str, rule: str, attribute: str) -> Finding:
    return Finding(path, rule, Severity.HIGH, "m", attribute)


def test_carry_keeps_the_other_lanes_findings_and_drops_its_verdicts():
    """A content check neither resolves an open set-uid finding nor re-decides it."""
    mine = [_f("/b", "MI-CONTENT-CHANGED", "content"), _f("/b", "MI-SETID-ADDED", "mode")]
    rows = [
        {"path": "/b", "rule": "MI-SETID-ADDED", "severity": "critical", "message": "m",
         "attribute": "mode", "before": "0755", "after": "4755"},
        {"path": "/b", "rule": "MI-CONTENT-CHANGED", "severity": "medium", "message": "m",
         "attribute": "content", "before": None, "after": None},
    ]  # fmt: skip
    out = carry(mine, rows, {"/b"}, lambda _p, a: attr_owned(a))
    assert [(f.rule, f.after) for f in out] == [
        ("MI-CONTENT-CHANGED", None),
        ("MI-SETID-ADDED", "4755"),
    ]


def _rec(path: str, digest: str, size: int) -> FileRecord:
    return FileRecord(path=path, ftype=FileType.FILE, mode=0o644, uid=1000, gid=1000,
                      owner="u", group="u", size=size, mtime_ns=1, ctime_ns=1, inode=1,
                      nlink=1, digest=digest)  # fmt: skip


def test_oversized_file_is_a_finding_and_keeps_its_baseline_content():
    """An unhashed oversized file: MI-FILE-OVERSIZED, judged on the baseline's content."""
    warns = [ScanWarning("/home/u/.forward", scanner.OVERSIZE)]
    records = {"/home/u/.forward": _rec("/home/u/.forward", "", 20 * 2**30)}
    keep_content(records, {"/home/u/.forward": _rec("/home/u/.forward", "blake3:aa", 9)}, warns)
    assert records["/home/u/.forward"].digest == "blake3:aa"
    (f,) = oversize_findings(warns, 1024, lambda _p: "aliases")
    assert f.rule == "MI-FILE-OVERSIZED" and f.severity == Severity.HIGH


def test_hash_cap_applies_to_user_growable_files_only(tmp_path: Path):
    """A non-root file above the cap is not read; a root-owned 0644 one is hashed."""
    big = tmp_path / "big"
    big.write_bytes(b"x" * 4096)
    names = scanner.IdNames("/")
    if IS_ROOT:
        got = scanner.collect(str(tmp_path), "/big", names=names, user_max_hash=1024)
        assert not isinstance(got, ScanWarning) and got.record.digest is not None
        os.chown(big, 65534, 65534)
    got = scanner.collect(str(tmp_path), "/big", names=names, user_max_hash=1024)
    assert not isinstance(got, ScanWarning)
    assert got.record.digest is None and got.warning is not None
    assert got.warning.message == scanner.OVERSIZE


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT or not shutil.which("setcap"), reason="needs root and setcap")
def test_verify_sees_a_capability_on_a_queue_file(tmp_path: Path):
    """setcap on a queue entry: verify reports MI-QUEUE-FILE-CAPABILITY (content unread)."""
    root, profiles = build_sandbox(tmp_path)
    opts = api.Options(root=str(root), db=str(tmp_path / "b.db"), profiles=("demo",),
                       profile_dirs=(str(profiles),))  # fmt: skip
    api.init(opts)
    qf = root / "var/spool/mqueue/qfA1B2C3"
    subprocess.run(["setcap", "cap_net_raw+ep", str(qf)], check=True)
    atime = qf.stat().st_atime_ns
    report = api.verify(opts, record_run=False)
    hits = [f for f in report.findings if f.rule == "MI-QUEUE-FILE-CAPABILITY"]
    assert [f.path for f in hits] == ["/var/spool/mqueue/qfA1B2C3"]
    assert hits[0].severity == Severity.CRITICAL and "cap_net_raw" in str(hits[0].after)
    assert qf.stat().st_atime_ns == atime  # never opened
