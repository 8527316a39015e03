"""Many rows of one table in one prepared statement (the recorder's hot path).

peewee builds the SQL text of a multi-row INSERT anew for every batch, value by value: that was
most of the ~40 us a recorded pull cost. On SQLite one statement, made once per table and run
with `executemany`, costs a few microseconds a row. Other databases keep peewee's insert_many
(psycopg2's executemany is a round trip per row).
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

from peewee import AutoField
from peewee import SqliteDatabase

from sidecar.store.models import database

_STATEMENTS: dict[type, _Statement] = {}


class _Statement:
    def __init__(self, model):
        self.model = model
        self.fields = [f for f in model._meta.sorted_fields if not isinstance(f, AutoField)]
        columns = ", ".join(f'"{f.column_name}"' for f in self.fields)
        marks = ", ".join("?" for _ in self.fields)
        self.sql = f'INSERT INTO "{model._meta.table_name}" ({columns}) VALUES ({marks})'

    def values(self, row: Mapping[str, Any]) -> tuple:
        out = []
        for field in self.fields:
            if field.name in row:
                value = row[field.name]
            else:
                default = field.default
                value = default() if callable(default) else default
            out.append(field.db_value(value))
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
    for start in range(0, len(rows), 100):
        model.insert_many(rows[start:start + 100]).execute()


def insert_row(model, row: Mapping[str, Any]) -> int:
    """Insert one row; its id."""
    if isinstance(database.obj, SqliteDatabase):
        statement = _statement(model)
        cursor = database.cursor()
        cursor.execute(statement.sql, statement.values(row))
        return cursor.lastrowid
    return model.insert(row).execute()
