"""Record: the baseline database. The only module that imports sqlite_utils.

One SQLite file holds the baseline rows, the run log, the findings with their life cycle
(open -> resolved | accepted) and the acceptances (who, when, why, before, after).
Paths are stored as BLOBs (``os.fsencode``) so non-UTF-8 names round-trip. The rows carry
a keyed BLAKE3 digest in ``meta``: a row edited outside the tool is caught on load.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import blake3

from integrity._imports import without_numpy

with without_numpy():
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

from integrity.errors import BaselineCorruptError, BaselineMissingError, StoreError
from integrity.model import FileRecord, Finding

ROWS_CONTEXT = "mail-integrity 2026-11 baseline rows v1"
DEFAULT_DB = "/var/lib/mail-integrity/baseline.db"

migrations = Migrations("mail-integrity")


@migrations()
def m001_initial(db: Database) -> None:
    db.table("meta").create({"key": str, "value": str}, pk="key")
    db.table("files").create(
        {"path": bytes, "role": str, "digest": str, "mode": int, "record": str},
        pk="path",
        not_null={"role", "record"},
    )
    db.table("runs").create(
        {
            "id": int,
            "command": str,
            "started": str,
            "finished": str,
            "root": str,
            "profiles": str,
            "host": str,
            "summary": str,
            "exit_code": int,
        },
        pk="id",
    )
    db.table("findings").create(
        {
            "key": str,
            "path": bytes,
            "rule": str,
            "severity": str,
            "attribute": str,
            "before": str,
            "after": str,
            "message": str,
            "first_seen": str,
            "last_seen": str,
            "last_sent": str,
            "status": str,
            "run_id": int,
        },
        pk="key",
    )
    db.table("acceptances").create(
        {
            "id": int,
            "path": bytes,
            "at": str,
            "who": str,
            "reason": str,
            "before": str,
            "after": str,
            "generation": int,
        },
        pk="id",
    )


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def record_json(rec: FileRecord) -> str:
    row = rec.to_row()
    del row["path"]
    return json.dumps(row, sort_keys=True, separators=(",", ":"))


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
        for part in (path, role.encode(), record.encode()):
            self._h.update(len(part).to_bytes(8, "big"))
            self._h.update(part)

    def hexdigest(self) -> str:
        return "blake3:" + self._h.hexdigest()


def finding_key(f: Finding) -> str:
    """Identity of a finding across runs: same path, rule and attribute = same problem."""
    h = blake3.blake3(os.fsencode(f.path) + b"\0" + f"{f.rule}\0{f.attribute}".encode())
    return h.hexdigest()[:32]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


class Store:
    """The baseline database. Use ``Store.open`` (must exist) or ``Store.create``."""

    def __init__(self, db: Database, path: str) -> None:
        self.db = db
        self.path = path

    @classmethod
    def open(cls, path: str, *, create: bool = False, shared: bool = False) -> Store:
        """``shared``: the connection may pass between threads that never use it at once."""
        exists = path == ":memory:" or os.path.exists(path)
        if not exists and not create:
            raise BaselineMissingError(
                f"no baseline at {path}; run `mail-integrity init` first (or pass --db)"
            )
        if not exists and path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise StoreError(f"{path}: cannot create its directory: {exc.strerror}") from exc
        try:
            db = Database(
                sqlite3.connect(path, check_same_thread=not shared), execute_plugins=False
            )
            if path != ":memory:":
                db.enable_wal()
            migrations.apply(db)
        except sqlite3.DatabaseError as exc:
            raise BaselineCorruptError(f"{path}: not a usable baseline database: {exc}") from exc
        if path != ":memory:":
            os.chmod(path, 0o600)
        return cls(db, path)

    def close(self) -> None:
        self.db.close()

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
        return rows_digest(self.raw_rows())

    def load_baseline(self) -> tuple[dict[str, FileRecord], dict[str, str]]:
        """Records and roles by path; refuses rows that do not match their digest."""
        expected = self.get_meta("rows_digest")
        if expected is None:
            raise BaselineMissingError(
                f"{self.path} holds no baseline; run `mail-integrity init` first"
            )
        records: dict[str, FileRecord] = {}
        roles: dict[str, str] = {}
        hasher = _RowHasher()
        # one pass, rows streamed in path order (SQLite compares BLOBs as memcmp, the same
        # order as Python bytes): no second copy of 100k raw rows in memory
        cursor = self.db.execute("select path, role, record from files order by path")
        bad: Exception | None = None
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
        if not hmac.compare_digest(hasher.hexdigest(), expected):
            raise BaselineCorruptError(
                f"{self.path}: baseline rows do not match their checksum: the database was "
                "edited outside mail-integrity; restore it from your off-host copy"
            )
        if bad is not None:
            raise BaselineCorruptError(f"{self.path}: unreadable baseline row: {bad}") from bad
        return records, roles

    def iter_baseline(self) -> Iterator[tuple[str, str, str]]:
        """(path, role, record JSON) in path order, checked against the rows digest.

        For a streaming verify: nothing is kept in memory, and the digest mismatch is
        raised after the last row (consume the iterator fully before trusting a result).
        """
        expected = self.get_meta("rows_digest")
        if expected is None:
            raise BaselineMissingError(
                f"{self.path} holds no baseline; run `mail-integrity init` first"
            )
        hasher = _RowHasher()
        cursor = self.db.conn.cursor()
        cursor.execute("select path, role, record from files order by path")
        for path_raw, role, record in cursor:
            path_b = bytes(path_raw)
            hasher.add(path_b, role, record)
            yield os.fsdecode(path_b), role, record
        if not hmac.compare_digest(hasher.hexdigest(), expected):
            raise BaselineCorruptError(
                f"{self.path}: baseline rows do not match their checksum: the database was "
                "edited outside mail-integrity; restore it from your off-host copy"
            )

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
        with self.db.atomic():
            self.db.execute("delete from files")
            self.db.table("files").insert_all(
                (self._row(r, roles.get(r.path, "")) for r in records), batch_size=1000
            )
            self._seal()

    def apply_changes(
        self,
        upserts: Iterable[FileRecord],
        deletes: Iterable[str],
        roles: Mapping[str, str],
        *,
        who: str,
        reason: str,
        before: Mapping[str, FileRecord | None],
    ) -> int:
        """Accept changes into the baseline (update), keeping who/when/why/before/after."""
        at = now()
        gen = self.generation + 1
        history: list[dict[str, Any]] = []
        with self.db.atomic():
            for rec in upserts:
                self.db.table("files").upsert(self._row(rec, roles.get(rec.path, "")), pk="path")
                old = before.get(rec.path)
                history.append(self._acceptance(rec.path, at, who, reason, old, rec, gen))
            for path in deletes:
                self.db.execute("delete from files where path = ?", [os.fsencode(path)])
                history.append(self._acceptance(path, at, who, reason, before.get(path), None, gen))
            self.db.table("acceptances").insert_all(history)
            self.db.execute(
                "update findings set status = 'accepted', last_seen = ? "
                "where status = 'open' and path in (select path from acceptances "
                "where generation = ?)",
                [at, gen],
            )
            self._seal(gen)
        return len(history)

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
        self.set_meta("generation", str(gen))
        self.set_meta("rows_digest", self.current_digest())
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

    def finish_run(self, run_id: int, summary: Mapping[str, Any], exit_code: int) -> None:
        self.db.table("runs").update(
            run_id,
            {"finished": now(), "summary": json.dumps(summary), "exit_code": exit_code},
        )

    def track_findings(
        self, run_id: int, findings: Iterable[Finding], *, scope: Iterable[str] | None = None
    ) -> tuple[list[Finding], list[dict[str, Any]]]:
        """Update the life cycle: returns (new findings, rows just resolved).

        ``scope`` limits resolution to those paths (the daemon re-checks a few paths at a
        time); None means a full run, where every open finding not seen again is resolved.
        """
        at = now()
        seen: set[str] = set()
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
                table.upsert(
                    {
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
                    },
                    pk="key",
                )
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
                out.append(row)
            return out

        return {
            "runs": decoded("select * from runs order by id desc limit ?"),
            "acceptances": decoded(
                "select id, path, at, who, reason, generation from acceptances "
                "order by id desc limit ?"
            ),
            "findings": decoded(
                "select path, rule, severity, attribute, message, first_seen, last_seen, status "
                "from findings order by last_seen desc limit ?"
            ),
        }
