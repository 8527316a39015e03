"""The time leases and schedules are measured in: the database server's clock.

Several sidecars sharing PostgreSQL each stamp `lease_until` and compare it with "now"; with each
host's own clock, a host running ahead would take over a live claim early (a duplicate send).
So "now" is this host's clock corrected by its measured offset from the database server's,
refreshed every minute. SQLite lives on this host: no correction.
"""

from __future__ import annotations

import threading
import time

from peewee import PostgresqlDatabase

from sidecar.store.models import database

REFRESH_SECONDS = 60.0

_offset = 0.0
_measured_at = float("-inf")
_lock = threading.Lock()


def now() -> float:
    """Seconds since the epoch on the database server's clock (a cached offset, no query)."""
    return time.time() + _offset


def measure() -> float:
    """Ask the database for its time and remember the offset; call with a connection open.

    The query's round trip is split in half, as NTP does: good to a few milliseconds on a LAN,
    far below any lease.
    """
    global _offset, _measured_at
    if not isinstance(database.obj, PostgresqlDatabase):
        _offset, _measured_at = 0.0, time.monotonic()
        return 0.0
    before = time.time()
    (server,) = database.execute_sql("SELECT extract(epoch FROM clock_timestamp())").fetchone()
    after = time.time()
    with _lock:
        _offset = float(server) - (before + after) / 2
        _measured_at = time.monotonic()
    return _offset


def refresh_if_stale() -> None:
    """Measure again when the last measurement is older than REFRESH_SECONDS."""
    if time.monotonic() - _measured_at >= REFRESH_SECONDS:
        measure()
