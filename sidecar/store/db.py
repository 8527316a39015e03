"""Open the database named by a URL and bring its schema up to date.

SQLite runs in WAL mode with a busy timeout, so readers never wait for the writer and several
gunicorn workers can share one file; PostgreSQL is for several sidecars sharing the work.

Transactions that write. On SQLite every transaction begins IMMEDIATE (the database is opened
with `lock_type="IMMEDIATE"`): a deferred transaction that reads and then writes cannot be
upgraded to a writer while another connection writes, and SQLite refuses it at once with
"database is locked", without waiting for the busy timeout. Taking the write lock at BEGIN
makes every `database.atomic()` block wait its turn instead, so code added later is safe by
default. Statements outside a transaction (plain reads, single writes) are unaffected. On
PostgreSQL, read-then-write sequences that must not interleave across sidecars take an
advisory lock (`serialized`).
"""

from __future__ import annotations

import os
import re
import time
import zlib
from urllib.parse import urlsplit

from peewee import BooleanField
from peewee import CharField
from peewee import Database
from peewee import OperationalError
from peewee import PostgresqlDatabase
from peewee import SqliteDatabase
from peewee import TextField
from playhouse import db_url
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as migrate_schema

from sidecar.native import original
from sidecar.redact import database_url as redacted_url
from sidecar.store import policy_version
from sidecar.store.guard_models import migrate_guard
from sidecar.store.health_models import migrate_health
from sidecar.store.models import MODELS
from sidecar.store.models import ArtifactScan
from sidecar.store.models import PullWindow
from sidecar.store.models import Scanner
from sidecar.store.models import SchemaVersion
from sidecar.store.models import database
from sidecar.store.quota_models import migrate_quota
from sidecar.store.replication_models import REPLICATION_MODELS
from sidecar.store.tag_retention_models import migrate_tag_retention

SQLITE_PRAGMAS = {
    # first: the pragmas after it (journal_mode=wal takes a lock) then wait instead of failing
    # with "database is locked" when several workers open a fresh file at once
    "busy_timeout": 10000,
    "journal_mode": "wal",
    "synchronous": "normal",  # WAL + normal survives a killed process; fsync per commit is moot
    "foreign_keys": 1,
}

POSTGRES_EXTRA = "pip install 'registry-webhook-sidecar[postgres]'"

#: Each step brings the schema from version i to i+1. Append, never edit.
MIGRATIONS: tuple = (
    lambda db: db.create_tables(MODELS, safe=True),
    lambda db: _add_policy_options(db),
    lambda db: _ids_only_grow(db),
    lambda db: db.create_tables(MODELS, safe=True),  # the job table
    lambda db: migrate_quota(db),
    lambda db: _add_scanning(db),
    lambda db: db.create_tables(REPLICATION_MODELS, safe=True),  # registries, policies, runs
    lambda db: _index_due_deliveries(db),
    lambda db: migrate_guard(db),  # failed logins (issue 14)
    lambda db: migrate_health(db),  # Slack's pace shared by workers (issue 14)
    lambda db: migrate_tag_retention(db),  # tag retention: activity, policies, executions
    lambda db: policy_version.install(db),  # a counter the recorder reads with every batch
)


def _index_due_deliveries(db: Database) -> None:
    """The claim's lookup (status, then the earliest next_attempt_at): with status alone, each
    claim sorted every pending delivery, so a backlog made each claim slower."""
    if db.table_exists("delivery"):  # every real store has it; a partial one may not
        db.execute_sql("CREATE INDEX IF NOT EXISTS delivery_due ON delivery "
                       "(status, next_attempt_at)")


def _add_policy_options(db: Database) -> None:
    """Policy filters and pull de-duplication (options_json) and their window table."""
    columns = {column.name for column in db.get_columns("policy")}
    if "options_json" not in columns:  # a database made by step 1 before the column existed
        migrate_schema(SchemaMigrator.from_database(db).add_column(
            "policy", "options_json", TextField(default="{}")))
    db.create_tables([PullWindow], safe=True)


def _add_scanning(db: Database) -> None:
    """Scanner registrations, the scans of each digest, and a project's auto_scan / scanner."""
    columns = {column.name for column in db.get_columns("project")}
    migrator = SchemaMigrator.from_database(db)
    steps = []
    if "auto_scan" not in columns:
        steps.append(migrator.add_column("project", "auto_scan", BooleanField(default=False)))
    if "scanner" not in columns:
        steps.append(migrator.add_column("project", "scanner",
                                         CharField(default="", max_length=255)))
    if steps:
        migrate_schema(*steps)
    db.create_tables([Scanner, ArtifactScan], safe=True)


def _ids_only_grow(db: Database) -> None:
    """Rebuild SQLite tables made before their ids were AUTOINCREMENT.

    Without it SQLite hands a deleted row's id (the highest) to the next row: a script or a
    Terraform state holding the id of a deleted project would silently point at a new one.
    SQLite cannot add AUTOINCREMENT to a table, so each is copied into a new one (SQLite's
    documented 12-step procedure; `migrate` turns foreign keys off around it). PostgreSQL's
    sequences never go back: nothing to do there.
    """
    if not isinstance(db, SqliteDatabase):
        return
    for model in MODELS:
        table = model._meta.table_name
        if model._meta.primary_key.name != "id":
            continue
        row = db.execute_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                             (table,)).fetchone()
        if row is None or "AUTOINCREMENT" in row[0].upper():
            continue
        create = re.sub(r'("id"\s+INTEGER\s+NOT\s+NULL\s+PRIMARY\s+KEY)', r"\1 AUTOINCREMENT",
                        row[0], count=1, flags=re.IGNORECASE)
        create = create.replace(f'"{table}"', f'"{table}__new"', 1)
        indexes = [sql for (sql,) in db.execute_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
            "AND sql IS NOT NULL", (table,))]
        db.execute_sql(create)
        db.execute_sql(f'INSERT INTO "{table}__new" SELECT * FROM "{table}"')
        db.execute_sql(f'DROP TABLE "{table}"')
        db.execute_sql(f'ALTER TABLE "{table}__new" RENAME TO "{table}"')
        for sql in indexes:
            db.execute_sql(sql)


#: The URL schemes we accept (peewee's db_url knows more; we test these).
_SCHEMES = {"sqlite": "sqlite", "postgres": "postgresql", "postgresql": "postgresql"}


def open_database(url: str) -> Database:
    """Build (not connect) a peewee database for `sqlite:///path` or `postgresql://...`.

    peewee's db_url reads the URL (sqlite:///relative.db, sqlite:////absolute.db; query
    parameters such as sslmode go to the driver); user and password arrive percent-encoded
    (config.py quotes them) and are decoded for the driver.
    """
    scheme = _SCHEMES.get(urlsplit(url).scheme)
    if scheme is None:
        raise ValueError(f"unsupported database URL {redacted_url(url)!r}: use sqlite:///PATH "
                         "or postgresql://...")
    if scheme == "sqlite":
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if not path:
            raise ValueError(f"bad SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////abs.db")
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return db_url.connect(url, pragmas=SQLITE_PRAGMAS, check_same_thread=False,
                              lock_type="IMMEDIATE")
    try:  # a plain `pip install` lacks it; without this peewee fails at the first connect
        import psycopg2  # noqa: F401
    except ImportError:
        raise ValueError(f"PostgreSQL needs the psycopg2 driver, which is not installed: "
                         f"{POSTGRES_EXTRA}") from None
    parts = urlsplit(url)
    if not parts.hostname:  # postgresql:///db: the driver would try a Unix socket
        url = parts._replace(netloc=f"{parts.netloc}127.0.0.1").geturl()
    return db_url.connect(url, unquote_user=True, unquote_password=True)


def serialized(name: str) -> None:
    """Inside a transaction: wait until no other transaction holds `name`, across sidecars.

    On PostgreSQL a transaction-scoped advisory lock; on SQLite the IMMEDIATE BEGIN already
    serialises every writing transaction, so nothing more is needed.
    """
    db = database.obj
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(name.encode()),))


def bind(url: str) -> Database:
    """Point the models at `url` and migrate; idempotent and safe to race from many workers."""
    db = open_database(url)
    db._lock = native_lock()
    database.initialize(db)
    migrate(db)
    return db


def native_lock():
    """A real OS lock, for what the worker's greenlets and the database threads both take:
    peewee's connect/close, the recorder's late events.

    peewee makes `threading.Lock()` when the database is built, after gevent patched the
    worker: a gevent lock. The executor's OS threads all take it on every call, and a gevent
    lock contended across OS threads can lose its wake-up: a database thread then hung for
    ever in `connect()` (seen with PostgreSQL and four threads), its call never returned.
    """
    return original("threading", "Lock")()


def _first_connect(db: Database, wait: float = 10.0) -> None:
    """Open a process's first connection to a SQLite store, waiting out workers racing it.

    Each connection sets journal_mode=wal (SQLITE_PRAGMAS). On a fresh file, SQLite may answer
    a connection doing so while another converts the file with "database is locked" at once,
    without its busy handler: one of several workers starting together then failed to boot
    (tests/test_store_queue.py, 2 runs in 12). Once the file is WAL the pragma takes no lock.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            db.connect(reuse_if_open=True)
            return
        except OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def migrate(db: Database) -> int:
    """Run the missing migration steps, serialised across processes and hosts.

    Several workers (and sidecars sharing PostgreSQL) start at once on a fresh database: the
    lock comes first, before anything is read or created, so exactly one of them migrates.
    """
    sqlite = isinstance(db, SqliteDatabase)
    if sqlite:
        _first_connect(db)
    with db.connection_context():
        if sqlite:  # table rebuilds must not cascade; only settable outside a transaction
            db.execute_sql("PRAGMA foreign_keys = OFF")
        try:
            with db.atomic():  # IMMEDIATE on SQLite: the write lock, taken at BEGIN
                if not sqlite:
                    db.execute_sql("SELECT pg_advisory_xact_lock(7431001)")
                db.create_tables([SchemaVersion], safe=True)
                row = SchemaVersion.select().order_by(SchemaVersion.id).first()
                if row is None:
                    row = SchemaVersion.create(version=0)
                version = row.version
                for step in MIGRATIONS[version:]:
                    step(db)
                if version != len(MIGRATIONS):
                    SchemaVersion.update(version=len(MIGRATIONS)).execute()
                if sqlite and db.execute_sql("PRAGMA foreign_key_check").fetchone():
                    raise RuntimeError("migration left rows whose foreign keys point nowhere")
        finally:
            if sqlite:
                db.execute_sql("PRAGMA foreign_keys = ON")
    return len(MIGRATIONS)
