"""At most one message per interval per key (Slack: one per second per webhook URL).

Shared by the sender threads (greenlets) of one process. With `schedule` and `push` (the
dispatcher passes store.pacing's), the slots themselves come from the store, so every gunicorn
worker and sidecar sharing it keeps one pace per URL; without them (unit tests), the schedule
is this process's own. A receiver's 429 + Retry-After (`defer`) pauses the URL for every
sender: through the store for new slots, and in this process also for a sender already
sleeping towards its slot.

A sender never waits long: a slot further away than `max_wait` is booked for that delivery,
and the delivery goes back to the queue until shortly before it (`Slot.requeue_at`), so slow
Slack traffic neither occupies senders nor outlives a claim's lease. Every slot handed out is
at least `interval` after the previous one: a booking whose delivery comes back too late is
dropped rather than honoured in the past.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Bookings older than this are forgotten (their delivery went to another worker).
_STALE = 120.0


@dataclass(frozen=True)
class Slot:
    """Send at `at` (after sleeping `wait` seconds), or, if `postpone`, requeue the delivery
    until `requeue_at` and ask again then."""

    at: float
    wait: float
    postpone: bool
    requeue_at: float = 0.0


class IntervalLimiter:
    def __init__(self, interval: float = 1.0, max_wait: float = 1.0,
                 schedule: Callable[[str, float], float] | None = None,
                 push: Callable[[str, float], None] | None = None):
        self.interval = interval
        self.max_wait = max_wait
        self._schedule = schedule  # (key, now) -> the slot; the store's shared pace
        self._push = push  # (key, until): a pause every process honours
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._paused: dict[str, float] = {}
        self._booked: dict[str, float] = {}  # token (delivery uid) -> its slot

    def reserve(self, key: str, token: str, now: float) -> Slot:
        """The slot for one send to `key`; a token that booked one earlier gets that one."""
        with self._lock:
            booked = self._booked.pop(token, None)
            if booked is not None and now <= booked and booked >= self._paused.get(key, 0.0):
                if booked - now > self.max_wait:  # back early: keep the booking
                    return self._book(token, booked, now)
                return Slot(booked, booked - now, False)
            if self._schedule is None:
                at = max(now, self._next.get(key, 0.0))
                self._next[key] = at + self.interval
        if self._schedule is not None:  # a database round trip: outside the lock
            at = max(self._schedule(key, now), self._paused.get(key, 0.0))
        with self._lock:
            if at - now > self.max_wait:
                self._forget_stale(now)
                return self._book(token, at, now)
            return Slot(at, at - now, False)

    def turn(self, key: str, token: str, clock: Callable[[], float] = time.time,
             sleep: Callable[[float], None] = time.sleep) -> float | None:
        """Sleep until this send may go and return None; or return when to requeue it."""
        slot = self.reserve(key, token, clock())
        if slot.postpone:
            return slot.requeue_at
        if slot.wait > 0:
            sleep(slot.wait)
            return self.paused_until(key, clock())  # a 429 may have come in meanwhile
        return None

    def defer(self, key: str, until: float) -> None:
        """The receiver asked for a pause (429 + Retry-After): no send before `until`."""
        with self._lock:
            self._paused[key] = max(self._paused.get(key, 0.0), until)
            self._next[key] = max(self._next.get(key, 0.0), until)
        if self._push is not None:
            self._push(key, until)

    def paused_until(self, key: str, now: float) -> float | None:
        """When a pause that began while a sender slept ends; None if `key` is not paused."""
        with self._lock:
            until = self._paused.get(key, 0.0)
        return until if until > now else None

    def _book(self, token: str, at: float, now: float) -> Slot:
        self._booked[token] = at
        return Slot(at, at - now, True, requeue_at=max(now, at - self.max_wait))

    def _forget_stale(self, now: float) -> None:
        if len(self._booked) > 1000:
            for token, at in list(self._booked.items()):
                if at < now - _STALE:
                    del self._booked[token]
