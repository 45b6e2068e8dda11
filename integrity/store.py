"""Record: the baseline database, through plain sqlite3 (``sqldb``); its schema is
sqlite-utils migrations (``schema``), imported only when one is pending.

One SQLite file holds the baseline rows, the run log, the findings with their life cycle
(open -> resolved | accepted) and the acceptances (who, when, why, before, after).
Paths are stored as BLOBs (``os.fsencode``) so non-UTF-8 names round-trip. The rows carry
a BLAKE3 digest in ``meta`` (what signatures and exports cover), and that digest is keyed
with a host-local key kept outside the database (``<state dir>/<name>.key``, 0600): a
write to the database alone cannot recompute it. Root can; signatures stop root.

The file is created 0600 before SQLite opens it, writers queue on a lock file, readers
read one snapshot, and a database on read-only media is opened immutable.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import sqlite3
import stat
import time

# hmac.compare_digest is this function; importing hmac loads OpenSSL (3.6 MiB per run)
from _operator import _compare_digest
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import blake3

from integrity.errors import (
    BaselineBusyError,
    BaselineCorruptError,
    BaselineIOError,
    BaselineMissingError,
    MonitorError,
    StoreError,
)
from integrity.model import FileRecord, Finding, canonical_json
from integrity.schema import migrate
from integrity.sqldb import Database

ROWS_CONTEXT = "mail-integrity 2026-11 baseline rows v1"
MAC_CONTEXT = "mail-integrity 2026-11 rows mac v1"
DEFAULT_DB = "/var/lib/mail-integrity/baseline.db"
#: seconds a run waits for another writer before giving up with "baseline busy" (exit 18)
BUSY_TIMEOUT = 30.0
_KEY_LEN = 32


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def record_json(rec: FileRecord) -> str:
    """The canonical record text the rows digest covers (``model.canonical_json``)."""
    return canonical_json(rec)


def rows_digest(rows: Iterable[tuple[bytes, str, str]]) -> str:
    """Canonical digest of (path, role, record) rows, sorted by path.

    Also what a signature covers: it does not change when SQLite rewrites its pages.
    """
    h = _RowHasher()
    for row in sorted(rows):
        h.add(*row)
    return h.hexdigest()


class _RowHasher:
    """Incremental form of ``rows_digest`` for rows that already arrive sorted."""

    def __init__(self) -> None:
        self._h = blake3.blake3(derive_key_context=ROWS_CONTEXT)

    def add(self, path: bytes, role: str, record: str) -> None:
        # surrogateescape: a damaged (non-UTF-8) text column hashes as its raw bytes, so
        # it fails the checksum instead of raising
        rb = role.encode(errors="surrogateescape")
        cb = record.encode(errors="surrogateescape")
        self._h.update(  # one update per row, the same bytes as one per part
            b"".join(
                (len(path).to_bytes(8, "big"), path, len(rb).to_bytes(8, "big"), rb,
                 len(cb).to_bytes(8, "big"), cb)
            )
        )  # fmt: skip

    def hexdigest(self) -> str:
        return "blake3:" + self._h.hexdigest()


def finding_key(f: Finding) -> str:
    """Identity of a finding across runs: same path, rule and attribute = same problem."""
    h = blake3.blake3(os.fsencode(f.path) + b"\0" + f"{f.rule}\0{f.attribute}".encode())
    return h.hexdigest()[:32]


def _finding_row(key: str, f: Finding, at: str, run_id: int | None) -> dict[str, Any]:
    return {
        "key": key,
        "path": os.fsencode(f.path),
        "rule": f.rule,
        "severity": str(f.severity),
        "attribute": f.attribute,
        "before": _text(f.before),
        "after": _text(f.after),
        "message": f.message,
        "first_seen": at,
        "last_seen": at,
        "last_sent": None,
        "status": "open",
        "run_id": run_id,
        "ack_at": None,
        "ack_who": None,
        "ack_reason": None,
        "ack_after": None,
    }


def _what(f: Finding) -> dict[str, Any]:
    """What was acknowledged, for the history (never file content: findings carry none)."""
    return {"rule": f.rule, "severity": str(f.severity), "attribute": f.attribute,
            "after": f.after, "message": f.message}  # fmt: skip


def row_finding(row: Mapping[str, Any]) -> Finding:
    """A findings-table row back into a Finding (before/after as stored text)."""
    from integrity.model import Severity

    raw = row["path"]
    return Finding(
        os.fsdecode(bytes(raw)) if isinstance(raw, bytes | bytearray) else str(raw),
        str(row["rule"]),
        Severity(str(row["severity"])),
        str(row["message"]),
        str(row.get("attribute") or ""),
        row.get("before"),
        row.get("after"),
    )


def text_of(value: Any) -> str | None:
    """How a finding's value is stored (and compared with an acknowledged value)."""
    return _text(value)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


# -- opening: private from the first byte, one writer at a time, read-only media ----------


def _create_private(path: str) -> None:
    """Create the database file 0600 before SQLite opens it: no window where the umask
    lets a local user read the baseline (SQLite gives -wal and -shm the same mode)."""
    try:
        with _private_umask():
            os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.close(fd)
    except OSError as exc:
        cls = BaselineIOError if exc.errno in _IO_ERRNOS else StoreError
        raise cls(f"{path}: cannot create the database: {exc.strerror}") from exc


_IO_ERRNOS = frozenset({errno.ENOSPC, errno.EIO, errno.EROFS, errno.EDQUOT, errno.EACCES})


@contextlib.contextmanager
def _private_umask() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


@contextlib.contextmanager
def _opening(path: str, conns: list[sqlite3.Connection]) -> Iterator[None]:
    """Open under a private umask; on any failure close what was opened (a connection
    left behind keeps its locks until garbage collection) and say what went wrong."""
    try:
        with _private_umask():
            yield
    except BaseException as exc:
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        if isinstance(exc, sqlite3.Error):
            raise classify(exc, path, opening=True) from exc
        if isinstance(exc, UnicodeError):  # SQLite's message quotes a damaged schema's bytes
            raise BaselineCorruptError(f"{path}: baseline database schema is damaged") from exc
        if isinstance(exc, OSError):
            raise BaselineIOError(f"{path}: {exc.strerror}") from exc
        raise


def _text_column(data: bytes) -> str:
    """TEXT as str even when a damaged page made it invalid UTF-8 (the checksum catches it)."""
    return data.decode("utf-8", "surrogateescape")


def _writable(path: str) -> bool:
    """Can we write the database and create its -wal/-shm (not read-only media)?"""
    directory = os.path.dirname(os.path.abspath(path))
    return os.access(path, os.W_OK) and os.access(directory, os.W_OK | os.X_OK)


def _writer_lock(path: str, timeout: float) -> int | None:
    """flock on ``<db>.lock``: init, update and signature imports run one at a time."""
    if not _writable(path):
        return None  # read-only media: nothing will be written, nothing to serialise
    lock = path + ".lock"
    try:
        with _private_umask():
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise BaselineIOError(f"{lock}: cannot open the writer lock: {exc.strerror}") from exc
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise BaselineBusyError(_busy(path, timeout)) from None
            time.sleep(0.05)


def _busy(path: str, timeout: float) -> str:
    return (
        f"{path}: baseline busy: another mail-integrity run is writing it "
        f"(waited {timeout:g} s); try again when it is done"
    )


def _state_path(path: str, state_dir: str | None) -> str | None:
    """Where a read-only baseline's runs and findings go; None when nowhere writable."""
    directory = state_dir or os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK | os.X_OK):
        return None
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.join(directory, f"{stem}.state.db")


def key_path(path: str, state_dir: str | None = None) -> str:
    """The host-local checksum key of a database: in the state directory, not inside it."""
    directory = state_dir or os.path.dirname(os.path.abspath(path))
    return os.path.join(directory, os.path.splitext(os.path.basename(path))[0] + ".key")


_LAST_OPENED = "baseline database"


def last_opened() -> str:
    """The database opened last: names the file in an error raised far from ``open``."""
    return _LAST_OPENED


def classify(exc: sqlite3.Error, path: str, *, opening: bool = False) -> MonitorError:
    """An SQLite error -> the error the user must see: I/O (18) is never called corrupt."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc)
    if primary == 13 or "disk is full" in text or (primary == 10 and _disk_full(path)):
        # SQLITE_FULL, or an I/O error (SQLite hides errno) on a filesystem with no room
        return BaselineIOError(
            f"{path}: no space left on device; the previous baseline is intact"
        )
    if primary in (5, 6) or "database is locked" in text:  # SQLITE_BUSY, SQLITE_LOCKED
        return BaselineBusyError(_busy(path, BUSY_TIMEOUT))
    if primary == 8 or "because it is a view" in text:  # SQLITE_READONLY
        return BaselineIOError(
            f"{path}: baseline is read-only here: init and update need a writable copy"
        )
    if primary in (3, 10, 14, 22, 23):  # PERM, IOERR, CANTOPEN, NOLFS, AUTH
        return BaselineIOError(f"{path}: I/O error: {text}")
    if primary in (11, 26) or "malformed" in text:  # SQLITE_CORRUPT, SQLITE_NOTADB
        return BaselineCorruptError(
            f"{path}: baseline database is corrupt ({text}); restore it from your off-host copy"
        )
    what = "not a usable baseline database" if opening else "baseline database damaged"
    return BaselineCorruptError(f"{path}: {what}: {text}")


# -- host-keyed checksum ----------------------------------------------------------------


def _disk_full(path: str) -> bool:
    """Is the filesystem holding ``path`` (nearly) out of space for us?"""
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return False
    free = st.f_bavail * st.f_frsize if os.geteuid() else st.f_bfree * st.f_frsize
    return free < 256 * 1024 or st.f_favail == 0


def rows_mac(key: bytes, digest: str, generation: int) -> str:
    """The rows digest keyed with the host-local key: what a DB-only write cannot redo."""
    h = blake3.blake3(f"{digest}\0{generation}".encode(errors="surrogateescape"), key=key)
    return "blake3-keyed:" + h.hexdigest()


def _same(a: str, b: str) -> bool:
    """Constant-time comparison that also takes a damaged (non-ASCII) stored value."""
    return _compare_digest(
        a.encode(errors="surrogateescape"), b.encode(errors="surrogateescape")
    )


def _read_key(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BaselineIOError(f"{path}: cannot read the checksum key: {exc.strerror}") from exc
    try:
        data = os.read(fd, _KEY_LEN + 1)
    finally:
        os.close(fd)
    if len(data) != _KEY_LEN:
        raise BaselineCorruptError(f"{path}: not a checksum key ({len(data)} bytes)")
    return data


def _make_key(path: str) -> bytes:
    """A new random key, written 0600 with O_EXCL (never over an existing one)."""
    key = os.urandom(_KEY_LEN)
    try:
        with _private_umask():
            os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
            fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
    except FileExistsError:
        found = _read_key(path)
        if found is None:  # pragma: no cover - removed between the two calls
            raise BaselineIOError(f"{path}: checksum key vanished while created") from None
        return found
    except OSError as exc:
        raise BaselineIOError(f"{path}: cannot write the checksum key: {exc.strerror}") from exc
    return key


class Store:
    """The baseline database. Use ``Store.open`` (``create=True`` for init).

    On read-only media (not writable by us) the baseline is attached read-only and
    immutable, and runs and findings go to a small state database in ``state_dir`` (or
    stay in memory when that is not writable either): see ``notes``.
    """

    def __init__(self, db: Database, path: str, *, state_dir: str | None = None) -> None:
        self.db = db
        self.path = path
        self.state_dir = state_dir
        self.readonly = False
        self.run_records: str | None = path  # where runs and findings are kept (None: not)
        self._lock_fd: int | None = None
        self._legacy = False

    @classmethod
    def open(
        cls,
        path: str,
        *,
        create: bool = False,
        shared: bool = False,
        writer: bool = False,
        state_dir: str | None = None,
        timeout: float = BUSY_TIMEOUT,
    ) -> Store:
        """Open (or with ``create`` make) the baseline database.

        ``shared``: the connection may pass between threads that never use it at once.
        ``writer`` (init, update, signatures): hold the writer lock until ``close``, so two
        writers run one after the other (waiting up to ``timeout``, then "baseline busy").
        """
        if path == ":memory:":
            db = Database(sqlite3.connect(path, check_same_thread=not shared), classify)
            migrate(db)
            return cls(db, path, state_dir=state_dir)
        global _LAST_OPENED
        _LAST_OPENED = path
        exists = os.path.exists(path)
        if not exists and not create:
            raise BaselineMissingError(
                f"no baseline at {path}; run `mail-integrity init` first (or pass --db)"
            )
        if not exists:
            _create_private(path)
        lock = _writer_lock(path, timeout) if writer or create else None
        try:
            if _writable(path):
                store = cls._open_rw(path, shared, timeout, state_dir)
            else:
                store = cls._open_ro(path, shared, timeout, state_dir)
        except BaseException:
            if lock is not None:
                os.close(lock)
            raise
        store._lock_fd = lock
        return store

    @classmethod
    def _open_rw(cls, path: str, shared: bool, timeout: float, state_dir: str | None) -> Store:
        conns: list[sqlite3.Connection] = []
        with _opening(path, conns):
            conn = sqlite3.connect(
                path, timeout=timeout, check_same_thread=not shared, isolation_level="IMMEDIATE"
            )
            conns.append(conn)
            conn.text_factory = _text_column
            db = Database(conn, classify, path)
            db.enable_wal()
            migrate(db)
            for suffix in ("", "-wal", "-shm"):  # a database from before 0600-at-birth
                with contextlib.suppress(FileNotFoundError):
                    if stat.S_IMODE(os.stat(path + suffix).st_mode) & 0o077:
                        os.chmod(path + suffix, 0o600)
        return cls(db, path, state_dir=state_dir)

    @classmethod
    def _open_ro(cls, path: str, shared: bool, timeout: float, state_dir: str | None) -> Store:
        """Read-only media: the baseline attached immutable; runs and findings elsewhere."""
        wal = path + "-wal"
        if os.path.exists(wal) and os.path.getsize(wal) > 0:
            raise BaselineIOError(
                f"{path}: read-only, and {wal} holds pages not yet in the database; copy the "
                "database to read-only media only after mail-integrity closed it"
            )
        state = _state_path(path, state_dir)
        conns: list[sqlite3.Connection] = []
        with _opening(path, conns):
            conn = sqlite3.connect(
                state or ":memory:", timeout=timeout, check_same_thread=not shared,
                isolation_level="IMMEDIATE",
            )  # fmt: skip
            conns.append(conn)
            conn.text_factory = _text_column
            db = Database(conn, classify, path)
            if state:
                db.enable_wal()
            migrate(db)  # the state database: its own runs and findings
            from urllib.parse import quote  # read-only media only

            uri = "file:" + quote(os.path.abspath(path)) + "?mode=ro&immutable=1"
            conn.execute("ATTACH DATABASE ? AS base", (uri,))
            # temp views are found before main's (empty) tables of the same name
            conn.execute("CREATE TEMP VIEW meta AS SELECT * FROM base.meta")
            conn.execute("CREATE TEMP VIEW files AS SELECT * FROM base.files")
            conn.execute("SELECT count(*) FROM base.meta").fetchone()
        store = cls(db, path, state_dir=state_dir)
        store.readonly = True
        store.run_records = state
        return store

    def close(self) -> None:
        """The last connection to close checkpoints and removes the WAL (SQLite does it),
        so a closed database is one complete file that can go to read-only media."""
        with contextlib.suppress(sqlite3.Error):
            self.db.end_read()
        self.db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def begin_read(self) -> None:
        """Read from one snapshot until the next write or ``close``.

        A verify running while an update commits then sees the old generation or the new
        one, never the old digest with the new rows (a false "corrupt" alarm).
        """
        if not self.db.reading and not self.db.conn.in_transaction:
            self.db.conn.execute("BEGIN")
            self.db.reading = True

    def notes(self) -> list[str]:
        """What a reader of verify's header must know about this baseline's protection."""
        out: list[str] = []
        if self.readonly:
            where = (
                f"runs and findings are kept in {self.run_records}"
                if self.run_records
                else "runs and findings are not kept (no writable state directory)"
            )
            out.append(f"baseline is read-only (opened immutable): {where}")
        if not self.get_meta("signature"):
            if self._legacy:
                out.append(
                    "unsigned, and made before host-keyed checksums: anyone who can write "
                    "the database can edit rows and recompute its checksum; run "
                    "`mail-integrity update --all --reason ...` to add one, and sign it"
                )
            else:
                out.append(
                    f"unsigned: the checksum is keyed with {key_path(self.path, self.state_dir)}"
                    ", so an edit by someone who can write the database but not read that key "
                    "is refused; root or the service user on this host can still rewrite "
                    "both: only a signature (key off the host) stops that"
                )
        return out

    # -- meta ---------------------------------------------------------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        rows = list(self.db.query("select value from meta where key = ?", [key]))
        return rows[0]["value"] if rows else default

    def set_meta(self, key: str, value: str) -> None:
        self.db.table("meta").upsert({"key": key, "value": value}, pk="key")

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation", "0") or 0)

    def has_baseline(self) -> bool:
        return self.get_meta("rows_digest") is not None

    # -- baseline -----------------------------------------------------------------------

    def raw_rows(self) -> Iterator[tuple[bytes, str, str]]:
        for row in self.db.execute("select path, role, record from files").fetchall():
            yield bytes(row[0]), row[1], row[2]

    def current_digest(self) -> str:
        """``rows_digest`` of the stored rows, streamed in path order (no copy in memory).

        SQLite orders BLOBs as memcmp, the order of Python bytes, and the path is the
        primary key: the same sequence ``rows_digest`` sorts into.
        """
        h = _RowHasher()
        for path, role, record in self.db.execute(
            "select path, role, record from files order by path"
        ):
            h.add(bytes(path), role, record)
        return h.hexdigest()

    def load_baseline(
        self, *, keyed: bool = True
    ) -> tuple[dict[str, FileRecord], dict[str, str]]:
        """Records and roles by path; refuses rows that do not match their digest.

        ``keyed=False`` (another host's database, fleet compare): the host key is not
        ours, so only the plain digest is checked: damage is caught, forgery is not.
        """
        self.begin_read()
        expected = self._expected_digest(keyed)
        records: dict[str, FileRecord] = {}
        roles: dict[str, str] = {}
        hasher = _RowHasher()
        # one pass, rows streamed in path order (SQLite compares BLOBs as memcmp, the same
        # order as Python bytes): no second copy of 100k raw rows in memory
        bad: Exception | None = None
        try:
            cursor = self.db.execute("select path, role, record from files order by path")
            for path_raw, role, record in cursor:
                path_b = bytes(path_raw)
                hasher.add(path_b, role, record)
                if bad is not None:
                    continue
                try:
                    path = os.fsdecode(path_b)
                    records[path] = FileRecord.from_row({"path": path, **json.loads(record)})
                    roles[path] = role
                except (ValueError, KeyError, TypeError) as exc:
                    bad = exc
        except (sqlite3.Error, TypeError, UnicodeError) as exc:
            raise self._damaged(exc) from exc
        if not _same(hasher.hexdigest(), expected):
            raise self._edited()
        if bad is not None:
            raise BaselineCorruptError(f"{self.path}: unreadable baseline row: {bad}") from bad
        return records, roles

    def iter_baseline(self, *, keyed: bool = True) -> Iterator[tuple[str, str, str]]:
        """(path, role, record JSON) in path order, checked against the rows digest.

        For a streaming verify: nothing is kept in memory, and the digest mismatch is
        raised after the last row (consume the iterator fully before trusting a result).
        """
        self.begin_read()
        expected = self._expected_digest(keyed)
        hasher = _RowHasher()
        try:
            cursor = self.db.conn.cursor()
            cursor.execute("select path, role, record from files order by path")
            for path_raw, role, record in cursor:
                path_b = bytes(path_raw)
                hasher.add(path_b, role, record)
                yield os.fsdecode(path_b), role, record
        except (sqlite3.Error, TypeError, UnicodeError) as exc:
            raise self._damaged(exc) from exc
        if not _same(hasher.hexdigest(), expected):
            raise self._edited()

    def _edited(self) -> BaselineCorruptError:
        return BaselineCorruptError(
            f"{self.path}: baseline rows do not match their checksum: the database was "
            "edited outside mail-integrity; restore it from your off-host copy"
        )

    def _damaged(self, exc: Exception) -> MonitorError:
        if isinstance(exc, sqlite3.Error):
            return classify(exc, self.path)
        return BaselineCorruptError(f"{self.path}: baseline database damaged: {exc}")

    def _expected_digest(self, keyed: bool) -> str:
        """The recorded rows digest, after checking its host-keyed checksum (``rows_mac``).

        A database without one (made before keyed checksums) is accepted only while no
        key exists for it; once sealed with a key, a missing ``rows_mac`` is a forgery.
        """
        try:
            expected = self.get_meta("rows_digest")
            mac = self.get_meta("rows_mac")
            generation = self.generation
        except (sqlite3.Error, ValueError, TypeError) as exc:
            raise self._damaged(exc) from exc
        if expected is None:
            raise BaselineMissingError(
                f"{self.path} holds no baseline; run `mail-integrity init` first"
            )
        if not keyed or self.path == ":memory:":
            return expected
        kpath = key_path(self.path, self.state_dir)
        key = _read_key(kpath)
        if mac is None and key is None:
            self._legacy = True
            return expected
        if key is None:
            raise BaselineCorruptError(
                f"{self.path}: its checksum key {kpath} is missing: cannot tell whether the "
                "rows were edited; restore the key (or the whole state directory) from backup"
            )
        if mac is None or not _same(mac, rows_mac(key, expected, generation)):
            raise BaselineCorruptError(
                f"{self.path}: baseline rows do not match their checksum (keyed with {kpath}): "
                "the database was edited outside mail-integrity; restore it from your "
                "off-host copy"
            )
        return expected

    def _row(self, rec: FileRecord, role: str) -> dict[str, Any]:
        return {
            "path": os.fsencode(rec.path),
            "role": role,
            "digest": rec.digest,
            "mode": rec.mode,
            "record": record_json(rec),
        }

    def replace_baseline(self, records: Iterable[FileRecord], roles: Mapping[str, str]) -> None:
        """Write a whole new baseline (init): old rows go, the generation goes up."""
        self.write_baseline((r, roles.get(r.path, "")) for r in records)

    def write_baseline(self, rows: Iterable[tuple[FileRecord, str]]) -> int:
        """``replace_baseline`` for a stream of (record, role): one transaction, each row
        written as it comes and then dropped (init of 100k files in bounded memory).
        Returns the number of rows written."""
        count = 0

        def values() -> Iterator[tuple[bytes, str, str | None, int, str]]:
            nonlocal count
            for rec, role in rows:
                count += 1
                yield os.fsencode(rec.path), str(role), rec.digest, rec.mode, record_json(rec)

        with self.db.atomic():
            self.db.execute("delete from files")
            self.db.conn.executemany(
                "insert into files (path, role, digest, mode, record) values (?, ?, ?, ?, ?)",
                values(),
            )
            self._seal()
        return count

    def apply_changes(
        self,
        upserts: Iterable[FileRecord],
        deletes: Iterable[str],
        roles: Mapping[str, str],
        *,
        who: str,
        reason: str,
        before: Mapping[str, FileRecord | None],
        standing: Mapping[str, Iterable[Finding]] | None = None,
        acknowledge: Iterable[Finding] = (),
    ) -> int:
        """Accept changes into the baseline (update), keeping who/when/why/before/after.

        ``standing``: the new standing conditions of these paths (replacing their old ones).
        ``acknowledge``: findings the admin accepts as they are (kept as the acceptance's
        "what"); each stays quiet until it goes away or its value changes (a new risk).
        Open findings on an accepted path are acknowledged too.
        """
        at = now()
        gen = self.generation + 1
        history: dict[str, dict[str, Any]] = {}
        acked: dict[str, list[Finding]] = {}
        for f in acknowledge:
            acked.setdefault(f.path, []).append(f)
        with self.db.atomic():
            for rec in upserts:
                self.db.table("files").upsert(self._row(rec, roles.get(rec.path, "")), pk="path")
                old = before.get(rec.path)
                history[rec.path] = self._acceptance(rec.path, at, who, reason, old, rec, gen)
            for path in deletes:
                self.db.execute("delete from files where path = ?", [os.fsencode(path)])
                history[path] = self._acceptance(path, at, who, reason, before.get(path), None, gen)
            for path, found in (standing or {}).items():
                self._set_standing(path, found)
            for path in deletes:
                self._set_standing(path, ())
            for path in history:
                acked.setdefault(path, []).extend(self._open_on(path))
                self._drop_acks(path)  # a new baseline record: only its current risks stay
            for path, found in sorted(acked.items()):
                unique = {finding_key(f): f for f in found}
                self._acknowledge(unique, at, who, reason)
                row = history.setdefault(
                    path, self._acceptance(path, at, who, reason, None, None, gen)
                )
                row["acknowledged"] = json.dumps(
                    [_what(f) for f in unique.values()], sort_keys=True, default=str
                )
            self.db.table("acceptances").insert_all(history.values())
            self._seal(gen)
        return len(history)

    def _open_on(self, path: str) -> list[Finding]:
        rows = self.db.query(
            "select * from findings where status = 'open' and path = ?", [os.fsencode(path)]
        )
        return [row_finding(r) for r in rows]

    def keep_acks(self, keys: Iterable[str]) -> None:
        """A new baseline (init): acknowledgements of conditions it no longer has go."""
        keep = set(keys)
        rows = self.db.execute("select key from findings where status = 'accepted'").fetchall()
        with self.db.atomic():
            for (key,) in rows:
                if key not in keep:
                    self.db.table("findings").update(
                        key,
                        {"status": "resolved", "ack_at": None, "ack_who": None,
                         "ack_reason": None, "ack_after": None},
                    )  # fmt: skip

    def _drop_acks(self, path: str) -> None:
        self.db.execute(
            "update findings set status = 'resolved', ack_at = null, ack_who = null, "
            "ack_reason = null, ack_after = null where path = ? and status = 'accepted'",
            [os.fsencode(path)],
        )

    def _acknowledge(self, found: Mapping[str, Finding], at: str, who: str, reason: str) -> None:
        table = self.db.table("findings")
        for key, f in found.items():
            ack = {"status": "accepted", "last_seen": at, "ack_at": at, "ack_who": who,
                   "ack_reason": reason, "ack_after": _text(f.after)}  # fmt: skip
            if list(self.db.query("select 1 from findings where key = ?", [key])):
                table.update(key, ack)
            else:
                table.insert({**_finding_row(key, f, at, None), **ack})

    # -- standing conditions ------------------------------------------------------------

    def _set_standing(self, path: str, found: Iterable[Finding]) -> None:
        raw = os.fsencode(path)
        self.db.execute("delete from standing where path = ?", [raw])
        rows = [
            {"key": finding_key(f), "path": raw, "rule": f.rule, "attribute": f.attribute,
             "severity": str(f.severity)}
            for f in found
        ]  # fmt: skip
        if rows:
            self.db.table("standing").upsert_all(rows, pk="key")

    def replace_standing(self, found: Iterable[Finding]) -> None:
        """The baseline's standing conditions (init): high or critical at baseline time."""
        with self.db.atomic():
            self.db.execute("delete from standing")
            by_path: dict[str, list[Finding]] = {}
            for f in found:
                by_path.setdefault(f.path, []).append(f)
            for path, group in by_path.items():
                self._set_standing(path, group)
            self.set_meta("standing", "1")

    def has_standing(self) -> bool:
        """False for a baseline built before standing findings existed (0.1)."""
        return self.get_meta("standing") is not None

    def has_paths(self, paths: Iterable[str]) -> set[str]:
        """Which of these paths are baselined rows."""
        found = set()
        for path in paths:
            row = self.db.execute("select 1 from files where path = ?", [os.fsencode(path)])
            if row.fetchone() is not None:
                found.add(path)
        return found

    def baseline_paths(self) -> list[str]:
        return [os.fsdecode(bytes(r[0])) for r in self.db.execute("select path from files")]

    def standing(self, scope: Iterable[str] | None = None) -> dict[str, set[str]]:
        """Finding keys of the standing conditions by path (only ``scope``'s, if given)."""
        out: dict[str, set[str]] = {}
        keep = None if scope is None else {os.fsencode(p) for p in scope}
        for raw, key in self.db.execute("select path, key from standing"):
            if keep is None or bytes(raw) in keep:
                out.setdefault(os.fsdecode(bytes(raw)), set()).add(key)
        return out

    def acknowledged(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Acknowledgement rows (who, when, why, the value then) of those finding keys."""
        wanted = set(keys)
        sql = (
            "select key, ack_at, ack_who, ack_reason, ack_after from findings "
            "where status = 'accepted' and ack_at is not null"
        )
        return {row["key"]: row for row in self.db.query(sql) if row["key"] in wanted}

    @staticmethod
    def _acceptance(
        path: str,
        at: str,
        who: str,
        reason: str,
        old: FileRecord | None,
        new: FileRecord | None,
        gen: int,
    ) -> dict[str, Any]:
        return {
            "path": os.fsencode(path),
            "at": at,
            "who": who,
            "reason": reason,
            "before": record_json(old) if old else None,
            "after": record_json(new) if new else None,
            "generation": gen,
        }

    def _seal(self, generation: int | None = None) -> None:
        gen = self.generation + 1 if generation is None else generation
        digest = self.current_digest()
        self.set_meta("generation", str(gen))
        self.set_meta("rows_digest", digest)
        if self.path != ":memory:":
            key = _make_key(key_path(self.path, self.state_dir))
            self.set_meta("rows_mac", rows_mac(key, digest, gen))
        self.set_meta("sealed_at", now())

    # -- runs and findings --------------------------------------------------------------

    def begin_run(self, command: str, root: str, profiles: Iterable[str], host: str) -> int:
        table = self.db.table("runs")
        table.insert(
            {
                "command": command,
                "started": now(),
                "root": root,
                "profiles": ",".join(profiles),
                "host": host,
            }
        )
        return int(table.last_pk)  # type: ignore[arg-type]

    def last_full_read(self) -> str | None:
        """When the latest verify of this baseline generation that read every file (its
        summary's ``content`` is ``read``, not ``trusted-ctime``) finished; None if none."""
        since = self.get_meta("sealed_at") or ""
        rows = self.db.execute(
            "select finished, summary from runs where command = 'verify' and finished >= ? "
            "order by id desc",
            [since],
        )
        for finished, summary in rows:
            try:
                if json.loads(summary or "{}").get("content") == "read":
                    return str(finished)
            except (ValueError, AttributeError):
                continue
        return None

    def finish_run(self, run_id: int, summary: Mapping[str, Any], exit_code: int) -> None:
        self.db.table("runs").update(
            run_id,
            {"finished": now(), "summary": json.dumps(summary), "exit_code": exit_code},
        )

    def track_findings(
        self,
        run_id: int,
        findings: Iterable[Finding],
        *,
        scope: Iterable[str] | None = None,
        acknowledged: Iterable[str] = (),
    ) -> tuple[list[Finding], list[dict[str, Any]]]:
        """Update the life cycle: returns (new findings, rows just resolved).

        ``scope`` limits resolution to those paths (the daemon re-checks a few paths at a
        time); None means a full run, where every open finding not seen again is resolved.
        ``acknowledged``: keys of findings still present but acknowledged (they stay so).
        A finding that comes back after being resolved, or whose acknowledged value
        changed (a new risk), is new again.
        """
        at = now()
        seen: set[str] = set(acknowledged)
        new: list[Finding] = []
        table = self.db.table("findings")
        with self.db.atomic():
            for f in findings:
                key = finding_key(f)
                seen.add(key)
                rows = list(self.db.query("select status from findings where key = ?", [key]))
                if rows and rows[0]["status"] == "open":
                    table.update(key, {"last_seen": at, "run_id": run_id, "after": _text(f.after)})
                    continue
                new.append(f)
                table.upsert(_finding_row(key, f, at, run_id), pk="key")
            resolved = self._resolve_unseen(seen, at, scope)
        return new, resolved

    def _resolve_unseen(
        self, seen: set[str], at: str, scope: Iterable[str] | None
    ) -> list[dict[str, Any]]:
        open_rows = list(self.db.query("select * from findings where status = 'open'"))
        paths = {os.fsencode(p) for p in scope} if scope is not None else None
        resolved = []
        for row in open_rows:
            if row["key"] in seen or (paths is not None and bytes(row["path"]) not in paths):
                continue
            self.db.table("findings").update(row["key"], {"status": "resolved", "last_seen": at})
            row["path"] = os.fsdecode(bytes(row["path"]))
            resolved.append(row)
        return resolved

    def open_findings(self, min_rank: int = 0) -> list[dict[str, Any]]:
        from integrity.model import Severity

        rows = []
        for row in self.db.query("select * from findings where status = 'open'"):
            if Severity(row["severity"]).rank >= min_rank:
                row["path"] = os.fsdecode(bytes(row["path"]))
                rows.append(row)
        return rows

    def open_findings_as(self) -> list[Finding]:
        """Every open finding, as Finding values (``update`` acknowledges them)."""
        rows = self.db.query("select * from findings where status = 'open'")
        return [row_finding(r) for r in rows]

    def unsent(self, keys: Iterable[str]) -> set[str]:
        """Which of these findings were never sent to the SIEM (their first send is an
        alert, not a re-alert)."""
        wanted = set(keys)
        rows = self.db.execute("select key from findings where last_sent is null")
        return {k for (k,) in rows if k in wanted}

    def mark_sent(self, keys: Iterable[str]) -> None:
        at = now()
        for key in keys:
            self.db.table("findings").update(key, {"last_sent": at})

    def history(self, limit: int = 50) -> dict[str, list[dict[str, Any]]]:
        def decoded(sql: str) -> list[dict[str, Any]]:
            out = []
            for row in self.db.query(sql, [limit]):
                if isinstance(row.get("path"), bytes):
                    row["path"] = os.fsdecode(row["path"])
                if isinstance(row.get("acknowledged"), str):
                    row["acknowledged"] = json.loads(row["acknowledged"])
                out.append(row)
            return out

        return {
            "runs": decoded("select * from runs order by id desc limit ?"),
            "acceptances": decoded(
                "select id, path, at, who, reason, generation, acknowledged from acceptances "
                "order by id desc limit ?"
            ),
            "findings": decoded(
                "select path, rule, severity, attribute, message, first_seen, last_seen, status, "
                "ack_who, ack_at, ack_reason from findings order by last_seen desc limit ?"
            ),
        }
