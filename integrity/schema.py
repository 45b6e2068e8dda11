"""The baseline database's schema: sqlite-utils migrations, applied only when pending.

sqlite-utils costs ~13 MiB and ~50 ms to import; an up-to-date database (every verify)
is recognised with one plain SELECT of sqlite-utils' own ``_sqlite_migrations`` table,
and sqlite-utils is loaded only for a new database or an upgrade.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

from integrity._imports import without_numpy

if TYPE_CHECKING:
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

    from integrity.sqldb import Database as PlainDatabase

#: sqlite-utils' name of our migration set (its ``_sqlite_migrations.migration_set``)
MIGRATION_SET = "mail-integrity"


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


def m002_standing(db: Database) -> None:
    """Standing conditions of the baseline, and acknowledgements (who, when, why, what)."""
    findings = db.table("findings")
    for col in ("origin", "ack_at", "ack_who", "ack_reason", "ack_after"):
        findings.add_column(col, str)
    db.table("acceptances").add_column("acknowledged", str)
    db.table("standing").create(
        {"key": str, "path": bytes, "rule": str, "attribute": str, "severity": str}, pk="key"
    )


#: the migrations in order; a new one is appended here (its name is its function's)
STEPS: tuple[Callable[[Database], None], ...] = (m001_initial, m002_standing)
NAMES = tuple(step.__name__ for step in STEPS)


@functools.cache
def migrations() -> Migrations:
    """sqlite-utils' migration set of ``STEPS`` (imports sqlite-utils)."""
    with without_numpy():
        from sqlite_utils.migrations import Migrations

    found = Migrations(MIGRATION_SET)
    for step in STEPS:
        found()(step)
    return found


def pending(conn: sqlite3.Connection) -> list[str]:
    """Names of the migrations not yet recorded in this database, read with plain SQL."""
    table = conn.execute(
        "select 1 from sqlite_master where type = 'table' and name = '_sqlite_migrations'"
    ).fetchone()
    if table is None:
        return list(NAMES)
    rows = conn.execute(
        "select name from _sqlite_migrations where migration_set = ?", (MIGRATION_SET,)
    )
    done = {name for (name,) in rows}
    return [name for name in NAMES if name not in done]


def migrate(db: PlainDatabase) -> None:
    """Apply the pending migrations, if any, in one transaction under the write lock
    (two processes opening a new database queue, and the second finds nothing to do)."""
    if not pending(db.conn):
        return
    with without_numpy():
        from sqlite_utils import Database

    with db.atomic():
        if pending(db.conn):
            migrations().apply(Database(db.conn, execute_plugins=False))
