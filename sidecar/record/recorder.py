"""Take events off the request path and record them, with one delivery per matching target.

`submit` is a bounded append to memory: it never blocks and never touches the database; the
proxy calls it after the response is on its way. A background writer drains the buffer with
group commit: it writes as soon as it is idle, so a lone event is committed at once, and what
arrives while a write is under way forms the next batch (batches grow only under load).
Events the policy index says nobody wants (most pulls) are checked after up to 50 ms instead,
many at a time: they make no row unless a policy was added since the index was read.
Matching uses an index of every project's policies, filters compiled, reloaded only when the
policy tables change. A worker stopped gracefully flushes what it holds; a killed one loses
what was not committed yet: the events of the batch being written and those buffered behind
it, i.e. the last few milliseconds (one write) of events.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from typing import Protocol

from peewee import InterfaceError
from peewee import OperationalError

from sidecar.events.families import payload_for
from sidecar.events.model import PULL_ARTIFACT
from sidecar.events.model import PUSH_ARTIFACT
from sidecar.events.model import ArtifactEvent
from sidecar.record.late import LateEvents
from sidecar.store import dedup
from sidecar.store import delivery_queue
from sidecar.store import policies as policy_store
from sidecar.store import policy_version
from sidecar.store.executor import Executor
from sidecar.store.models import database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecorderSettings:
    hostname: str = ""
    max_attempts: int = 3
    #: gather this long before writing (0: group commit, write as soon as idle)
    batch_interval: float = 0.0
    #: under load (events arrived while a batch was written), writes start at most this
    #: often, so one transaction carries several events: each write's fixed cost (the hop
    #: to a database thread, the transaction, the policy and switch checks) was most of a
    #: pull's recording when every event had a write of its own. An event after a quiet
    #: spell is still written at once. 20 ms: with every pull delivered, 2 workers spent
    #: 563 -> 433 us per webhook against 5 ms, and at 300 pushes/s the p99 to the receiver
    #: stayed at 25 ms (bench/README.md, round 4).
    gather_window: float = 0.02
    #: a backlog this large is written without waiting
    gather_below: int = 32
    #: events the index says nobody wants (no policy of their project subscribes to their
    #: type, no trigger wants them at once: most pulls) wait up to this long, so one check
    #: of the index, and one hop to a database thread, serves many of them: with a write
    #: every 5 ms that check was about 35 us of each pull's 200 us. An event that may make
    #: a row ends the wait at once.
    quiet_window: float = 0.05
    batch_size: int = 500
    max_buffer: int = 100_000
    retry_interval: float = 1.0  # after a failed write: the database may be restarting
    #: store events that get no delivery too (sidecar.record_unmatched_events); nothing in
    #: the sidecar reads them, and on a busy registry they were a row per pull
    keep_unmatched: bool = False
    #: most deliveries of one write claimed for this process's dispatcher (its free slots)
    handoff_limit: int = 100


def policies_for_event(
    event: ArtifactEvent, project: policy_store.ProjectPolicies | None
) -> list[policy_store.StoredPolicy]:
    """Enabled policies subscribed to the event's type whose filters let it through."""
    if project is None:
        return []
    subscribed = project.by_type.get(event.type, ())
    if not event.repository:  # a project-wide event: repository and tag filters do not apply
        return [policy for policy in subscribed if policy.matcher.accepts_operator(event.operator)]
    references = event.tags or (event.digest,)
    return [
        policy for policy in subscribed
        if policy.matcher.accepts(repository=event.name, references=references,
                                  operator=event.operator)
    ]


def pull_window_key(policy: policy_store.StoredPolicy, event: ArtifactEvent) -> str | None:
    """The de-duplication window this delivery falls in, or None when it is not de-duplicated."""
    if event.type != PULL_ARTIFACT or policy.pull_dedup_seconds <= 0:
        return None
    artifact = f"{event.repository}@{event.digest or event.reference}"
    return dedup.pull_key(policy.id, artifact, event.operator)


def pull_windows(
    events: Iterable[ArtifactEvent],
    projects: dict[str, policy_store.ProjectPolicies],
    notifications_enabled: bool,
) -> dict[str, tuple[float, int]]:
    """Pure: the windows a batch wants to open, `key -> (time of first pull, seconds)`."""
    out: dict[str, tuple[float, int]] = {}
    if not notifications_enabled:
        return out
    for event in events:
        project = projects.get(event.project) if event.project else None
        for policy in policies_for_event(event, project):
            key = pull_window_key(policy, event)
            if key is not None and key not in out:
                out[key] = (float(event.occur_at), policy.pull_dedup_seconds)
    return out


def build_records(
    events: Iterable[ArtifactEvent],
    projects: dict[str, policy_store.ProjectPolicies],
    created: dict[str, int],
    hostname: str,
    notifications_enabled: bool,
    admitted: set[str] | None = None,
    keep_unmatched: bool = True,
) -> list[delivery_queue.NewEvent]:
    """Pure: events + the policies of their projects -> rows to insert.

    `admitted` holds the pull windows this batch won (store.dedup.admit): the first pull of
    each gets its delivery, a repeat in the same batch or a pull in someone else's window gets
    none. None means no de-duplication. An event that gets no delivery is a row only with
    `keep_unmatched` (`sidecar.record_unmatched_events`): nothing else reads it.
    """
    opened = set(admitted or ())
    out: list[delivery_queue.NewEvent] = []
    for event in events:
        project = projects.get(event.project) if event.project else None
        deliveries: list[delivery_queue.NewDelivery] = []
        if project is not None and notifications_enabled:
            for policy in policies_for_event(event, project):
                key = pull_window_key(policy, event) if admitted is not None else None
                if key is not None:
                    if key not in opened:
                        continue
                    opened.discard(key)
                for target in policy.targets:
                    deliveries.append(
                        delivery_queue.NewDelivery(policy.id, policy.name, dict(target)))
        if not deliveries and not keep_unmatched:
            continue
        payload = payload_for(event, hostname=hostname, public=bool(project and project.public),
                              date_created=created.get(event.repository))
        out.append(
            delivery_queue.NewEvent(
                type=event.type,
                occur_at=event.occur_at,
                operator=event.operator,
                project=project.name if project else "",
                repository=event.repository,
                # Harbor generates a request id when the client sent none; so do we, once per
                # event, so every delivery of it (CloudEvents `requestid`) carries the same
                request_id=event.request_id or str(uuid.uuid4()),
                payload=payload,
                deliveries=tuple(deliveries),
            )
        )
    return out


@dataclass(frozen=True)
class _Plan:
    """What recording a batch reads before it writes: policies, first-seen times, the global
    switch, the pull windows the batch wants, the time."""

    projects: dict[str, policy_store.ProjectPolicies]
    created: dict[str, int]
    enabled: bool
    windows: dict[str, tuple[float, int]]
    now: int


class Handoff(Protocol):
    """The dispatcher of this process, taking deliveries the recorder claimed for it."""

    lease: float

    def reserve(self, limit: int) -> int: ...

    def take(self, deliveries: list, reserved: int) -> None: ...


@dataclass(frozen=True)
class Trigger:
    event_types: frozenset[str]
    start: Callable[[Sequence[Any]], int]
    started: Callable[[int], None]
    #: events of these types reach `start` late, gathered (record.late); None: all at once
    late: LateEvents | None = None

    def at_once(self, kind: str) -> bool:
        """Whether events of this type must reach `start` in their batch's transaction."""
        return kind in self.event_types and (self.late is None or kind not in self.late.types)

    def now(self, batch: Sequence[Any]) -> list[Any]:
        """The events of `batch` this trigger must see in the batch's own transaction."""
        return [e for e in batch if self.at_once(e.type)]


class Recorder:
    """Buffers events in memory and writes them from a background thread (greenlet)."""

    def __init__(
        self,
        executor: Executor,
        settings: RecorderSettings,
        notifications_enabled: Callable[[], bool] = lambda: True,
        on_recorded: Callable[[int], None] = lambda n: None,
        handoff: Handoff | None = None,
    ):
        """`on_recorded(n)` follows a commit that made n deliveries nobody has claimed yet
        (wake the dispatcher); with a `handoff`, the deliveries it has free slots for are
        claimed in the recording transaction and handed to it instead."""
        self._executor = executor
        self._handoff = handoff
        self._settings = settings
        self._enabled = notifications_enabled
        self._on_recorded = on_recorded
        self._buffer: deque[ArtifactEvent] = deque()
        self._since = 0.0  # when the oldest buffered event arrived
        self._urgent = False  # a buffered event may make a row (see _may_write)
        self._gathering = False  # waiting out quiet_window: only urgent events wake us
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.recorded = 0
        self._windows_swept = 0.0
        self._fingerprint: tuple | None = None
        self._version: int | None = None  # store.policy_version when the index was read
        self._projects: dict[str, policy_store.ProjectPolicies] = {}
        self._created: dict[str, int] = {}  # repository -> first seen (never changes)
        self._not_created: dict[str, float] = {}  # repository -> when it had no row
        self._triggers: list[Trigger] = []

    def add_trigger(self, event_types: Iterable[str], start: Callable[[Sequence[Any]], int],
                    started: Callable[[int], None] = lambda n: None,
                    late: LateEvents | None = None) -> None:
        """Start jobs from recorded events (scan on push): `start(events)` runs inside the
        transaction that records a batch holding some of `event_types`, with those events,
        and returns how many jobs it queued; `started(n)` follows the commit (wake the job
        lane). Events of `late.types` are gathered instead and handed to `start` in the next
        transaction the recorder writes, or when `late` is due. Call before `start()`."""
        self._triggers.append(Trigger(frozenset(event_types), start, started, late))

    def submit(self, events: Iterable[ArtifactEvent]) -> None:
        urgent = False
        for event in events:
            if len(self._buffer) >= self._settings.max_buffer:
                self.dropped += 1
                log.error("event buffer full (%d): dropping %s for %s", len(self._buffer),
                          event.type, event.repository)
                continue
            if not self._buffer:
                self._since = time.monotonic()
            self._buffer.append(event)
            urgent = urgent or self._may_write(event)
        if urgent:
            self._urgent = True
            self._wake.set()
        elif not self._gathering:
            self._wake.set()

    def _may_write(self, event: Any) -> bool:
        """Whether the event may make a row or wake a trigger, by the index as last read (a
        policy added since is found when the event is written, at most quiet_window on)."""
        if self._settings.keep_unmatched:
            return True
        kind = event.type
        if any(trigger.at_once(kind) for trigger in self._triggers):
            return True
        project = self._projects.get(event.project) if event.project else None
        return project is not None and bool(project.by_type.get(kind))

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
        """Write everything buffered now, late events included; at shutdown and in tests."""
        while self._buffer:
            if not self._write_batch():
                return
        if any(t.late is not None and len(t.late) for t in self._triggers):
            self._write_batch()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            if not self._buffer and any(t.late.due() for t in self._triggers if t.late):
                self._write_batch()  # late events waited long enough: write them alone
            if self._buffer and self._settings.batch_interval:
                time.sleep(self._settings.batch_interval)  # gather a batch
            # group commit: what arrived during one write is the next batch
            while self._buffer and not self._stopping:
                if not self._urgent:  # nobody wants these yet: gather (quiet_window)
                    rest = self._settings.quiet_window - (time.monotonic() - self._since)
                    if rest > 0:
                        self._gathering = True
                        self._wake.wait(timeout=rest)
                        self._wake.clear()
                        self._gathering = False
                        continue
                started = time.monotonic()
                if not self._write_batch():
                    time.sleep(self._settings.retry_interval)  # keep the events, try again
                    continue
                if 0 < len(self._buffer) < self._settings.gather_below:
                    rest = self._settings.gather_window - (time.monotonic() - started)
                    if rest > 0:
                        time.sleep(rest)

    def _write_batch(self) -> bool:
        batch = [
            self._buffer.popleft()
            for _ in range(min(self._settings.batch_size, len(self._buffer)))
        ]
        # what is left (or comes during the write) is judged as it stands: urgent if any
        self._urgent = bool(self._buffer)
        self._since = time.monotonic()
        for trigger in self._triggers:
            if trigger.late is not None:
                trigger.late.keep(batch)  # again after a failed write: the same keys
        handoff = self._handoff if batch else None
        reserved = handoff.reserve(self._settings.handoff_limit) if handoff else 0
        claimed: list = []
        try:
            created, started, claimed = self._executor.run(self._write, batch, reserved, True)
        except Exception:
            log.exception("recording %d events failed; will retry", len(batch))
            self._buffer.extendleft(reversed(batch))
            return False
        finally:
            if handoff is not None:
                handoff.take(claimed, reserved)
        self.recorded += len(batch)
        if created > len(claimed):
            self._on_recorded(created - len(claimed))
        for trigger, count in started:
            trigger.started(count)
        return True

    def write_now(self, batch: Sequence[Any]) -> int:
        """Record events and their deliveries now, in the caller's thread and transaction
        (a job records the events of a checkpoint or outcome atomically with it); returns
        the deliveries made. The caller wakes the dispatcher once its transaction commits."""
        return self._write(batch)[0]

    def _write(self, batch: Sequence[Any], claim: int = 0, with_late: bool = False,
               ) -> tuple[int, list[tuple[Trigger, int]], list]:
        """Deliveries made, the jobs each trigger queued, and up to `claim` of the deliveries
        claimed for the handoff, in one transaction, which also writes the late events
        gathered so far (`with_late`: the recorder's own writes, not a job's). A batch that
        makes no row and that no trigger must see at once (pulls no policy wants) opens no
        transaction at all."""
        wanted = [(t, events) for t in self._triggers if (events := t.now(batch))]
        plan = self._plan(batch)
        rows = None if plan.windows else self._rows(batch, plan)
        lates = [t for t in self._triggers if with_late and t.late is not None and len(t.late)
                 and (rows or wanted or plan.windows or t.late.due() or not batch)]
        if not rows and not wanted and not lates and not plan.windows:
            return 0, [], []
        taken = [(t, t.late.take()) for t in lates]
        try:
            with database.atomic():
                for trigger, events in taken:  # older than the batch: first
                    self._start_jobs(trigger, events)
                created, claimed = self._record(batch, plan, rows, claim)
                started = [(t, self._start_jobs(t, events)) for t, events in wanted]
        except BaseException:
            for trigger, events in taken:
                trigger.late.give_back(events)
            raise
        return created, [(t, n) for t, n in started if n], claimed

    @staticmethod
    def _start_jobs(trigger: Trigger, batch: Sequence[Any]) -> int:
        """One trigger, in a savepoint: a database failure fails the batch (it is retried
        whole), but a bug of a trigger must not keep every event from being recorded."""
        try:
            with database.atomic():
                return trigger.start(batch)
        except (OperationalError, InterfaceError):
            raise
        except Exception:
            log.exception("starting jobs for %d events failed; the events are recorded "
                          "without them", len(batch))
            return 0

    def _plan(self, batch: Sequence[Any]) -> _Plan:
        if not batch:
            return _Plan({}, {}, False, {}, 0)
        projects = self._policy_index()
        now = int(time.time())
        created = self._repositories_created(batch, now)
        enabled = self._enabled()
        return _Plan(projects, created, enabled, pull_windows(batch, projects, enabled), now)

    def _rows(self, batch: Sequence[Any], plan: _Plan, admitted: set[str] | None = None,
              ) -> list[delivery_queue.NewEvent]:
        return build_records(batch, plan.projects, plan.created, self._settings.hostname,
                             plan.enabled, admitted=admitted,
                             keep_unmatched=self._settings.keep_unmatched)

    def _record(self, batch: Sequence[Any], plan: _Plan, rows: list | None, claim: int,
                ) -> tuple[int, list]:
        lease = self._handoff.lease if self._handoff is not None else 0.0
        if not plan.windows:
            return delivery_queue.record_and_claim(rows or [], self._settings.max_attempts,
                                                   claim, lease)
        self._forget_old_windows(plan.now)
        # The windows' claim comes first in the transaction that records the deliveries: it
        # is the first write (SQLite takes its lock there), and a failed batch gives it back.
        with database.atomic():
            rows = self._rows(batch, plan, dedup.admit(plan.windows))
            return delivery_queue.record_and_claim(rows, self._settings.max_attempts, claim,
                                                   lease)

    def _policy_index(self) -> dict[str, policy_store.ProjectPolicies]:
        """Every project's policies, read again only when the policy tables changed."""
        version = policy_version.current()  # first: a change after it moves it again
        if version == self._version and version >= 0:
            return self._projects
        fingerprint = policy_store.policies_fingerprint()
        self._version = version
        if fingerprint != self._fingerprint:
            changed = (None if self._fingerprint is None
                       else policy_store.changed_projects(self._fingerprint, fingerprint))
            if changed is None:
                self._projects = policy_store.all_policies()
            else:  # only the projects that changed: 10,000 policies take seconds to read
                self._projects = {**self._projects, **policy_store.policies_for(changed)}
            self._fingerprint = fingerprint
        return self._projects

    def _repositories_created(self, batch: Sequence[Any], now: int) -> dict[str, int]:
        """First-seen times of the batch's repositories; known ones come from memory.

        A repository with no row (pushed before the sidecar watched, only pulled since) is
        looked up again after a minute, not with every batch of its pulls; a push through
        this worker records it at once."""
        known, unknown = self._created, self._not_created
        clock = time.monotonic()
        names = [e.repository for e in batch if e.repository and e.repository not in known
                 and clock - unknown.get(e.repository, -60.0) >= 60.0]
        pushed = [e.repository for e in batch
                  if e.type == PUSH_ARTIFACT and e.repository not in known]
        if names or pushed:
            found = policy_store.repository_created(names, pushed, now)
            if len(known) > 100_000:
                known.clear()
            if len(unknown) > 100_000:
                unknown.clear()
            known.update(found)
            for name in found:
                unknown.pop(name, None)
            unknown.update((name, clock) for name in names if name not in found)
        return known

    def _forget_old_windows(self, now: float) -> None:
        if now - self._windows_swept < 3600:
            return
        self._windows_swept = now
        dedup.forget_closed(now)
