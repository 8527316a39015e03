"""Run database work off the event loop.

Under gevent a C-level call (SQLite waiting on its lock, a psycopg2 query) blocks every greenlet
of the worker: one slow write would freeze every transfer that worker carries. So in a gevent
worker all database calls go to a small pool of real OS threads; each keeps its own connection.
Outside gevent (CLI, tests) calls run inline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import TypeVar

from sidecar.store.models import database

T = TypeVar("T")


def _gevent_patched() -> bool:
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return False
    return bool(monkey.is_module_patched("socket"))


def _with_connection(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    database.connect(reuse_if_open=True)
    return fn(*args, **kwargs)


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
