"""The quota books one worker keeps for the proxy's gate: which projects have a quota, the
check-and-hold of a push (one store round trip, on a database thread), and everything after
the registry's answer, off the request path.

Settles and deletes queue in memory and a background writer applies them in arrival order,
as many as are waiting in one transaction (group commit: a lone push settles at once, pushes
arriving during a write form the next batch). A settle that takes a project across its warning
threshold makes a QUOTA_WARNING (with the operator and tag of the push that caused it),
recorded with its deliveries in the settle's own transaction: the warning is decided, kept
and sent exactly once, and is in the store as soon as the usage that caused it is. A worker
stopped gracefully applies what it holds; a killed one leaves its holds to expire
(`release_expired`, every minute in every worker).

Which projects have a quota is kept in memory, read again every `refresh_seconds` (and at
once after this worker changed a quota), so a pull or a push to a project without one never
waits for the store. A quota set through another worker's API is enforced here from the next
refresh.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.events.quota import QUOTA_WARNING
from sidecar.events.quota import QuotaEvent
from sidecar.store import quota_limits
from sidecar.store import quota_recount
from sidecar.store import quota_usage
from sidecar.store.executor import Executor
from sidecar.store.models import database
from sidecar.store.quota_usage import Reservation
from sidecar.store.quota_usage import WarningDue

log = logging.getLogger(__name__)

#: Records events with their deliveries inside the caller's transaction (the recorder's
#: `write_now`); returns the deliveries made.
Record = Callable[[Sequence[Any]], int]


@dataclass(frozen=True)
class _Settle:
    token: str
    ok: bool
    operator: str
    request_id: str
    tag: str


@dataclass(frozen=True)
class _Forget:
    project: str
    repository: str
    digest: str


class QuotaBook:
    """The gate's `Books` (sidecar.proxy.quota_gate), backed by the store."""

    def __init__(self, executor: Executor, record: Record, *,
                 recorded: Callable[[int], None] = lambda n: None,
                 observe: Callable[[list[Any]], None] = lambda events: None,
                 refresh_seconds: float = 2.0, sweep_seconds: float = 60.0,
                 retry_seconds: float = 1.0, clock: Callable[[], float] = time.time):
        self._executor = executor
        self._record = record
        self._recorded = recorded  # after a commit that made deliveries: wake the dispatcher
        self._observe = observe
        self._refresh_seconds = refresh_seconds
        self._sweep_seconds = sweep_seconds
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._projects: frozenset[str] = frozenset()
        self._queue: deque[_Settle | _Forget] = deque()
        self._wake = threading.Event()
        self._writing = threading.Lock()  # the writer and a stop's flush take turns
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self.settled = 0
        self.warnings = 0

    # -- what the gate asks ------------------------------------------------------------------
    def tracks(self, project: str) -> bool:
        return project in self._projects

    def reserve_blob(self, project: str, repository: str, digest: str,
                     size: int | None) -> Reservation:
        return self._executor.run(quota_usage.reserve_blob, project, digest, size,
                                  repository=repository)

    def reserve_manifest(self, project: str, repository: str, digest: str, size: int,
                         refs: Iterable[tuple[str, int]]) -> Reservation:
        return self._executor.run(quota_usage.reserve_manifest, project, repository, digest,
                                  size, tuple(refs))

    def settle(self, token: str, ok: bool, *, operator: str = "", request_id: str = "",
               tag: str = "") -> None:
        """Queue how a held push ended (never blocks)."""
        self._queue.append(_Settle(token, ok, operator, request_id, tag))
        self._wake.set()

    def forget(self, project: str, repository: str, digest: str) -> None:
        """Queue a manifest deleted from a repository (never blocks)."""
        self._queue.append(_Forget(project, repository, digest))
        self._wake.set()

    # -- which projects ----------------------------------------------------------------------
    def refresh(self) -> None:
        """Read which projects have a quota (a database thread; the gate reads memory)."""
        self._projects = frozenset(self._executor.run(quota_limits.projects))

    @property
    def projects(self) -> frozenset[str]:
        return self._projects

    @property
    def backlog(self) -> int:
        return len(self._queue)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self.refresh()
        except Exception:
            log.exception("reading the projects with a quota failed; retrying")
        for target, name in ((self._write_loop, "quota-settle"),
                             (self._refresh_loop, "quota-refresh")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self.flush()

    def flush(self) -> None:
        """Apply everything queued now (shutdown, tests)."""
        while self._queue:
            if not self._write():
                break

    # -- background --------------------------------------------------------------------------
    def _write_loop(self) -> None:
        while not self._stopping:
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            while self._queue and not self._stopping:
                if not self._write():
                    time.sleep(self._retry_seconds)  # keep them; the database may be back

    def _refresh_loop(self) -> None:
        swept = self._clock()
        while not self._stopping:
            time.sleep(self._refresh_seconds)
            try:
                self.refresh()
            except Exception:
                log.exception("reading the projects with a quota failed")
            if self._clock() - swept >= self._sweep_seconds:
                swept = self._clock()
                try:
                    released = self._executor.run(quota_usage.release_expired)
                except Exception:
                    log.exception("releasing expired quota holds failed")
                    continue
                if released:
                    log.warning("quota: released %d holds whose push never ended", released)

    def _write(self) -> bool:
        """Apply the queue's head: a run of settles in one transaction, or one delete."""
        with self._writing:
            return bool(not self._queue or self._write_head())

    def _write_head(self) -> bool:
        head = self._queue[0]
        if isinstance(head, _Forget):
            try:
                freed = self._executor.run(quota_recount.forget_manifest, head.project,
                                           head.repository, head.digest)
            except Exception:
                log.exception("quota: uncounting %s@%s failed; will retry", head.repository,
                              head.digest)
                return False
            self._queue.popleft()
            if freed:
                log.info("quota: %s@%s deleted, %d bytes freed in %s", head.repository,
                         head.digest, freed, head.project)
            return True
        batch: list[_Settle] = []
        for item in self._queue:
            if not isinstance(item, _Settle) or len(batch) >= 500:
                break
            batch.append(item)
        try:
            events, deliveries = self._executor.run(self._settle, batch)
        except Exception:
            log.exception("quota: settling %d pushes failed; will retry", len(batch))
            return False
        for _ in batch:
            self._queue.popleft()
        self.settled += len(batch)
        if events:
            self.warnings += len(events)
            self._observe(events)
            for event in events:
                log.info("quota: %s crossed its warning threshold: %s", event.project,
                         event.details)
        if deliveries:
            self._recorded(deliveries)
        return True

    def _settle(self, batch: Sequence[_Settle]) -> tuple[list[QuotaEvent], int]:
        """One transaction: settle the holds, record the QUOTA_WARNINGs they cause."""
        with database.atomic():
            due = quota_usage.settle([(item.token, item.ok) for item in batch])
            events = self._warnings(due, {item.token: item for item in batch})
            return events, (self._record(events) if events else 0)

    def _warnings(self, due: Sequence[WarningDue], pushes: dict[str, _Settle]
                  ) -> list[QuotaEvent]:
        now = int(self._clock())
        events = []
        for warning in due:
            push = pushes.get(warning.token)
            events.append(QuotaEvent(
                type=QUOTA_WARNING, project=warning.project, occur_at=now,
                operator=push.operator if push else "", details=warning.message,
                repo_name=warning.repository, digest=warning.digest,
                tag=push.tag if push and warning.digest else "",
                request_id=push.request_id if push else ""))
        return events
