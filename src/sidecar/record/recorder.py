"""Take events off the request path and record them, with one delivery per matching target.

`submit` never blocks and never touches the database: the proxy calls it after the response
is on its way. A background writer drains the buffer in batches. The window between the
client's response and the commit is one batch interval (50 ms by default); a worker stopped
gracefully flushes what it holds, a killed one loses at most that window.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass

from sidecar.events.model import PUSH_ARTIFACT
from sidecar.events.model import ArtifactEvent
from sidecar.events.payload import artifact_payload
from sidecar.rules.match import matching
from sidecar.store import policies as policy_store
from sidecar.store import queue
from sidecar.store.executor import Executor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecorderSettings:
    hostname: str = ""
    max_attempts: int = 3
    batch_interval: float = 0.05
    batch_size: int = 500
    max_buffer: int = 100_000
    retry_interval: float = 1.0  # after a failed write: the database may be restarting


def build_records(
    events: Iterable[ArtifactEvent],
    projects: dict[str, policy_store.ProjectPolicies],
    created: dict[str, int],
    hostname: str,
    notifications_enabled: bool,
) -> list[queue.NewEvent]:
    """Pure: events + the policies of their projects -> rows to insert."""
    out: list[queue.NewEvent] = []
    for event in events:
        project = projects.get(event.namespace) if event.name else None
        payload = artifact_payload(
            event,
            hostname=hostname,
            public=bool(project and project.public),
            date_created=created.get(event.repository),
        )
        deliveries: list[queue.NewDelivery] = []
        if project is not None and notifications_enabled:
            for policy in matching(project.policies, event.type):
                for target in policy.targets:
                    deliveries.append(queue.NewDelivery(policy.id, policy.name, dict(target)))
        out.append(
            queue.NewEvent(
                type=event.type,
                occur_at=event.occur_at,
                operator=event.operator,
                project=project.name if project else "",
                repository=event.repository,
                request_id=event.request_id,
                payload=payload,
                deliveries=tuple(deliveries),
            )
        )
    return out


class Recorder:
    """Buffers events in memory and writes them from a background thread (greenlet)."""

    def __init__(
        self,
        executor: Executor,
        settings: RecorderSettings,
        notifications_enabled: Callable[[], bool] = lambda: True,
        on_recorded: Callable[[int], None] = lambda n: None,
    ):
        self._executor = executor
        self._settings = settings
        self._enabled = notifications_enabled
        self._on_recorded = on_recorded
        self._buffer: deque[ArtifactEvent] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.recorded = 0

    def submit(self, events: Iterable[ArtifactEvent]) -> None:
        for event in events:
            if len(self._buffer) >= self._settings.max_buffer:
                self.dropped += 1
                log.error("event buffer full (%d): dropping %s for %s", len(self._buffer),
                          event.type, event.repository)
                continue
            self._buffer.append(event)
        self._wake.set()

    @property
    def backlog(self) -> int:
        return len(self._buffer)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self.flush()

    def flush(self) -> None:
        """Write everything buffered now; used at shutdown and by tests."""
        while self._buffer:
            if not self._write_batch():
                break

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            if self._buffer:
                time.sleep(self._settings.batch_interval)  # gather a batch
            while self._buffer and not self._stopping:
                if not self._write_batch():
                    time.sleep(self._settings.retry_interval)  # keep the events, try again

    def _write_batch(self) -> bool:
        batch = [
            self._buffer.popleft()
            for _ in range(min(self._settings.batch_size, len(self._buffer)))
        ]
        try:
            created = self._executor.run(self._write, batch)
        except Exception:
            log.exception("recording %d events failed; will retry", len(batch))
            self._buffer.extendleft(reversed(batch))
            return False
        self.recorded += len(batch)
        if created:
            self._on_recorded(created)
        return True

    def _write(self, batch: list[ArtifactEvent]) -> int:
        namespaces = {event.namespace for event in batch if event.name}
        projects = policy_store.policies_for(namespaces)
        now = int(time.time())
        pushed = [e.repository for e in batch if e.type == PUSH_ARTIFACT]
        created = policy_store.repository_created([e.repository for e in batch], pushed, now)
        rows = build_records(
            batch, projects, created, self._settings.hostname, self._enabled()
        )
        return queue.record_events(rows, self._settings.max_attempts)
