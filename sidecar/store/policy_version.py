"""One number that moves whenever a policy, or a project's name or visibility, changes.

The recorder asks with every batch whether its policy index is still current. The full
fingerprint (store.policies.policies_fingerprint) counts and sums both tables: about 470 us per
batch on SQLite with 10,000 policies, paid by every batch of pulls. Triggers in the database
bump this counter in the transaction of any such change, whoever makes it (a rules sync, the
API, another sidecar on the same PostgreSQL), so the question costs one row read, and the
fingerprint is computed only after the counter moved.
"""

from __future__ import annotations

from peewee import Database
from peewee import SqliteDatabase

from sidecar.store.models import database

NAME = "policies"
_TABLE = "change_count"
#: (table, what changes it): a project matters to matching by its name and visibility only
_WATCHED = (("policy", "INSERT OR UPDATE OR DELETE"),
            ("project", "INSERT OR UPDATE OF name, public OR DELETE"))


def install(db: Database) -> None:
    """Migration step: the counter and its triggers (idempotent)."""
    db.execute_sql(f"CREATE TABLE IF NOT EXISTS {_TABLE} "
                   "(name VARCHAR(32) NOT NULL PRIMARY KEY, value BIGINT NOT NULL)")
    db.execute_sql(f"INSERT INTO {_TABLE} (name, value) VALUES ('{NAME}', 0) "
                   "ON CONFLICT (name) DO NOTHING")
    bump = f"UPDATE {_TABLE} SET value = value + 1 WHERE name = '{NAME}'"
    watched = [(table, events) for table, events in _WATCHED
               if db.table_exists(table)]  # every real store has both; a partial one may not
    if isinstance(db, SqliteDatabase):  # row triggers only; one per operation
        for table, events in watched:
            for event in events.split(" OR "):
                name = f"{table}_{event.split()[0].lower()}_counted"
                db.execute_sql(f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON {table} "
                               f"BEGIN {bump}; END")
        return
    db.execute_sql(f"CREATE OR REPLACE FUNCTION count_policy_change() RETURNS trigger AS $$ "
                   f"BEGIN {bump}; RETURN NULL; END $$ LANGUAGE plpgsql")
    for table, events in watched:  # once per statement: a rules sync of 10,000 rows bumps once
        db.execute_sql(f"DROP TRIGGER IF EXISTS {table}_counted ON {table}")
        db.execute_sql(f"CREATE TRIGGER {table}_counted AFTER {events} ON {table} "
                       "FOR EACH STATEMENT EXECUTE PROCEDURE count_policy_change()")


def current() -> int:
    """The counter now (written out: it is read with every batch the recorder writes)."""
    row = database.execute_sql(f"SELECT value FROM {_TABLE} WHERE name = {database.param}",
                               (NAME,)).fetchone()
    return -1 if row is None else int(row[0])
