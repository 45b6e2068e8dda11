"""store: the baseline database round-trips, refuses edited rows, and keeps history."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integrity.errors import BaselineCorruptError, BaselineMissingError, StoreError
from integrity.model import FileRecord, FileType, Finding, Severity
from integrity.store import Store, finding_key

DIGEST_A = "blake3:" + "a" * 64
DIGEST_B = "blake3:" + "b" * 64
ODD = os.fsdecode(b"/etc/\xff")  # non-UTF-8 name: survives as a surrogate escape


def rec(path: str, **kw: Any) -> FileRecord:
    base: dict[str, Any] = {"ftype": FileType.FILE, "mode": 0o644, "uid": 0, "gid": 0}
    return FileRecord(path=path, **{**base, "digest": DIGEST_A, **kw})


RECORDS = [
    rec("/etc/aliases", owner="root", group="root", size=10, mtime_ns=1, inode=7),
    rec(
        "/etc/mail/sendmail.cf",
        facts={"options": {"PrivacyOptions": ["goaway"]}, "warnings": [[3, "odd"]]},
    ),
    rec(
        "/usr/sbin/sendmail-mta",
        mode=0o2555,
        gid=25,
        caps="cap_net_bind_service+ep",
        acl="user::r-x,user:1000:r--,mask::r--,other::r-x",
        xattrs=(("security.capability", "0100"), ("user.x", "ff")),
        flags=frozenset({"immutable"}),
    ),
    rec("/etc/mail/aliases.db", link_target=None, selinux="system_u:object_r:etc_aliases_t:s0"),
    rec("/etc/mail/alias", ftype=FileType.SYMLINK, link_target="aliases", digest=None),
    rec(ODD),
]
ROLES = {r.path: "config" for r in RECORDS} | {"/usr/sbin/sendmail-mta": "binary"}


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "state" / "baseline.db")


@pytest.fixture
def store(db_path: str) -> Iterator[Store]:
    """A fresh on-disk store holding RECORDS as its baseline."""
    s = Store.open(db_path, create=True)
    s.replace_baseline(RECORDS, ROLES)
    yield s
    s.close()


def raw(db_path: str, sql: str, args: tuple[Any, ...] = ()) -> None:
    """Edit the database behind the tool's back, as an intruder would."""
    con = sqlite3.connect(db_path)
    with con:
        con.execute(sql, args)
    con.close()


def finding(path: str, rule: str = "MI-PERM-LOOSENED") -> Finding:
    return Finding(path, rule, Severity.HIGH, "mode loosened", "mode", "0644", "0666")


# --------------------------------------------------------------------------- open


def test_open_missing_db_is_baseline_missing_with_exit_19(db_path: str) -> None:
    """verify against a database that does not exist: exit 19 and a hint to run init."""
    with pytest.raises(BaselineMissingError) as info:
        Store.open(db_path)
    assert info.value.exit_code == 19
    assert "mail-integrity init" in info.value.message
    assert not os.path.exists(db_path)


def test_create_makes_a_private_db_and_its_directory(db_path: str) -> None:
    """init creates the parent directory and a database only root can read (0600)."""
    Store.open(db_path, create=True).close()
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600


def test_reopen_keeps_the_baseline(store: Store, db_path: str) -> None:
    """A second open (plain, not create) sees the sealed baseline and its generation."""
    store.close()
    again = Store.open(db_path)
    assert again.has_baseline()
    assert again.generation == 1
    assert len(again.load_baseline()[0]) == len(RECORDS)
    again.close()


def test_fresh_db_has_no_baseline(db_path: str) -> None:
    """A created but never-initialised database refuses to load, with exit 19."""
    s = Store.open(db_path, create=True)
    with pytest.raises(BaselineMissingError) as info:
        s.load_baseline()
    assert info.value.exit_code == 19
    s.close()


def test_garbage_file_is_corrupt(db_path: str) -> None:
    """A file that is not SQLite at all is a corrupt baseline (exit 19), not a traceback."""
    Path(db_path).parent.mkdir(parents=True)
    Path(db_path).write_bytes(b"this is not a database" * 100)
    with pytest.raises(BaselineCorruptError) as info:
        Store.open(db_path)
    assert info.value.exit_code == 19


def test_uncreatable_directory_is_a_store_error(tmp_path: Path) -> None:
    """A db path below a regular file cannot be created: StoreError, not OSError."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError):
        Store.open(str(tmp_path / "file" / "sub" / "baseline.db"), create=True)


# --------------------------------------------------------------------------- round trip


def test_baseline_round_trips_records_roles_and_odd_paths(store: Store) -> None:
    """Every field, facts, xattrs, flags and a non-UTF-8 path come back equal."""
    records, roles = store.load_baseline()
    assert records == {r.path: r for r in RECORDS}
    assert roles == ROLES
    assert ODD in records and records[ODD].path.encode("utf-8", "surrogateescape") == b"/etc/\xff"


def test_replace_baseline_drops_old_rows_and_bumps_generation(store: Store) -> None:
    """A second init replaces the rows wholesale and raises the generation."""
    store.replace_baseline([rec("/etc/only")], {"/etc/only": "config"})
    records, _ = store.load_baseline()
    assert list(records) == ["/etc/only"]
    assert store.generation == 2


# --------------------------------------------------------------------------- tampering


TAMPERS = [
    ("UPDATE files SET record = replace(record, '\"mode\":420', '\"mode\":438')", ()),
    ("UPDATE files SET record = replace(record, ?, ?)", (DIGEST_A, DIGEST_B)),
    ("UPDATE files SET role = 'volatile' WHERE role = 'binary'", ()),
    ("UPDATE files SET path = CAST('/etc/aliaseZ' AS BLOB) WHERE path = ?", (b"/etc/aliases",)),
    ("DELETE FROM files WHERE path = ?", (b"/usr/sbin/sendmail-mta",)),
    ("DELETE FROM files", ()),
    ("INSERT INTO files (path, role, record) VALUES (?, 'config', ?)", (b"/etc/evil", "{}")),
]


@pytest.mark.parametrize(("sql", "args"), TAMPERS)
def test_rows_edited_outside_the_tool_are_refused(
    store: Store, db_path: str, sql: str, args: tuple[Any, ...]
) -> None:
    """Any edit, delete or insert of a baseline row fails the load with exit 19."""
    store.close()
    raw(db_path, sql, args)
    again = Store.open(db_path)
    with pytest.raises(BaselineCorruptError) as info:
        again.load_baseline()
    assert info.value.exit_code == 19
    assert "checksum" in info.value.message
    again.close()


def test_tamper_check_is_not_fooled_by_a_noop_rewrite(store: Store, db_path: str) -> None:
    """Rewriting a row with identical values (VACUUM-like churn) is not tampering."""
    store.close()
    raw(db_path, "UPDATE files SET record = record")
    raw(db_path, "VACUUM")
    again = Store.open(db_path)
    assert len(again.load_baseline()[0]) == len(RECORDS)
    again.close()


# --------------------------------------------------------------------------- update


def test_apply_changes_records_acceptances_and_bumps_generation(store: Store) -> None:
    """update keeps who/why/before/after per path and raises the generation by one."""
    old = RECORDS[0]
    new = rec(old.path, mode=0o600)
    n = store.apply_changes(
        [new],
        ["/etc/mail/alias"],
        {old.path: "aliases"},
        who="alice",
        reason="ticket 42",
        before={old.path: old, "/etc/mail/alias": RECORDS[4]},
    )
    assert n == 2
    assert store.generation == 2
    records, roles = store.load_baseline()
    assert records[old.path] == new and roles[old.path] == "aliases"
    assert "/etc/mail/alias" not in records
    rows = list(store.db.query("select * from acceptances order by id"))
    assert [(r["who"], r["reason"], r["generation"]) for r in rows] == [
        ("alice", "ticket 42", 2)
    ] * 2
    assert json.loads(rows[0]["before"])["mode"] == 0o644
    assert json.loads(rows[0]["after"])["mode"] == 0o600
    assert rows[1]["after"] is None and json.loads(rows[1]["before"])["ftype"] == "symlink"


def test_apply_changes_accepts_open_findings_on_those_paths(store: Store) -> None:
    """Accepting a path closes its open findings as accepted; others stay open."""
    run = store.begin_run("verify", "/", ["sendmail"], "mx1")
    store.track_findings(run, [finding("/etc/aliases"), finding("/etc/mail/sendmail.cf")])
    store.apply_changes(
        [RECORDS[0]], [], ROLES, who="bob", reason="ok", before={"/etc/aliases": RECORDS[0]}
    )
    status = {r["path"]: r["status"] for r in store.db.query("select path, status from findings")}
    assert status == {b"/etc/aliases": "accepted", b"/etc/mail/sendmail.cf": "open"}


# --------------------------------------------------------------------------- findings life cycle


def test_track_findings_new_then_still_open_then_resolved(store: Store) -> None:
    """A finding is new once, then still open (not new), then resolved when it is gone."""
    a, b = finding("/etc/aliases"), finding(ODD, "MI-OWNER-CHANGED")
    new, resolved = store.track_findings(store.begin_run("verify", "/", [], "h"), [a, b])
    assert (new, resolved) == ([a, b], [])
    new, resolved = store.track_findings(store.begin_run("verify", "/", [], "h"), [a])
    assert new == []
    assert [(r["path"], r["rule"], r["status"]) for r in resolved] == [
        (ODD, "MI-OWNER-CHANGED", "open")
    ]
    assert [r["path"] for r in store.open_findings()] == ["/etc/aliases"]


def test_resolved_finding_that_returns_is_new_again(store: Store) -> None:
    """A change reverted and then redone is reported again, not swallowed."""
    a = finding("/etc/aliases")
    store.track_findings(1, [a])
    store.track_findings(2, [])
    new, _ = store.track_findings(3, [a])
    assert new == [a]


def test_scoped_tracking_resolves_only_inside_the_scope(store: Store) -> None:
    """A daemon re-check of one path cannot resolve findings on paths it did not look at."""
    a, b = finding("/etc/aliases"), finding("/etc/mail/sendmail.cf")
    store.track_findings(1, [a, b])
    _, resolved = store.track_findings(2, [], scope=["/etc/mail/sendmail.cf"])
    assert [r["path"] for r in resolved] == ["/etc/mail/sendmail.cf"]
    assert [r["path"] for r in store.open_findings()] == ["/etc/aliases"]


def test_finding_identity_is_path_rule_and_attribute() -> None:
    """Same path, rule and attribute is the same problem, whatever the message or values."""
    a = Finding("/p", "MI-X", Severity.LOW, "one", "mode", "1", "2")
    same = Finding("/p", "MI-X", Severity.HIGH, "two", "mode", "3", "4")
    other = Finding("/p", "MI-X", Severity.LOW, "one", "uid", "1", "2")
    assert finding_key(a) == finding_key(same) != finding_key(other)


def test_open_findings_filters_by_rank(store: Store) -> None:
    """open_findings(min_rank) returns only findings at or above that severity."""
    low = Finding("/a", "MI-L", Severity.LOW, "m")
    crit = Finding("/b", "MI-C", Severity.CRITICAL, "m")
    store.track_findings(1, [low, crit])
    assert [r["rule"] for r in store.open_findings(Severity.HIGH.rank)] == ["MI-C"]


# --------------------------------------------------------------------------- history


def test_history_lists_runs_acceptances_and_findings_newest_first(store: Store) -> None:
    """history() shows decoded paths, who accepted what and why, and run summaries."""
    r1 = store.begin_run("init", "/", ["sendmail"], "mx1")
    store.finish_run(r1, {"added": 0}, 0)
    r2 = store.begin_run("verify", "/srv/root", ["sendmail", "common"], "mx1")
    store.track_findings(r2, [finding(ODD)])
    store.finish_run(r2, {"changed": 1}, 12)
    store.apply_changes([rec(ODD, mode=0o600)], [], {}, who="carol", reason="why", before={})
    h = store.history()
    assert [(r["command"], r["exit_code"], r["profiles"]) for r in h["runs"]] == [
        ("verify", 12, "sendmail,common"),
        ("init", 0, "sendmail"),
    ]
    assert json.loads(h["runs"][0]["summary"]) == {"changed": 1}
    assert [(a["path"], a["who"], a["reason"]) for a in h["acceptances"]] == [(ODD, "carol", "why")]
    assert [(f["path"], f["status"]) for f in h["findings"]] == [(ODD, "accepted")]


def test_history_limit_caps_each_list(store: Store) -> None:
    """history(limit) returns at most that many of each kind."""
    for _ in range(3):
        store.begin_run("verify", "/", [], "h")
    assert len(store.history(limit=2)["runs"]) == 2
