"""Open the database named by a URL and bring its schema up to date.

SQLite runs in WAL mode with a busy timeout, so readers never wait for the writer and several
gunicorn workers can share one file; PostgreSQL is for several sidecars sharing the work.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl
from urllib.parse import unquote
from urllib.parse import urlsplit

from peewee import Database
from peewee import PostgresqlDatabase
from peewee import SqliteDatabase
from peewee import TextField
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as migrate_schema

from sidecar.store.models import MODELS
from sidecar.store.models import PullWindow
from sidecar.store.models import SchemaVersion
from sidecar.store.models import database

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "busy_timeout": 10000,
    "synchronous": "normal",  # WAL + normal survives a killed process; fsync per commit is moot
    "foreign_keys": 1,
}

#: Each step brings the schema from version i to i+1. Append, never edit.
MIGRATIONS: tuple = (
    lambda db: db.create_tables(MODELS, safe=True),
    lambda db: _add_policy_options(db),
)


def _add_policy_options(db: Database) -> None:
    """Policy filters and pull de-duplication (options_json) and their window table."""
    columns = {column.name for column in db.get_columns("policy")}
    if "options_json" not in columns:  # a database made by step 1 before the column existed
        migrate_schema(SchemaMigrator.from_database(db).add_column(
            "policy", "options_json", TextField(default="{}")))
    db.create_tables([PullWindow], safe=True)


def open_database(url: str) -> Database:
    """Build (not connect) a peewee database for `sqlite:///path` or `postgresql://...`."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]
    if scheme == "sqlite":
        # sqlite:///relative.db or sqlite:////absolute/path.db, as SQLAlchemy and peewee read it
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if not path:
            raise ValueError(f"bad SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////abs.db")
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, check_same_thread=False)
    if scheme in ("postgres", "postgresql"):
        # user and password arrive percent-encoded (config.py quotes them): decode for the driver
        options = {k: v for k, v in parse_qsl(parts.query) if k in ("sslmode", "connect_timeout")}
        return PostgresqlDatabase(
            unquote((parts.path or "/").lstrip("/")) or "postgres",
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            **options,
        )
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://...")


def bind(url: str) -> Database:
    """Point the models at `url` and migrate; idempotent and safe to race from many workers."""
    db = open_database(url)
    db._lock = _native_lock()
    database.initialize(db)
    migrate(db)
    return db


def _native_lock():
    """A real OS lock for peewee's connect/close.

    peewee makes `threading.Lock()` when the database is built, after gevent patched the
    worker: a gevent lock. The executor's OS threads all take it on every call, and a gevent
    lock contended across OS threads can lose its wake-up: a database thread then hung for
    ever in `connect()` (seen with PostgreSQL and four threads), its call never returned.
    """
    try:
        from gevent.monkey import get_original
    except ImportError:  # pragma: no cover - gevent is a dependency
        import threading

        return threading.Lock()
    return get_original("threading", "Lock")()


def migrate(db: Database) -> int:
    """Run the missing migration steps, serialised across processes and hosts.

    Several workers (and sidecars sharing PostgreSQL) start at once on a fresh database: the
    lock comes first, before anything is read or created, so exactly one of them migrates.
    """
    with db.connection_context():
        if isinstance(db, PostgresqlDatabase):
            transaction = db.atomic()
        else:
            transaction = db.atomic(lock_type="IMMEDIATE")  # the write lock, taken at BEGIN
        with transaction:
            if isinstance(db, PostgresqlDatabase):
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
    return len(MIGRATIONS)


def redacted_url(url: str) -> str:
    """The database URL without its password, for logs and status."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url
