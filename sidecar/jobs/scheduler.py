"""Scheduled work: enqueue a job at each fire time of a Harbor cron schedule.

Every worker of every sidecar runs a scheduler; the job key names the schedule and the fire
time, so however many of them see a fire time, one job results (store.jobs.enqueue is
idempotent by key). A fire time is caught up to `grace` seconds late (a restart across 3:00
still runs the 3:00 retention); older ones are skipped, as cron skips them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from functools import lru_cache
from typing import Any

from sidecar.rules.cron import CronSchedule
from sidecar.rules.cron import parse_cron
from sidecar.store import clock
from sidecar.store import jobs as job_store
from sidecar.store.executor import Executor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Schedule:
    """One cron schedule and the job it starts. `name` is stable across reloads and
    sidecars ("retention:<policy id>"): it keys the jobs, so it must not change."""

    name: str
    cron: str
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)
    project: str = ""
    title: str = ""
    operator: str = ""


#: Reads the schedules of one family (from the store); runs on a database thread.
Provider = Callable[[], Sequence[Schedule]]


@lru_cache(maxsize=4096)
def _parsed(spec: str) -> CronSchedule:
    return parse_cron(spec)


def latest_fire(spec: str, now: float, grace: float) -> float | None:
    """The last fire time in (now - grace, now], or None. Pure."""
    schedule = _parsed(spec)
    after = datetime.fromtimestamp(now - grace, UTC)
    latest = None
    while True:
        fire = schedule.next_after(after)
        if fire is None or fire.timestamp() > now:
            return latest
        latest = fire.timestamp()
        after = fire


def job_key(schedule: Schedule, fire: float) -> str:
    return f"{schedule.name}@{int(fire)}"


def due(schedules: Sequence[Schedule], now: float, grace: float) -> list[tuple[Schedule, float]]:
    """The schedules with a fire time in (now - grace, now], each with that time. Pure."""
    out = []
    for schedule in schedules:
        try:
            fire = latest_fire(schedule.cron, now, grace)
        except ValueError:  # refused when the rules loaded; never reaches here in practice
            log.warning("schedule %s: cannot read cron %r", schedule.name, schedule.cron)
            continue
        if fire is not None:
            out.append((schedule, fire))
    return out


def enqueue_due(pending: Sequence[tuple[Schedule, float]], now: float) -> int:
    """Queue a job per due schedule (store side); returns how many were new."""
    made = 0
    for schedule, fire in pending:
        payload = {**schedule.payload, "scheduled_at": int(fire)}
        job_id = job_store.enqueue(schedule.kind, payload, key=job_key(schedule, fire),
                                   project=schedule.project, title=schedule.title,
                                   operator=schedule.operator, now=now)
        if job_id is not None:
            made += 1
            log.info("schedule %s: queued %s job %s for %s", schedule.name, schedule.kind,
                     job_id, datetime.fromtimestamp(fire, UTC).isoformat())
    return made


class Scheduler:
    """Looks at every family's schedules each `tick` seconds and queues what is due."""

    def __init__(self, executor: Executor, providers: Sequence[Provider] = (), *,
                 queued: Callable[[int], None] = lambda n: None, tick: float = 15.0,
                 grace: float = 600.0):
        self._executor = executor
        self._providers = list(providers)
        self._queued = queued  # wakes the job lane of this process
        self._tick = tick
        self._grace = grace
        self._stopping = threading.Event()

    def add(self, provider: Provider) -> None:
        """Look at this family's schedules too (before start)."""
        self._providers.append(provider)

    def start(self) -> None:
        if self._providers:
            threading.Thread(target=self._run, name="scheduler", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()

    def run_once(self, now: float | None = None) -> int:
        now = clock.now() if now is None else now
        schedules: list[Schedule] = []
        for provider in self._providers:
            schedules.extend(self._executor.run(provider))
        pending = due(schedules, now, self._grace)
        if not pending:
            return 0
        made = self._executor.run(enqueue_due, pending, now)
        if made:
            self._queued(made)
        return made

    def _run(self) -> None:
        while True:
            try:
                self.run_once()
            except Exception:
                log.exception("checking schedules failed")
            if self._stopping.wait(self._tick):
                return
