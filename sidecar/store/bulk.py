"""Many rows of one table in one prepared statement (the recorder's hot path).

peewee builds the SQL text of a multi-row INSERT anew for every batch, value by value: that was
most of the ~40 us a recorded pull cost. On SQLite one statement, made once per table and run
with `executemany`, costs a few microseconds a row. Other databases keep peewee's insert_many
(psycopg2's executemany is a round trip per row).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from peewee import AutoField
from peewee import BooleanField
from peewee import FloatField
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import SqliteDatabase
from peewee import _StringField

from sidecar.store.models import database

_STATEMENTS: dict[type, _Statement] = {}


def _native(field) -> type | None:
    """The Python type a field's `db_value` returns unchanged: a value of exactly that type
    (or None) goes to the driver as it is. Calling `db_value` for every field of every row was
    about half of what inserting a delivery cost."""
    if isinstance(field, ForeignKeyField):
        return _native(field.rel_field)
    for kind, native in ((_StringField, str), (BooleanField, bool), (IntegerField, int),
                         (FloatField, float)):
        if isinstance(field, kind):
            return native
    return None


class _Statement:
    def __init__(self, model):
        self.model = model
        self.fields = [f for f in model._meta.sorted_fields if not isinstance(f, AutoField)]
        self._plan = [(f.name, f.default, callable(f.default), _native(f), f.db_value)
                      for f in self.fields]
        columns = ", ".join(f'"{f.column_name}"' for f in self.fields)
        marks = ", ".join("?" for _ in self.fields)
        self._head = f'INSERT INTO "{model._meta.table_name}" ({columns}) VALUES '
        self._group = f"({marks})"
        self.sql = self._head + self._group
        self._key = model._meta.primary_key.column_name

    def returning(self, count: int) -> str:
        """The multi-row INSERT of `count` rows that answers their ids."""
        return f'{self._head}{", ".join([self._group] * count)} RETURNING "{self._key}"'

    def complete(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """`row` with every field, defaults filled in: peewee's multi-row insert takes its
        columns from the first row and drops keys that only later rows have."""
        return {name: row[name] if name in row else (default() if call else default)
                for name, default, call, _native, _db_value in self._plan}

    def values(self, row: Mapping[str, Any]) -> tuple:
        out = []
        for name, default, call, native, db_value in self._plan:
            if name in row:
                value = row[name]
            else:
                value = default() if call else default
            out.append(value if value is None or type(value) is native else db_value(value))
        return tuple(out)


def _statement(model) -> _Statement:
    found = _STATEMENTS.get(model)
    if found is None:
        found = _STATEMENTS[model] = _Statement(model)
    return found


def insert_rows(model, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert `rows` (field name -> value; defaults filled in) in order, in the caller's
    transaction."""
    rows = list(rows)
    if not rows:
        return
    if isinstance(database.obj, SqliteDatabase):
        statement = _statement(model)
        database.cursor().executemany(statement.sql, [statement.values(r) for r in rows])
        return
    rows = [_statement(model).complete(row) for row in rows]
    for start in range(0, len(rows), 100):
        model.insert_many(rows[start:start + 100]).execute()


#: RETURNING came with SQLite 3.35 (2021); older libraries insert row by row for the ids
_RETURNING = sqlite3.sqlite_version_info >= (3, 35)
_MAX_VARIABLES = 999  # SQLite's limit before 3.32; later ones allow 32,766


def insert_rows_returning_ids(model, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert `rows` in order, in the caller's transaction; their ids, in the same order.

    A multi-row INSERT ... RETURNING: an event whose deliveries need its id cost a statement
    of its own before. Ids come back sorted, which is insertion order: SQLite gives each new
    row the next rowid, PostgreSQL the next value of the sequence, row by row.
    """
    if not rows:
        return []
    if not isinstance(database.obj, SqliteDatabase):
        rows = [_statement(model).complete(row) for row in rows]
        ids: list[int] = []
        for start in range(0, len(rows), 100):
            ids.extend(row[0] for row in model.insert_many(rows[start:start + 100])
                       .returning(model._meta.primary_key).tuples().execute())
        return sorted(ids)
    if not _RETURNING:
        return [insert_row(model, row) for row in rows]
    statement = _statement(model)
    per_statement = max(1, _MAX_VARIABLES // len(statement.fields))
    out: list[int] = []
    cursor = database.cursor()
    for start in range(0, len(rows), per_statement):
        chunk = rows[start:start + per_statement]
        params = [value for row in chunk for value in statement.values(row)]
        cursor.execute(statement.returning(len(chunk)), params)
        out.extend(sorted(row[0] for row in cursor.fetchall()))
    return out


def insert_row(model, row: Mapping[str, Any]) -> int:
    """Insert one row; its id."""
    if isinstance(database.obj, SqliteDatabase):
        statement = _statement(model)
        cursor = database.cursor()
        cursor.execute(statement.sql, statement.values(row))
        return cursor.lastrowid
    return model.insert(row).execute()
