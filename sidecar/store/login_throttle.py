"""Failed-login throttling, shared by every worker and sidecar through the store.

A client address and user name that fail FAILURES times within WINDOW seconds are refused
(429, Retry-After) until that window ends, whatever the password they then send: otherwise a
guesser would learn the password from the one attempt that is let through. Other addresses,
and other users from the same address, are unaffected; a success clears the count. Times are
the database server's clock (store.clock), so sidecars on several hosts agree.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from peewee import Case

from sidecar.store import clock
from sidecar.store.guard_models import LoginFailure

FAILURES = 10
WINDOW = 300.0


@dataclass(frozen=True)
class Throttle:
    failures: int = FAILURES
    window: float = WINDOW


def key_of(address: str, user: str) -> str:
    """The row key: a digest, so neither a user name nor an address is stored in clear."""
    return hashlib.sha256(f"{address}\0{user}".encode()).hexdigest()


def retry_after(key: str, throttle: Throttle = Throttle(), now: float | None = None) -> float:
    """Seconds this key must wait before its next attempt (0: it may try now)."""
    now = clock.now() if now is None else now
    row = LoginFailure.get_or_none(LoginFailure.key == key)
    if row is None or row.failures < throttle.failures:
        return 0.0
    return max(row.window_start + throttle.window - now, 0.0)


def known(key: str) -> bool:
    """Whether the key has failures on record (a success then clears them)."""
    return LoginFailure.select().where(LoginFailure.key == key).exists()


def record_failure(key: str, throttle: Throttle = Throttle(), now: float | None = None) -> int:
    """Count one failure; a window that has ended starts again at 1. Returns the count."""
    now = clock.now() if now is None else now
    expired = LoginFailure.window_start <= now - throttle.window
    (LoginFailure.insert(key=key, window_start=now, failures=1)
     .on_conflict(conflict_target=[LoginFailure.key],
                  update={LoginFailure.failures: Case(None, [(expired, 1)],
                                                      LoginFailure.failures + 1),
                          LoginFailure.window_start: Case(None, [(expired, now)],
                                                          LoginFailure.window_start)})
     .execute())
    return LoginFailure.get(LoginFailure.key == key).failures


def clear(key: str) -> None:
    LoginFailure.delete().where(LoginFailure.key == key).execute()


def sweep(now: float, throttle: Throttle = Throttle()) -> int:
    """Delete rows whose window ended long ago; the retention sweep calls this."""
    return LoginFailure.delete().where(
        LoginFailure.window_start < now - 2 * throttle.window).execute()


def attempt(key: str, ok: bool, throttle: Throttle = Throttle(),
            now: float | None = None) -> float:
    """One login whose password check gave `ok`: the seconds to wait when refused (nothing is
    counted then), else 0 after counting a failure or clearing the count of a success."""
    now = clock.now() if now is None else now
    row = LoginFailure.get_or_none(LoginFailure.key == key)
    if row is not None and row.failures >= throttle.failures:
        wait = row.window_start + throttle.window - now
        if wait > 0:
            return wait
    if ok:
        if row is not None:
            clear(key)
        return 0.0
    record_failure(key, throttle, now)
    return 0.0
