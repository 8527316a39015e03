"""Run database work off the event loop.

Under gevent a C-level call (SQLite waiting on its lock, a psycopg2 query) blocks every greenlet
of the worker: one slow write would freeze every transfer that worker carries. So in a gevent
worker all database calls go to a small pool of real OS threads; each keeps its own connection.
Outside gevent (CLI, tests) calls run inline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from typing import TypeVar

from peewee import InterfaceError
from peewee import OperationalError

from sidecar.store.models import database

T = TypeVar("T")
log = logging.getLogger(__name__)


def _gevent_patched() -> bool:
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return False
    return bool(monkey.is_module_patched("socket"))


def _with_connection(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    database.connect(reuse_if_open=True)
    try:
        return fn(*args, **kwargs)
    except (OperationalError, InterfaceError):
        # The connection may be dead (PostgreSQL restarted, failover, an idle timeout): peewee
        # would hand the same one back for ever. Drop it; the next call opens a new one.
        lost = _connection_lost()
        _drop_connection()
        if not lost:
            raise
    # Lost before or during the call: its transaction did not commit (or, if the loss hit the
    # COMMIT itself, the call is repeated: every store call tolerates that, the queue's
    # writes by checking their claim token). Once more, on a fresh connection.
    log.warning("database connection lost; retrying %s on a new one",
                getattr(fn, "__name__", "the call"))
    database.connect(reuse_if_open=True)
    try:
        return fn(*args, **kwargs)
    except (OperationalError, InterfaceError):
        _drop_connection()
        raise


def _connection_lost() -> bool:
    conn = database._state.conn
    return conn is not None and bool(getattr(conn, "closed", 0))  # psycopg2: non-zero if closed


def _drop_connection() -> None:
    try:
        database.close()
    except Exception:
        database._state.reset()  # close() refused or failed: forget the connection anyway


class Executor:
    """`run(fn, ...)` executes `fn` with an open connection, off the event loop if needed."""

    def __init__(self, size: int = 2):
        self._pool = None
        if _gevent_patched():
            from gevent.threadpool import ThreadPool

            self._pool = ThreadPool(size)

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._pool is None:
            return _with_connection(fn, *args, **kwargs)
        return self._pool.apply(_with_connection, (fn, *args), kwargs)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` off the event loop, without a database connection (a blocking wait)."""
        if self._pool is None:
            return fn(*args)
        return self._pool.apply(fn, args)
