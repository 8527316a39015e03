"""At most one message per interval per key (Slack: one per second per webhook URL).

Shared by the sender threads (greenlets) of one process. Several gunicorn workers or sidecar
instances each keep their own schedule, so W workers may send up to W messages a second to
one URL; Slack tolerates short bursts and answers 429 + Retry-After beyond them, which
`defer` then applies to every sender of this process.

A sender never waits long: a slot further away than `max_wait` is booked for that delivery
and the delivery goes back to the queue until then, so slow Slack traffic neither occupies
senders nor outlives a claim's lease.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

#: Booked slots older than this are forgotten (their delivery went to another worker).
_STALE = 120.0


@dataclass(frozen=True)
class Slot:
    """`wait` seconds until the send may go; `postpone` means requeue until `at` instead."""

    at: float
    wait: float
    postpone: bool


class IntervalLimiter:
    def __init__(self, interval: float = 1.0, max_wait: float = 1.0):
        self.interval = interval
        self.max_wait = max_wait
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._booked: dict[str, float] = {}  # token (delivery uid) -> its slot

    def reserve(self, key: str, token: str, now: float) -> Slot:
        """Take the next slot for `key`; a token that booked one earlier gets that one."""
        with self._lock:
            booked = self._booked.pop(token, None)
            if booked is not None and booked >= now - _STALE:
                if booked - now > self.max_wait:  # back early: keep the booking
                    self._booked[token] = booked
                    return Slot(booked, booked - now, True)
                return Slot(booked, max(0.0, booked - now), False)
            at = max(now, self._next.get(key, 0.0))
            self._next[key] = at + self.interval
            if at - now > self.max_wait:
                self._booked[token] = at
                self._forget_stale(now)
                return Slot(at, at - now, True)
            return Slot(at, at - now, False)

    def defer(self, key: str, until: float) -> None:
        """The receiver asked for a pause (429 + Retry-After): no slot before `until`."""
        with self._lock:
            self._next[key] = max(self._next.get(key, 0.0), until)

    def _forget_stale(self, now: float) -> None:
        if len(self._booked) > 1000:
            for token, at in list(self._booked.items()):
                if at < now - _STALE:
                    del self._booked[token]
