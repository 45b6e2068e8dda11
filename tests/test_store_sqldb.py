"""store on plain sqlite3: verify's path never imports sqlite-utils, rows are written
byte for byte as sqlite-utils wrote them (old databases and their checksums stay valid),
and a pending migration is still applied by sqlite-utils."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from sqlite_utils.db import NotFoundError as SuNotFound

import integrity
from integrity import schema, sqldb
from integrity import store as store_mod
from integrity.cli import main
from integrity.demo import build_sandbox
from integrity.model import FileRecord, FileType, Finding, Severity
from integrity.store import Store, finding_key, rows_digest

REPO = str(Path(integrity.__file__).resolve().parents[1])
DIGEST_A = "blake3:" + "a" * 64
ODD = os.fsdecode(b"/etc/\xff")
NOW = "2026-05-01T12:00:00+00:00"
TABLES = ("meta", "files", "runs", "findings", "acceptances", "standing")


def rec(path: str, **kw: Any) -> FileRecord:
    base: dict[str, Any] = {"ftype": FileType.FILE, "mode": 0o644, "uid": 0, "gid": 0}
    return FileRecord(path=path, **{**base, "digest": DIGEST_A, **kw})


RECORDS = [
    rec("/etc/aliases", owner="root", size=10),
    rec("/etc/mail/sendmail.cf", facts={"options": {"PrivacyOptions": ["goaway", "é"]}}),
    rec("/usr/sbin/sendmail", mode=0o2555, xattrs=(("user.x", "ff"),)),
    rec(ODD),
]
ROLES = {r.path: "config" for r in RECORDS} | {"/usr/sbin/sendmail": "binary"}


def finding(path: str, rule: str, after: Any = "0666") -> Finding:
    return Finding(path, rule, Severity.HIGH, "mode loosened", "mode", "0644", after)


def run_python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


# --------------------------------------------------------------------------- verify's path


@pytest.fixture
def sealed(tmp_path: Path) -> str:
    """A baseline with one open finding (to be resolved) and one standing condition."""
    path = str(tmp_path / "state" / "baseline.db")
    s = Store.open(path, create=True)
    s.replace_baseline(RECORDS, ROLES)
    s.replace_standing([finding("/usr/sbin/sendmail", "MI-SETID-ADDED")])
    run = s.begin_run("init", "/", ["demo"], "h")
    s.track_findings(run, [finding("/etc/aliases", "MI-PERM-LOOSENED")])
    s.finish_run(run, {}, 0)
    s.close()
    return path


def test_verify_store_calls_do_not_import_sqlite_utils(sealed: str) -> None:
    """What api.verify does with the store, in a fresh process: no sqlite_utils loaded."""
    proc = run_python(
        """
        import json, sys
        from integrity.model import Finding, Severity
        from integrity.store import Store, finding_key
        store = Store.open(sys.argv[1])
        store.begin_read()
        rows = list(store.iter_baseline())
        header = [store.generation, store.get_meta("rows_digest"), store.notes()]
        run = store.begin_run("verify", "/", ["demo"], "h")
        found = [Finding("/etc/mail/sendmail.cf", "MI-CONTENT", Severity.HIGH, "changed")]
        assert store.has_standing()
        wanted = store.standing(None)
        acks = store.acknowledged(finding_key(f) for f in found)
        new, resolved = store.track_findings(run, found, acknowledged=())
        unsent = store.unsent(finding_key(f) for f in found)
        store.mark_sent(unsent)
        store.finish_run(run, {"findings": len(found)}, 8)
        store.close()
        print(json.dumps([len(rows), len(new), [r["rule"] for r in resolved], sorted(wanted)]))
        print("sqlite_utils" in sys.modules)
        """,
        sealed,
    )
    assert proc.returncode == 0, proc.stderr
    summary, loaded = proc.stdout.splitlines()
    assert json.loads(summary) == [4, 1, ["MI-PERM-LOOSENED"], ["/usr/sbin/sendmail"]]
    assert loaded == "False"
    s = Store.open(sealed)
    assert [r["command"] for r in s.history()["runs"]] == ["verify", "init"]
    assert [f["rule"] for f in s.open_findings()] == ["MI-CONTENT"]
    s.close()


def test_verify_command_does_not_import_sqlite_utils(tmp_path: Path) -> None:
    """The whole ``verify`` of an existing baseline, import by import (-X importtime)."""
    root, profiles = build_sandbox(tmp_path)
    (tmp_path / "none.toml").write_text("")
    args = ["--root", str(root), "--db", str(tmp_path / "b.db"), "--profile", "demo",
            "--profile-dir", str(profiles), "--config", str(tmp_path / "none.toml")]  # fmt: skip
    assert main(["init", "-q", *args]) == 0
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "integrity", "verify", "-q", *args],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": REPO}, timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode < 16, proc.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()]
    assert "integrity.store" in imported
    assert not [m for m in imported if m.startswith("sqlite_utils")]


# --------------------------------------------------------------------------- same rows


class LegacyDatabase(sqlite_utils.Database):
    """The store's database before sqldb (0.2.0): sqlite-utils with BEGIN IMMEDIATE."""

    reading = False
    path = "baseline database"

    def end_read(self) -> None:
        if self.reading:
            self.reading = False
            if self.conn.in_transaction:
                self.conn.commit()

    @contextlib.contextmanager
    def atomic(self) -> Iterator[sqlite_utils.Database]:
        self.end_read()
        if self.conn.in_transaction:
            with super().atomic():
                yield self
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        self.conn.execute("COMMIT")

    def execute(self, sql: str, parameters: Any = None) -> sqlite3.Cursor:
        if self.reading and sql.lstrip()[:6].upper() not in ("SELECT", "PRAGMA", "WITH R"):
            self.end_read()
        return super().execute(sql, parameters)


def legacy_store(path: str) -> Store:
    """A Store over sqlite-utils, as ``Store.open`` made it before sqldb."""
    conn = sqlite3.connect(path, isolation_level="IMMEDIATE")
    conn.text_factory = store_mod._text_column
    db = LegacyDatabase(conn, execute_plugins=False)
    db.path = path
    db.enable_wal()
    schema.migrations().apply(db)
    return Store(db, path)


def exercise(s: Store) -> None:
    """Every write the store makes: init, three verifies, an update, a re-init."""
    s.replace_baseline(RECORDS, ROLES)
    for key, value in (("root", "/"), ("profiles", "demo"), ("host", "h")):
        s.set_meta(key, value)
    s.replace_standing([finding("/usr/sbin/sendmail", "MI-SETID-ADDED")])
    run = s.begin_run("init", "/", ["demo"], "h")
    s.keep_acks([])
    s.finish_run(run, {"accepted": 0}, 0)
    a, b = finding("/etc/aliases", "MI-PERM-LOOSENED"), finding(ODD, "MI-OWNER", ["x", 1])
    c = finding("/etc/mail/sendmail.cf", "MI-CONTENT", {"line": 3, "text": "é"})
    run = s.begin_run("verify", "/", ["demo"], "h")
    s.track_findings(run, [a, b, c])
    s.mark_sent(s.unsent(finding_key(f) for f in (a, b)))
    s.finish_run(run, {"findings": 3, "nested": {"k": [1, "é"]}}, 8)
    run = s.begin_run("verify", "/", ["demo"], "h")
    s.track_findings(run, [finding(a.path, a.rule, "0777"), c], scope=[a.path, b.path])
    s.finish_run(run, {}, 8)
    before = {r.path: r for r in RECORDS}
    s.apply_changes(
        [rec("/etc/aliases", size=11), rec("/etc/new")], ["/usr/sbin/sendmail"], ROLES,
        who="root", reason="ticket 7", before=before,
        standing={"/etc/new": [finding("/etc/new", "MI-PERM-LOOSENED")]},
        acknowledge=[c, finding("/etc/other", "MI-NEW", None)],
    )  # fmt: skip
    run = s.begin_run("verify", "/", ["demo"], "h")
    s.track_findings(run, [b])
    s.finish_run(run, {}, 8)
    s.keep_acks([finding_key(c)])


def dump(path: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table as SQL literals (storage class and bytes exactly)."""
    conn = sqlite3.connect(path)
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table in TABLES:
        cols = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
        sql = f"select {', '.join(f'quote({c})' for c in cols)} from {table} order by rowid"
        out[table] = [tuple(zip(cols, row, strict=True)) for row in conn.execute(sql)]
    out["schema"] = conn.execute(
        "select type, name, sql from sqlite_master order by name"
    ).fetchall()
    out["migrations"] = conn.execute(
        "select migration_set, name from _sqlite_migrations"
    ).fetchall()
    conn.close()
    return out


def test_rows_are_byte_identical_to_sqlite_utils(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same history through sqlite-utils (0.2.0) and through sqldb: every row, the
    schema and the migration records are identical; each reads the other's database."""
    monkeypatch.setattr(store_mod, "now", lambda: NOW)
    key = os.urandom(32)
    paths = {}
    for name in ("legacy", "plain"):
        (tmp_path / name).mkdir(mode=0o700)
        (tmp_path / name / "b.key").write_bytes(key)  # same host key: same rows_mac
        os.chmod(tmp_path / name / "b.key", 0o600)
        paths[name] = str(tmp_path / name / "b.db")
    old = legacy_store(paths["legacy"])
    exercise(old)
    old.close()
    new = Store.open(paths["plain"], create=True)
    exercise(new)
    new.close()
    legacy, plain = dump(paths["legacy"]), dump(paths["plain"])
    assert legacy == plain
    assert len(plain["findings"]) == 4 and len(plain["acceptances"]) == 5  # not vacuous

    read: dict[str, Any] = {}
    for name, path in paths.items():
        s = Store.open(path)
        records, roles = s.load_baseline()
        read[name] = (
            s.current_digest(), s.get_meta("rows_digest"), list(s.iter_baseline()),
            {p: store_mod.record_json(r) for p, r in records.items()}, roles,
            s.open_findings(), s.open_findings_as(), s.history(), s.standing(),
        )  # fmt: skip
        s.close()
    assert read["legacy"] == read["plain"]
    digest, stored_digest, rows = read["plain"][:3]
    assert digest == stored_digest == rows_digest((os.fsencode(p), r, j) for p, r, j in rows)
    old = legacy_store(paths["plain"])  # and today's code reads the new database
    assert old.load_baseline()[0].keys() == read["plain"][3].keys()
    assert old.open_findings() == read["plain"][5]
    old.close()


VALUES: list[dict[str, Any]] = [
    {"id": 1, "txt": "é\x00", "blob": b"\xff\x00", "num": 1.5, "flag": True,
     "obj": {"b": [1, "é"], "a": None, "p": Path("/x")}, "seq": ["x", ("y", 2)],
     "tup": (1, "two"), "when": dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC),
     "day": dt.date(2026, 5, 1), "clock": dt.time(1, 2, 3), "span": dt.timedelta(hours=1)},
    {"id": 2, "txt": None, "obj": {}, "seq": []},
]  # fmt: skip


def test_table_operations_store_values_as_sqlite_utils() -> None:
    """insert, insert_all, upsert (the named columns only), upsert_all and update store
    every kind of value as sqlite-utils does; update of a missing row is an error."""

    def run(db: Any, not_found: type[Exception]) -> list[dict[str, Any]]:
        cols = dict.fromkeys(["txt", "obj", "seq", "tup", "when", "day", "clock", "span"], str)
        cols |= {"id": int, "blob": bytes, "num": float, "flag": int}
        sqlite_utils.Database(db.conn).table("t").create(cols, pk="id")
        table = db.table("t")
        table.insert(VALUES[0])
        assert table.last_pk == 1
        table.insert_all([VALUES[1], {"id": 3, "txt": "three"}])
        table.upsert({"id": 1, "txt": "upserted", "seq": [3]}, pk="id")
        table.upsert({"id": 4, "obj": {"z": 1}}, pk="id")
        table.upsert_all([{"id": 2, "num": 2.0}, {"id": 5, "txt": "five"}], pk="id")
        table.update(3, {"obj": {"u": ["é"]}, "num": None})
        with pytest.raises(not_found):
            table.update(99, {"txt": "x"})
        quoted = ", ".join(f"quote({sqldb.quote(c)})" for c in cols)
        got = db.conn.execute(f"select {quoted} from t order by id").fetchall()
        return [dict(zip(cols, row, strict=True)) for row in got]

    su = run(sqlite_utils.Database(memory=True), SuNotFound)
    plain = sqldb.Database(sqlite3.connect(":memory:"), store_mod.classify)
    assert run(plain, sqldb.NotFoundError) == su
    assert (su[0]["obj"], su[0]["seq"]) == (
        """'{"b": [1, "é"], "a": null, "p": "PosixPath(''/x'')"}'""",
        "'[3]'",
    )


# --------------------------------------------------------------------------- migrations


def test_migration_names_are_the_registered_set() -> None:
    registered = schema.migrations().pending(sqlite_utils.Database(memory=True))
    assert [m.name for m in registered] == list(schema.NAMES)


def test_up_to_date_database_has_nothing_pending(sealed: str) -> None:
    conn = sqlite3.connect(sealed)
    assert schema.pending(conn) == []
    conn.close()


def test_pending_migration_is_applied_on_open(tmp_path: Path) -> None:
    """A database at m001 only (0.1): opening it applies m002, once, through sqlite-utils."""
    path = str(tmp_path / "old.db")
    db = sqlite_utils.Database(path)
    schema.migrations().apply(db, stop_before="m002_standing")
    db["files"].insert({"path": b"/etc/aliases", "role": "config", "record": "{}"})
    db.close()
    conn = sqlite3.connect(path)
    assert schema.pending(conn) == ["m002_standing"]
    conn.close()

    s = Store.open(path)
    assert not s.has_standing()
    s.replace_standing([finding("/etc/aliases", "MI-PERM-LOOSENED")])  # m002's table
    key = finding_key(finding("/etc/aliases", "MI-PERM-LOOSENED"))
    assert s.standing() == {"/etc/aliases": {key}}
    s.close()
    conn = sqlite3.connect(path)
    assert schema.pending(conn) == []
    names = conn.execute("select name from _sqlite_migrations order by id").fetchall()
    assert [n for (n,) in names] == list(schema.NAMES)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(findings)")}
    assert {"origin", "ack_at", "ack_who", "ack_reason", "ack_after"} <= columns
    assert conn.execute("select count(*) from files").fetchone() == (1,)
    conn.close()
    Store.open(path).close()  # nothing left to apply: a second open changes nothing


def test_memory_store_gets_the_schema_and_round_trips() -> None:
    s = Store.open(":memory:")
    assert schema.pending(s.db.conn) == []
    s.replace_baseline(RECORDS, ROLES)
    records, roles = s.load_baseline()
    assert records == {r.path: r for r in RECORDS} and roles == ROLES
    s.close()
