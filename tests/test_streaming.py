"""Streamed init and verify give the same rows, digest and findings as the in-memory path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from integrity import api
from integrity.model import FileRecord, FileType
from integrity.snapshot import StateScan, same_record, snapshot, state_findings, stream_snapshot
from integrity.store import Store, record_json, rows_digest
from tests import mtatrees

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="real package trees need chown (root)")


@pytest.fixture(scope="module")
def sendmail_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    mtatrees.ensure_accounts()
    return str(mtatrees.build_tree("sendmail", tmp_path_factory.mktemp("s") / "root"))


@pytest.mark.slow
@ROOT_ONLY
def test_streamed_init_writes_what_the_snapshot_holds(sendmail_root: str, tmp_path: Path) -> None:
    """Same rows, same digest, same findings and warnings as snapshot + state_findings."""
    policy = api.resolve_policy(sendmail_root, ["auto"])
    snap = snapshot(sendmail_root, policy)
    old = Store.open(str(tmp_path / "old.db"), create=True)
    old.replace_baseline(snap.records.values(), {p: str(r) for p, r in snap.roles.items()})
    scan = StateScan()
    new = Store.open(str(tmp_path / "new.db"), create=True)
    written = new.write_baseline(stream_snapshot(sendmail_root, policy, scan))
    try:
        assert written == len(snap.records) == scan.scanned
        assert sorted(new.raw_rows()) == sorted(old.raw_rows())
        assert new.get_meta("rows_digest") == old.get_meta("rows_digest")
        assert new.current_digest() == rows_digest(new.raw_rows())
        assert scan.findings == state_findings(snap)
        assert sorted(scan.warnings, key=str) == sorted(snap.warnings, key=str)
    finally:
        old.close()
        new.close()


def _rec(**kw: object) -> FileRecord:
    base: dict[str, object] = {"path": "/etc/x", "ftype": FileType.FILE, "mode": 0o644,
                               "uid": 0, "gid": 0, "digest": "blake3:00"}  # fmt: skip
    return FileRecord(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [{"mode": 0o4755}, {"size": 1}, {"mtime_ns": 5}, {"flags": frozenset({"immutable"})},
     {"xattrs": (("user.a", "01"),)}, {"owner": "root"}, {"digest": None}, {"acl": "x"},
     {"facts": {"a": [1, 2]}}, {"link_target": "/t"}, {"ftype": FileType.DIR}],
)  # fmt: skip
def test_same_record_agrees_with_canonical_json(change: dict[str, object]) -> None:
    """same_record is true exactly when the canonical JSON texts are equal."""
    stored = record_json(_rec())
    assert same_record(_rec(), stored)
    live = _rec(**change)
    assert same_record(live, stored) is (record_json(live) == stored)
    assert same_record(live, record_json(live))


def test_same_record_with_tuple_facts_matches_its_stored_lists() -> None:
    """Facts holding tuples still equal their stored JSON (lists): no false drift."""
    live = _rec(facts={"pairs": (("a", 1),)})
    assert same_record(live, record_json(live))


@pytest.mark.slow
@ROOT_ONLY
def test_verify_reuses_facts_of_unchanged_content_and_parses_changed(
    sendmail_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unchanged /etc/aliases is not parsed again; an edited one is, and the edit shows."""
    import dataclasses
    import shutil

    from integrity import snapshot as snapshot_mod

    root = tmp_path / "root"
    shutil.copytree(sendmail_root, root, symlinks=True)
    opts = api.Options(root=str(root), db=str(tmp_path / "b.db"), packages=False)
    api.init(opts)
    parsed: list[int] = []
    real_get = snapshot_mod.analyzers.get

    def counting_get(name: str):  # type: ignore[no-untyped-def]
        found = real_get(name)
        if found is None or name != "aliases":
            return found

        def parse(text: str):  # type: ignore[no-untyped-def]
            parsed.append(len(text))
            return found.parse(text)

        return dataclasses.replace(found, parse=parse)

    monkeypatch.setattr(snapshot_mod.analyzers, "get", counting_get)
    assert api.verify(opts, record_run=False).changed == 0
    assert parsed == []
    aliases = root / "etc/aliases"
    aliases.write_text(aliases.read_text() + "mi_speed_x: /tmp/mi_speed_file\n")
    rep = api.verify(opts, record_run=False)
    assert parsed and rep.changed >= 1
    assert ("MI-ALIAS-FILE-ADDED", "alias:mi_speed_x") in {
        (f.rule, f.attribute) for f in rep.findings if f.path == "/etc/aliases"
    }
