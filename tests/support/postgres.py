"""A throwaway PostgreSQL database on 127.0.0.1:5432 (trust auth, user postgres) for a test run."""

from __future__ import annotations

import uuid

HOST = "127.0.0.1"
PORT = 5432
USER = "postgres"


def _admin():
    import psycopg2

    conn = psycopg2.connect(host=HOST, port=PORT, user=USER, dbname="postgres", connect_timeout=3)
    conn.autocommit = True
    return conn


def unreachable_reason() -> str | None:
    """None when PostgreSQL answers; otherwise a plain sentence saying why tests skip."""
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed (pip install -e '.[test]'): skipping PostgreSQL tests"
    try:
        _admin().close()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (f"PostgreSQL is not reachable on {HOST}:{PORT} as user {USER} ({first}): "
                "skipping PostgreSQL tests")
    return None


def create_database(prefix: str = "sidecar_test", owner: str | None = None) -> str:
    """Create an empty database; return its URL. With `owner`, that login role (made if
    missing; trust auth, so any password does) owns it and the URL names it."""
    import psycopg2.errors

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = _admin()
    try:
        with conn.cursor() as cur:
            if owner:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,))
                if cur.fetchone() is None:
                    try:
                        cur.execute(f'CREATE ROLE "{owner}" LOGIN')
                    except psycopg2.errors.DuplicateObject:  # made meanwhile by another run
                        pass
                cur.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
            else:
                cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    return f"postgresql://{owner or USER}@{HOST}:{PORT}/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = _admin()
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


def reset_schema(url: str) -> None:
    """Drop every table of the database at `url` (between tests sharing one database)."""
    import psycopg2

    name = url.rsplit("/", 1)[1]
    conn = psycopg2.connect(host=HOST, port=PORT, user=USER, dbname=name, connect_timeout=3)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        conn.close()
