"""Fleet drift: how two hosts of the same role differ, from their baselines or exports."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable
from dataclasses import replace

from integrity.compare import compare
from integrity.judge import judge
from integrity.model import FileRecord, Report, Role
from integrity.policy import load
from integrity.policy import profile_dirs as default_profile_dirs
from integrity.snapshot import dedupe, role_from
from integrity.store import Store


def _fleet_record(rec: FileRecord) -> FileRecord:
    """A record as comparable across hosts: ids by name, per-host metadata dropped."""

    def ident(name: str | None, num: int) -> int:
        if name is None:
            return num
        return 0 if name == "root" else 1_000_000 + zlib.crc32(name.encode())

    return replace(
        rec,
        uid=ident(rec.owner, rec.uid),
        gid=ident(rec.group, rec.gid),
        mtime_ns=0,
        ctime_ns=0,
        inode=0,
        nlink=1,
    )


def compare_baselines(db_a: str, db_b: str, *, profile_dirs: Iterable[str] = ()) -> Report:
    """Fleet drift: how host B's baseline differs from host A's (A is the reference)."""
    (rec_a, roles_a, names_a), (rec_b, roles_b, _) = (_load_any(db_a), _load_any(db_b))
    extra = [str(d) for d in profile_dirs]
    policy = load(names_a, dirs=default_profile_dirs(extra) if extra else None)
    a = {p: _fleet_record(r) for p, r in rec_a.items()}
    b = {p: _fleet_record(r) for p, r in rec_b.items()}
    roles: dict[str, Role] = {p: role_from(r) for p, r in {**roles_b, **roles_a}.items()}
    changes = compare(a, b, roles)
    findings = judge(changes, a, b, policy, roles)
    kinds: dict[str, set[str]] = {"added": set(), "removed": set(), "changed": set()}
    for ch in changes:
        kinds[str(ch.kind)].add(ch.path)
    report = Report(
        findings=dedupe(findings),
        added=len(kinds["added"]),
        removed=len(kinds["removed"]),
        changed=len(kinds["changed"]),
        scanned=len(set(a) | set(b)),
    )
    report.header = {
        "command": "compare",
        "reference": db_a,
        "other": db_b,
        "profiles": list(policy.profiles),
    }
    return report


def export_baseline(db: str, *, state_dir: str | None = None) -> dict[str, object]:
    """The baseline as JSON (for fleet comparison on another machine); checksum included."""
    store = Store.open(db, state_dir=state_dir)
    try:
        store.load_baseline()  # refuse to export rows that fail their (host-keyed) checksum
        rows = [
            {"path": os.fsdecode(p), "role": role, "record": record}
            for p, role, record in sorted(store.raw_rows())
        ]
        meta = {
            k: store.get_meta(k)
            for k in (
                "host",
                "root",
                "profiles",
                "generation",
                "rows_digest",
                "signature",
                "signer",
            )
        }
    finally:
        store.close()
    return {"format": "mail-integrity-baseline/1", "meta": meta, "files": rows}


def _load_any(path: str) -> tuple[dict[str, FileRecord], dict[str, str], list[str]]:
    """Records, roles and profile names from a database or an exported JSON baseline."""
    import json

    from integrity.errors import BaselineCorruptError
    from integrity.store import rows_digest

    with open(path, "rb") as fh:
        head = fh.read(1)
    if head != b"{":
        store = Store.open(path)
        try:
            # another host's database: its checksum key is on that host, so only the
            # plain digest is checked here (damage is caught, a forgery is not)
            records, roles = store.load_baseline(keyed=False)
            names = [n for n in (store.get_meta("profiles", "") or "").split(",") if n]
        finally:
            store.close()
        return records, roles, names
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        rows = [(os.fsencode(r["path"]), r["role"], r["record"]) for r in doc["files"]]
        meta = doc["meta"]
        if rows_digest(rows) != meta["rows_digest"]:
            raise BaselineCorruptError(f"{path}: exported rows do not match their checksum")
        records = {
            os.fsdecode(p): FileRecord.from_row({"path": os.fsdecode(p), **json.loads(rec)})
            for p, _, rec in rows
        }
        roles = {os.fsdecode(p): role for p, role, _ in rows}
    except (ValueError, KeyError, TypeError) as exc:
        raise BaselineCorruptError(f"{path}: not an exported baseline: {exc}") from exc
    return records, roles, [n for n in (meta.get("profiles") or "").split(",") if n]
