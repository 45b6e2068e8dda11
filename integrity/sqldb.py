"""A plain ``sqlite3`` connection with the few sqlite-utils operations the store writes with.

Importing sqlite-utils costs ~13 MiB and ~50 ms (click, dateutil, tabulate, pluggy), which
``verify`` cannot afford; it stays for the schema (``integrity.schema``). Values are
stored as sqlite-utils stores them (``stored``), so a database written by either one has
the same rows and the same row checksums.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

#: an SQLite error -> the error the user sees (``store.classify``)
Classify = Callable[[sqlite3.Error, str], Exception]

_READS = ("SELECT", "PRAGMA", "WITH R")


class NotFoundError(LookupError):
    """``update`` of a row that is not there (sqlite-utils raises its own NotFoundError)."""


def _begins(sql: str) -> bool:
    """Does this statement open a transaction on purpose (not a write's implicit one)?"""
    return sql.lstrip().upper().startswith(("BEGIN", "SAVEPOINT"))


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def stored(value: Any) -> Any:
    """A value as sqlite-utils writes it (``jsonify_if_needed``): dict, list and tuple as
    JSON text (not ASCII-escaped, ``repr`` for what JSON cannot hold), dates and times as
    ISO text. Other types are bound as they are (sqlite3 refuses those it cannot store)."""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=repr, ensure_ascii=False)
    if isinstance(value, dt.time | dt.date):  # datetime is a date
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    return value


class Database:
    """One connection: writes go in ``BEGIN IMMEDIATE`` transactions, reads may hold a
    snapshot (``reading``) that the next write ends.

    ``BEGIN IMMEDIATE`` takes the write lock up front, waiting up to the busy timeout, so
    two writers queue instead of one failing half-way with "database is locked" (a
    deferred transaction cannot wait once it has read).
    """

    def __init__(
        self, conn: sqlite3.Connection, classify: Classify, path: str = "baseline database"
    ) -> None:
        self.conn = conn
        self.path = path
        self.reading = False  # a read snapshot (``Store.begin_read``) is open
        self._classify = classify
        self._pks: dict[str, list[str]] = {}

    def end_read(self) -> None:
        if self.reading:
            self.reading = False
            if self.conn.in_transaction:
                self.conn.commit()

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run one statement. A write ends a read snapshot first, and a write outside a
        transaction is committed at once (as sqlite-utils does)."""
        if self.reading and sql.lstrip()[:6].upper() not in _READS:
            self.end_read()
        was_open = self.conn.in_transaction
        try:
            cursor = self.conn.execute(sql, parameters)
        except Exception:
            if not was_open and self.conn.in_transaction:
                self.conn.rollback()  # the implicit transaction the failed write opened
            raise
        opened = not was_open and self.conn.in_transaction
        if opened and cursor.description is None and not _begins(sql):
            self.conn.commit()
        return cursor

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        """Rows of a SELECT as dicts (column name -> value), fetched as iterated."""
        cursor = self.conn.execute(sql, parameters)
        names = [d[0] for d in cursor.description]
        return (dict(zip(names, row, strict=True)) for row in cursor)

    def table(self, name: str) -> Table:
        return Table(self, name)

    def pks(self, table: str) -> list[str]:
        """Primary key columns in declaration order (``rowid`` when none), as sqlite-utils."""
        if table not in self._pks:
            info = self.conn.execute(f"PRAGMA table_info({quote(table)})").fetchall()
            cols = sorted((row[5], row[1]) for row in info if row[5])
            self._pks[table] = [name for _, name in cols] or ["rowid"]
        return self._pks[table]

    @contextlib.contextmanager
    def atomic(self) -> Iterator[Database]:
        """One transaction (a savepoint inside one already open); rolled back on error."""
        self.end_read()
        if self.conn.in_transaction:
            self.conn.execute('SAVEPOINT "atomic"')
            try:
                yield self
            except BaseException:
                if self.conn.in_transaction:  # an error may have ended the transaction
                    self.conn.execute('ROLLBACK TO "atomic"')
                    self.conn.execute('RELEASE "atomic"')
                raise
            self.conn.execute('RELEASE "atomic"')
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._classify(exc, self.path) from exc
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:  # disk full at the last moment: nothing was written
            self.rollback()
            raise self._classify(exc, self.path) from exc

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def enable_wal(self) -> None:
        """WAL journal (readers do not block the writer); a no-op when already so."""
        if self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self.conn.execute("PRAGMA journal_mode=wal")

    def close(self) -> None:
        self.conn.close()


class Table:
    """sqlite-utils' insert, upsert and update of an existing table, nothing else: no
    table creation, no added columns (the schema is ``integrity.schema``'s)."""

    #: rowid of the row ``insert`` wrote (the id of an INTEGER PRIMARY KEY table)
    last_pk: int | None = None

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name

    def insert(self, record: Mapping[str, Any]) -> Table:
        with self.db.atomic():
            sql, columns = self._insert_sql([record], None)
            cursor = self.db.conn.execute(sql, [stored(record.get(c)) for c in columns])
        self.last_pk = cursor.lastrowid
        return self

    def insert_all(self, records: Iterable[Mapping[str, Any]]) -> Table:
        return self._write(records, None)

    def upsert(self, record: Mapping[str, Any], *, pk: str) -> Table:
        """Insert the row, or set the given columns of the row with that key (the others
        keep their values)."""
        return self._write([record], pk)

    def upsert_all(self, records: Iterable[Mapping[str, Any]], *, pk: str) -> Table:
        return self._write(records, pk)

    def update(self, pk_value: Any, values: Mapping[str, Any]) -> Table:
        """Set these (one or more) columns of the row with that primary key; NotFoundError
        if there is none."""
        keys = list(pk_value) if isinstance(pk_value, list | tuple) else [pk_value]
        sets = ", ".join(f"{quote(c)} = ?" for c in values)
        where = " and ".join(f"{quote(c)} = ?" for c in self.db.pks(self.name))
        sql = f"update {quote(self.name)} set {sets} where {where}"  # noqa: S608 - quoted names
        with self.db.atomic():
            if not self.db.conn.execute(sql, [stored(v) for v in values.values()] + keys).rowcount:
                raise NotFoundError(f"{self.name}: no row with key {pk_value!r}")
        return self

    def _write(self, records: Iterable[Mapping[str, Any]], pk: str | None) -> Table:
        rows = list(records)
        if not rows:
            return self
        if pk is not None and any(r.get(pk) is None for r in rows):
            raise ValueError(f"{self.name}: upsert needs a value for its key {pk!r}")
        sql, columns = self._insert_sql(rows, pk)
        with self.db.atomic():
            self.db.conn.executemany(sql, ([stored(r.get(c)) for c in columns] for r in rows))
        return self

    def _insert_sql(self, rows: list[Mapping[str, Any]], pk: str | None) -> tuple[str, list[str]]:
        """INSERT of every column any row names (NULL where a row lacks one); with ``pk``,
        an upsert: ON CONFLICT on that key, set the named columns from the new row."""
        columns = sorted(set().union(*rows))
        names = ", ".join(quote(c) for c in columns)
        marks = ", ".join("?" for _ in columns)
        sql = f"insert into {quote(self.name)} ({names}) values ({marks})"  # noqa: S608
        if pk is not None:
            rest = [c for c in columns if c != pk]
            sets = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in rest)
            sql += f" on conflict({quote(pk)}) " + (
                f"do update set {sets}" if rest else "do nothing"
            )
        return sql, columns
