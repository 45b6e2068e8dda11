"""store under hostile conditions: private files from the first byte, the host-keyed
checksum, concurrent writers and readers, and a baseline on read-only media."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integrity import store as store_mod
from integrity.cli import main
from integrity.demo import build_sandbox
from integrity.errors import BaselineBusyError, BaselineCorruptError, BaselineIOError
from integrity.model import FileRecord, FileType
from integrity.store import Store, key_path
from tests.sandbox import cli_host

DIGEST = "blake3:" + "a" * 64


def rec(path: str, **kw: Any) -> FileRecord:
    base: dict[str, Any] = {"ftype": FileType.FILE, "mode": 0o644, "uid": 0, "gid": 0}
    return FileRecord(path=path, **{**base, "digest": DIGEST, **kw})


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A sealed baseline with two rows."""
    path = str(tmp_path / "state" / "baseline.db")
    s = Store.open(path, create=True)
    s.replace_baseline([rec("/etc/aliases"), rec("/usr/sbin/sendmail", mode=0o2555)],
                       {"/etc/aliases": "aliases", "/usr/sbin/sendmail": "binary"})  # fmt: skip
    s.close()
    return path


# --------------------------------------------------------------------------- 0600 at birth


def test_database_is_0600_before_sqlite_opens_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the moment SQLite opens the new file it is already 0600 and the umask is 077."""
    seen: list[tuple[int, int]] = []
    real = sqlite3.connect

    def spy(path: str, *a: Any, **kw: Any) -> sqlite3.Connection:
        umask = os.umask(0o022)
        os.umask(umask)
        seen.append((mode(path), umask))
        return real(path, *a, **kw)

    monkeypatch.setattr(store_mod.sqlite3, "connect", spy)
    old = os.umask(0o000)  # the most careless umask an admin's shell could have
    try:
        path = tmp_path / "new" / "baseline.db"
        s = Store.open(str(path), create=True)
        s.replace_baseline([rec("/etc/aliases")], {"/etc/aliases": "aliases"})
        wal_modes = [mode(p) for p in path.parent.glob("baseline.db-*")]
        s.close()
    finally:
        os.umask(old)
    assert seen == [(0o600, 0o077)]
    assert wal_modes and all(m == 0o600 for m in wal_modes)
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert mode(key_path(str(path))) == 0o600
    assert mode(f"{path}.lock") == 0o600


def test_outbox_is_0600_before_sqlite_opens_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The syslog outbox (it holds findings) is 0600 when SQLite first touches it."""
    from integrity import syslog

    seen: list[int] = []
    real = sqlite3.connect

    def spy(path: str, *a: Any, **kw: Any) -> sqlite3.Connection:
        seen.append(mode(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(syslog.sqlite3, "connect", spy)
    old = os.umask(0)
    try:
        box = syslog.Outbox(str(tmp_path / "outbox.db"), 1 << 20, 1000)
        box.add(box.next_seq(), 1, b"x")
        box.db.close()
    finally:
        os.umask(old)
    assert seen == [0o600]
    assert all(mode(p) == 0o600 for p in tmp_path.glob("outbox.db*"))


def test_ledger_and_export_are_0600(tmp_path: Path, db: str) -> None:
    """The rollback ledger (and its lock) and `export -o` are never wider than 0600."""
    from integrity.signing import Ledger

    (tmp_path / "none.toml").write_text("")
    out = tmp_path / "export.json"
    out.write_text("old")
    os.chmod(out, 0o644)  # an existing, readable file is tightened before the write
    old = os.umask(0)
    try:
        Ledger(str(tmp_path / "led" / "generations.json")).record("k", 3)
        code = main(["export", "--db", db, "--config", str(tmp_path / "none.toml"), "-o",
                     str(out)])  # fmt: skip
    finally:
        os.umask(old)
    assert sorted(p.name for p in (tmp_path / "led").iterdir()) == [
        ".generations.json.lock", "generations.json"]
    assert all(mode(p) == 0o600 for p in (tmp_path / "led").iterdir())
    assert code == 0 and mode(out) == 0o600 and json.loads(out.read_text())["files"]


# --------------------------------------------------------------------------- keyed checksum


def forge(db: str, sql: str) -> None:
    """An intruder who can write the database edits a row and recomputes the digest with
    the constant context in the code, as version 0.1 allowed."""
    con = sqlite3.connect(db)
    with con:
        con.execute(sql)
        rows = [(bytes(p), r, c) for p, r, c in con.execute("select path, role, record from files")]
        con.execute("update meta set value = ? where key = 'rows_digest'",
                    (store_mod.rows_digest(rows),))  # fmt: skip
    con.close()


def test_forged_row_with_recomputed_plain_checksum_is_refused(db: str) -> None:
    """The set-uid binary dropped from the rows, digest recomputed: refused (exit 19)."""
    forge(db, "delete from files where path = CAST('/usr/sbin/sendmail' AS BLOB)")
    s = Store.open(db)
    with pytest.raises(BaselineCorruptError) as info:
        s.load_baseline()
    s.close()
    assert info.value.exit_code == 19 and "checksum" in info.value.message


def test_stripping_the_keyed_checksum_is_refused(db: str) -> None:
    """Deleting rows_mac to look like an old database does not work once a key exists."""
    forge(db, "delete from meta where key = 'rows_mac'")
    s = Store.open(db)
    with pytest.raises(BaselineCorruptError):
        list(s.iter_baseline())
    s.close()


def test_missing_key_is_a_clear_error(db: str) -> None:
    """The key file gone: exit 19 naming the key, never a silent pass."""
    os.unlink(key_path(db))
    s = Store.open(db)
    with pytest.raises(BaselineCorruptError) as info:
        s.load_baseline()
    s.close()
    assert key_path(db) in info.value.message and "missing" in info.value.message


def test_old_database_without_key_still_loads_and_says_so(db: str) -> None:
    """A 0.1 baseline (no key, no rows_mac) loads; the header note says what that means;
    the next update adds the keyed checksum."""
    os.unlink(key_path(db))
    con = sqlite3.connect(db)
    with con:
        con.execute("delete from meta where key = 'rows_mac'")
    con.close()
    s = Store.open(db)
    assert len(s.load_baseline()[0]) == 2
    assert any("before host-keyed checksums" in n for n in s.notes())
    s.apply_changes([rec("/etc/new")], [], {}, who="t", reason="upgrade", before={})
    assert s.get_meta("rows_mac") and os.path.exists(key_path(db))
    s.close()


def test_unsigned_header_note_says_what_the_checksum_stops(db: str) -> None:
    """verify's header: the key's path, what it stops and that root is not stopped."""
    s = Store.open(db)
    s.load_baseline()
    (note,) = s.notes()
    s.close()
    assert key_path(db) in note and "root" in note and "signature" in note


# --------------------------------------------------------------------------- concurrency


def test_reader_sees_one_generation_while_a_writer_commits(db: str) -> None:
    """A verify reading while an update commits sees the old rows with the old digest."""
    reader = Store.open(db)
    reader.begin_read()
    gen = reader.generation
    rows = reader.iter_baseline()
    first = next(rows)
    writer = Store.open(db, writer=True)
    writer.apply_changes([rec("/etc/zzz")], ["/etc/aliases"], {}, who="t", reason="r",
                         before={})  # fmt: skip
    writer.close()
    rest = list(rows)  # no "checksum mismatch": the snapshot is the old generation
    assert [first[0], *(r[0] for r in rest)] == ["/etc/aliases", "/usr/sbin/sendmail"]
    assert reader.generation == gen
    reader.close()
    again = Store.open(db)
    assert sorted(again.load_baseline()[0]) == ["/etc/zzz", "/usr/sbin/sendmail"]
    again.close()


def test_second_writer_waits_then_gives_up_as_busy(db: str) -> None:
    """While one writer holds the lock another waits its timeout, then 'baseline busy' (18)."""
    first = Store.open(db, writer=True)
    try:
        with pytest.raises(BaselineBusyError) as info:
            Store.open(db, writer=True, timeout=0.2)
    finally:
        first.close()
    assert info.value.exit_code == 18 and "busy" in info.value.message
    Store.open(db, writer=True, timeout=0.2).close()  # free again once the first closed


def test_locked_database_is_busy_not_corrupt(db: str) -> None:
    """An SQLite write lock held elsewhere past the timeout: exit 18 'busy', never 19."""
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")
    try:
        s = Store.open(db, timeout=0.2)
        with pytest.raises(BaselineIOError) as info:
            s.begin_run("verify", "/", ["x"], "h")
        s.close()
    except BaselineIOError as exc:  # the lock may already stop the open itself
        info = pytest.ExceptionInfo.from_exc_info((type(exc), exc, exc.__traceback__))
    finally:
        con.execute("ROLLBACK")
        con.close()
    assert info.value.exit_code == 18 and "busy" in info.value.message


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    root, args, _ = cli_host(tmp_path)
    assert main(["init", "-q", *args]) == 0
    yield root, args


@pytest.mark.slow
def test_concurrent_updates_and_verifies_in_real_processes(host: tuple[Path, list[str]]) -> None:
    """Two processes updating in a loop and one verifying: all succeed, generations add
    up, and no verify ever sees a mix (no 18/19/20, no traceback)."""
    root, args = host
    script = textwrap.dedent(
        """
        import os, sys
        from integrity.cli import main
        root, name, n, args = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
        codes = []
        for i in range(n):
            if name == "verify":
                codes.append(main(["verify", "-q", *args]))
            else:
                with open(os.path.join(root, "etc/mail", name), "w") as fh:
                    fh.write(str(i))
                codes.append(main(["update", "-q", "--all", "--reason", name, *args]))
        print(codes)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(root), who, "6", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for who in ("upd-a", "upd-b", "verify")
    ]  # fmt: skip
    results = [p.communicate(timeout=300) for p in procs]
    for _, err in results:
        assert "Traceback" not in err, err
    updates = [json.loads(results[i][0]) for i in (0, 1)]
    verifies = json.loads(results[2][0])
    assert updates == [[0] * 6, [0] * 6], results
    assert all(code < 16 for code in verifies), results
    s = Store.open(args[args.index("--db") + 1])
    assert s.generation == 1 + 12  # every update got its own generation
    s.close()


# --------------------------------------------------------------------------- read-only media


@pytest.fixture
def readonly_mount(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A real read-only bind mount of a directory: (writable source, read-only view)."""
    if os.geteuid() != 0:
        pytest.skip("needs root for mount")
    src, ro = tmp_path / "media-src", tmp_path / "media"
    src.mkdir()
    ro.mkdir()
    subprocess.run(["mount", "--bind", str(src), str(ro)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        yield src, ro
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_verify_and_watch_work_on_a_read_only_baseline(
    tmp_path: Path, readonly_mount: tuple[Path, Path], capsys: Any
) -> None:
    """Baseline on a ro bind mount: verify reports (exit 4/8, not 19), keeps its runs in the
    state directory and says so; update is refused as I/O (18); the media is unchanged."""
    src, ro = readonly_mount
    root, profiles = build_sandbox(tmp_path)
    state = tmp_path / "var-state"
    state.mkdir(mode=0o700)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'state_dir = "{state}"\n')
    common = ["--root", str(root), "--profile", "demo", "--profile-dir", str(profiles),
              "--config", str(cfg)]  # fmt: skip
    assert main(["init", "-q", "--db", str(src / "b.db"), *common]) == 0
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    args = ["--db", str(ro / "b.db"), *common]
    with pytest.raises(OSError):
        (ro / "probe").write_text("x")  # really read-only
    capsys.readouterr()
    assert main(["verify", *args]) == 0
    capsys.readouterr()
    os.chmod(root / "etc/mail/aliases", 0o666)
    code = main(["verify", *args, "--format", "json"])
    out = capsys.readouterr().out
    assert code & 4 and code & 8
    header = json.loads(out)["header"]
    assert any("read-only" in n and str(state) in n for n in header["notes"])
    assert main(["history", *args, "--format", "json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [r["command"] for r in runs][:2] == ["verify", "verify"]
    assert main(["update", *args, "--all", "--reason", "x"]) == 18
    assert "read-only" in capsys.readouterr().err
    os.chmod(root / "usr/sbin/sendmail", 0o2755)  # new since the last run: watch reports it
    proc = subprocess.run([sys.executable, "-m", "integrity", "watch", "--once", *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "MI-SETID-ADDED" in proc.stderr
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before


def test_read_only_baseline_without_state_dir_skips_run_records(
    tmp_path: Path, readonly_mount: tuple[Path, Path], capsys: Any
) -> None:
    """No writable state directory: verify still works and the header says runs are not kept."""
    src, ro = readonly_mount
    root, profiles = build_sandbox(tmp_path)
    (tmp_path / "none.toml").write_text("")
    common = ["--root", str(root), "--profile", "demo", "--profile-dir", str(profiles),
              "--config", str(tmp_path / "none.toml")]  # fmt: skip
    assert main(["init", "-q", "--db", str(src / "b.db"), *common]) == 0
    capsys.readouterr()
    assert main(["verify", "--db", str(ro / "b.db"), *common]) == 0
    out = capsys.readouterr().out
    assert "read-only" in out and "not kept" in out
