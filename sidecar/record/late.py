"""Events a trigger may see late: gathered in memory, the latest per key, written now and then.

Pull times are the case. A busy registry pulls the same few artifacts over and over, and
writing each pull's time in a transaction of its own was most of what recording a pull cost
when no webhook policy wanted the pull. Harbor gathers pull times in memory as well and writes
them every 10 seconds (`ARTIFACT_PULL_ASYNC_FLUSH_DURATION`). What is gathered is written with
the next transaction the recorder opens anyway, or after `seconds`, or when the worker stops;
a killed worker loses at most those seconds of pull times, never an event or a delivery.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Hashable
from collections.abc import Iterable
from typing import Any

from sidecar.store.db import native_lock


class LateEvents:
    """The latest event per `key` of the `types` kept, since the oldest one not written."""

    def __init__(self, types: Iterable[str], key: Callable[[Any], Hashable],
                 seconds: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.types = frozenset(types)
        self.seconds = seconds
        self._key = key
        self._clock = clock
        self._pending: dict[Hashable, Any] = {}
        self._since: float | None = None
        # taken by the recorder's greenlet and by the database threads that write
        self._lock = native_lock()

    def keep(self, events: Iterable[Any]) -> None:
        """Remember the events of our types; a later event of the same key replaces one."""
        with self._lock:
            pending = self._pending
            for event in events:
                if event.type in self.types:
                    pending[self._key(event)] = event
            if pending and self._since is None:
                self._since = self._clock()

    def due(self) -> bool:
        """Whether the oldest event kept has waited `seconds`."""
        since = self._since
        return since is not None and self._clock() - since >= self.seconds

    def take(self) -> list[Any]:
        """Everything kept, in arrival order; the caller writes it or gives it back."""
        with self._lock:
            taken = list(self._pending.values())
            self._pending = {}
            self._since = None
        return taken

    def give_back(self, events: list[Any]) -> None:
        """A write that failed: keep its events, unless a newer one of the key came since."""
        with self._lock:
            newer = self._pending
            self._pending = {self._key(event): event for event in events}
            self._pending.update(newer)
            if self._pending and self._since is None:
                self._since = self._clock()

    def __len__(self) -> int:
        return len(self._pending)
