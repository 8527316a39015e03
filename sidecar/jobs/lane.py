"""A lane: one thread claims due work of some kind, `concurrency` threads work on it.

Runs in every gunicorn worker (and in every sidecar sharing PostgreSQL); the atomic claim in
store.jobqueue is what keeps two lanes from taking the same item. Deliveries have one lane,
background jobs (scans, replication tasks, retention runs) another.
"""

from __future__ import annotations

import logging
import queue as stdlib_queue
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)


class Lane:
    """Claims up to the number of free slots, hands each item to `run`, backs off when idle.

    `claim(n)` takes up to n due items (a database call, off the event loop); `run(item)`
    works on one and records its outcome; `release(items)` gives back items claimed but not
    started, at stop. A crash in `run` is logged: the item's lease expires and it is retried.
    """

    def __init__(self, name: str, *, claim: Callable[[int], Sequence[Any]],
                 run: Callable[[Any], None], release: Callable[[Sequence[Any]], Any],
                 concurrency: int, idle_poll: float = 1.0, claim_window: float = 0.01,
                 describe: Callable[[Any], str] = repr):
        self.name = name
        self._claim = claim
        self._run = run
        self._release = release
        self._concurrency = max(1, concurrency)
        self._idle_poll = idle_poll
        self._claim_window = claim_window  # after a slot frees, how long to wait for more
        self._describe = describe
        self._work: stdlib_queue.Queue[Any] = stdlib_queue.Queue()
        self._free = threading.Semaphore(self._concurrency)
        self._wake = threading.Event()
        self._stopping = False
        self.busy = 0  # items being worked on

    def wake(self, _count: int = 0) -> None:
        """New work was added in this process: claim now instead of at the next poll."""
        self._wake.set()

    def reserve(self, limit: int) -> int:
        """Take up to `limit` free slots now, without waiting: for items claimed elsewhere
        (the recorder claims the deliveries it creates). Give them to `hand`."""
        taken = 0
        while taken < limit and not self._stopping and self._free.acquire(blocking=False):
            taken += 1
        return taken

    def hand(self, items: Sequence[Any], reserved: int) -> None:
        """Work on `items`, claimed by the caller into `reserved` slots (at most one each);
        slots left over are freed."""
        if self._stopping and items:  # too late to start them: give them straight back
            self._release(list(items))
            items = ()
        for item in items:
            self._work.put(item)
        for _ in range(reserved - len(items)):
            self._free.release()

    def start(self) -> None:
        for index in range(self._concurrency):
            threading.Thread(target=self._work_loop, name=f"{self.name}-{index}",
                             daemon=True).start()
        threading.Thread(target=self._claim_loop, name=f"{self.name}-claimer",
                         daemon=True).start()

    def stop(self, grace: float) -> None:
        """Stop claiming, give back what was claimed but not started, let running work end.

        A graceful restart then delays nothing: otherwise each claim held here would wait
        for its lease to expire before another worker could take it.
        """
        self._stopping = True
        self._wake.set()
        unstarted: list[Any] = []
        while True:
            try:
                item = self._work.get_nowait()
            except stdlib_queue.Empty:
                break
            if item is not None:
                unstarted.append(item)
                self._free.release()
        for _ in range(self._concurrency):
            self._work.put(None)  # wakes idle workers so their threads end
        if unstarted:
            try:
                self._release(unstarted)
            except Exception:
                log.exception("%s: giving back %d claims failed; their leases will expire",
                              self.name, len(unstarted))
        deadline = time.monotonic() + grace
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.05)

    def _claim_loop(self) -> None:
        idle = 0.05
        while not self._stopping:
            free = self._acquire_free_slots()
            try:
                batch = list(self._claim(free))
            except Exception:
                log.exception("%s: claiming failed", self.name)
                batch = []
            for _ in range(free - len(batch)):
                self._free.release()
            if batch and self._stopping:  # claimed while stopping: give it straight back
                self._release(batch)
                return
            for item in batch:
                self._work.put(item)
            if batch:
                idle = 0.05
                continue
            self._wake.wait(timeout=idle)
            self._wake.clear()
            idle = min(self._idle_poll, idle * 2)

    def _acquire_free_slots(self) -> int:
        """Wait for a free slot, then briefly for more: one claim query for several items."""
        self._free.acquire()
        count = 1
        deadline = time.monotonic() + self._claim_window
        while count < self._concurrency:
            if not self._free.acquire(blocking=False):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._free.acquire(timeout=remaining):
                    break
            count += 1
        return count

    def _work_loop(self) -> None:
        while not self._stopping:
            item = self._work.get()
            if item is None:
                return
            self.busy += 1
            try:
                self._run(item)
            except Exception:
                log.exception("%s: %s crashed; its lease will expire and it is retried",
                              self.name, self._describe(item))
            finally:
                self.busy -= 1
                self._free.release()
