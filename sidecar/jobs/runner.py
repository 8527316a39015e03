"""Run background jobs (scans, replication tasks, retention runs) through their handlers.

A handler is a small object per job kind (see `JobHandler`); the runner gives it a `JobContext`
and turns what it returns or raises into the job's next state. Events a job produces are
recorded in the same transaction as the checkpoint or outcome that goes with them, so a job
taken over after a crash neither loses nor repeats them: after `kill -9` mid-scan, exactly one
SCANNING_COMPLETED.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Protocol

from sidecar.jobs.backoff import RetryPolicy
from sidecar.store import jobs as job_store
from sidecar.store.executor import Executor
from sidecar.store.jobqueue import JobQueue
from sidecar.store.models import FAILED
from sidecar.store.models import STOPPED
from sidecar.store.models import SUCCEEDED
from sidecar.store.models import Job
from sidecar.store.models import database

log = logging.getLogger(__name__)

#: Writes events (any family) with their deliveries, inside the caller's transaction;
#: returns how many deliveries it made. The recorder's `write_now`.
RecordEvents = Callable[[Sequence[Any]], int]


class LostClaim(Exception):
    """Another worker took this job over (our lease ran out): stop working on it."""


class Retry(Exception):
    """A transient failure: try the job again later (with backoff), or after `delay`."""

    def __init__(self, reason: str, delay: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class Stopped(Exception):
    """Raised by `JobContext.check_stop` when someone asked the job to stop."""


@dataclass(frozen=True)
class Outcome:
    """How a job's run ended: `status` SUCCEEDED or FAILED (final, no retry)."""

    status: str
    reason: str = ""
    result: dict[str, Any] | None = None
    events: Sequence[Any] = ()


class JobHandler(Protocol):
    """One kind of job. `run` does the work; `failed` and `stopped` name the events that say
    it gave up or was stopped (both may return []). All three may call the context."""

    kind: str

    def run(self, ctx: JobContext) -> Outcome: ...

    def failed(self, ctx: JobContext, reason: str) -> Sequence[Any]: ...

    def stopped(self, ctx: JobContext) -> Sequence[Any]: ...


@dataclass
class JobContext:
    """What a handler sees of its job: its input, its last checkpoint, and the means to save
    progress atomically with the events that go with it."""

    job: Job
    runner: JobRunner
    _log: list[str] = field(default_factory=list)
    _stop_checked: float = 0.0

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload

    @property
    def state(self) -> dict[str, Any]:
        return self.job.state

    @property
    def attempt(self) -> int:
        """This run's attempt number, from 1."""
        return self.job.attempts + 1

    def log(self, line: str) -> None:
        """A line for the job's log (API task log, status); written at the next save."""
        self._log.append(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {line}")

    def checkpoint(self, state: dict[str, Any] | None = None, *,
                   result: dict[str, Any] | None = None, events: Sequence[Any] = ()) -> None:
        """Save progress (and events) in one transaction; raise LostClaim if taken over."""
        lines, self._log = self._log, []
        self.runner.save(self.job, state=state, result=result, events=events, log=lines)

    def enqueue(self, kind: str, payload: dict[str, Any], **options: Any) -> int | None:
        """Queue another job (a run's tasks); see store.jobs.enqueue."""
        job_id = self.runner.executor.run(job_store.enqueue, kind, payload, **options)
        if job_id is not None:
            self.runner.enqueued()  # committed: this process's lane may claim it now
        return job_id

    def stop_requested(self) -> bool:
        """Whether someone asked this job to stop (read at most once a second)."""
        now = time.monotonic()
        if now - self._stop_checked < 1.0:
            return False
        self._stop_checked = now
        return bool(self.runner.executor.run(job_store.stop_requested, self.job.id))

    def check_stop(self) -> None:
        if self.stop_requested():
            raise Stopped()


@dataclass(frozen=True)
class RunnerSettings:
    lease: float = 60.0  # renewed every lease/3 while a handler runs
    backoff: float = 10.0
    backoff_max: float = 600.0


class JobRunner:
    """Runs one claimed job through its handler and settles it (the job lane's `run`)."""

    def __init__(self, executor: Executor, handlers: Iterable[JobHandler],
                 record: RecordEvents, settings: RunnerSettings = RunnerSettings(),
                 recorded: Callable[[int], None] = lambda n: None,
                 enqueued: Callable[[], None] = lambda: None):
        self.executor = executor
        self.handlers = {handler.kind: handler for handler in handlers}
        self.record = record
        self.recorded = recorded  # after a commit that made deliveries: wake the dispatcher
        self.enqueued = enqueued  # after a job queued another: wake the job lane
        self.settings = settings
        self.queue: JobQueue = job_store.queue_for(self.handlers)

    @property
    def kinds(self) -> list[str]:
        return sorted(self.handlers)

    def add(self, handler: JobHandler) -> None:
        """Run jobs of `handler.kind` too (before the lane starts)."""
        self.handlers[handler.kind] = handler
        self.queue = job_store.queue_for(self.handlers)

    # -- the lane's three calls --------------------------------------------------------------
    def claim(self, limit: int) -> list[Job]:
        return self.executor.run(job_store.claim, self.queue, limit, self.settings.lease)

    def release(self, jobs: Sequence[Job]) -> int:
        return self.executor.run(self.queue.release, jobs)

    def run(self, job: Job) -> None:
        handler = self.handlers[job.kind]
        ctx = JobContext(job, self)
        try:
            if job.stop_requested:
                self._end(ctx, STOPPED, "stopped on request", handler.stopped(ctx))
                return
            if job.attempts >= job.max_attempts:  # its last lease ran out: give up, say why
                reason = job.last_error or "gave up"
                self._end(ctx, FAILED, reason, handler.failed(ctx, reason))
                return
            with self._heartbeat(job):
                outcome = self._attempt(handler, ctx)
            if outcome is not None:
                self._end(ctx, outcome.status, outcome.reason, outcome.events,
                          result=outcome.result)
        except LostClaim:
            log.warning("job %s (%s): taken over by another worker; stopping here", job.id,
                        job.kind)

    def _attempt(self, handler: JobHandler, ctx: JobContext) -> Outcome | None:
        job = ctx.job
        try:
            return handler.run(ctx)
        except (LostClaim, Stopped):
            if ctx.runner.executor.run(job_store.stop_requested, job.id):
                self._end(ctx, STOPPED, "stopped on request", handler.stopped(ctx))
                return None
            raise
        except Retry as exc:
            reason = exc.reason
            delay = exc.delay
        except Exception as exc:  # a handler bug or an unexpected answer: retried, logged
            log.exception("job %s (%s) failed", job.id, job.kind)
            reason = f"{type(exc).__name__}: {exc}"[:500]
            delay = None
        if ctx.attempt >= job.max_attempts:
            self._end(ctx, FAILED, reason, handler.failed(ctx, reason))
            return None
        wait = delay if delay is not None else RetryPolicy(
            backoff=self.settings.backoff, backoff_max=self.settings.backoff_max,
        ).delay(ctx.attempt)
        ctx.log(f"attempt {ctx.attempt} failed: {reason}; retrying in {wait:.0f}s")
        lines, ctx._log = ctx._log, []
        ok = self.executor.run(job_store.finish, self.queue, job, FAILED, reason=reason,
                               log=lines, retry_at=time.time() + wait)
        if not ok:
            raise LostClaim()
        log.info("job %s (%s) attempt %d failed (%s); retry in %.0fs", job.id, job.kind,
                 ctx.attempt, reason, wait)
        return None

    # -- writes --------------------------------------------------------------------------------
    def save(self, job: Job, *, state: dict[str, Any] | None, result: dict[str, Any] | None,
             events: Sequence[Any], log: Sequence[str]) -> None:
        def write() -> int:
            with database.atomic():
                if not job_store.checkpoint(self.queue, job, state=state, result=result,
                                            log=log, lease_seconds=self.settings.lease):
                    raise LostClaim()
                return self.record(events) if events else 0

        self._wrote(self.executor.run(write))

    def _wrote(self, deliveries: int) -> None:
        if deliveries:
            self.recorded(deliveries)

    def _end(self, ctx: JobContext, status: str, reason: str, events: Sequence[Any],
             result: dict[str, Any] | None = None) -> None:
        job = ctx.job
        ctx.log(f"{status}" + (f": {reason}" if reason and status != SUCCEEDED else ""))
        lines, ctx._log = ctx._log, []

        def write() -> int:
            with database.atomic():
                if not job_store.finish(self.queue, job, status, reason=reason, result=result,
                                        log=lines, count_attempt=status != STOPPED):
                    raise LostClaim()
                return self.record(events) if events else 0

        self._wrote(self.executor.run(write))
        level = logging.INFO if status in (SUCCEEDED, STOPPED) else logging.WARNING
        log.log(level, "job %s (%s%s) %s%s", job.id, job.kind,
                f" {job.title}" if job.title else "", status, f": {reason}" if reason else "")

    # -- lease -----------------------------------------------------------------------------
    def _heartbeat(self, job: Job) -> _Heartbeat:
        return _Heartbeat(self, job)


class _Heartbeat:
    """Renews a running job's lease every third of it, so long work keeps its claim."""

    def __init__(self, runner: JobRunner, job: Job):
        self._runner = runner
        self._job = job
        self._done = threading.Event()

    def __enter__(self) -> _Heartbeat:
        threading.Thread(target=self._beat, name=f"job-{self._job.id}-lease",
                         daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()

    def _beat(self) -> None:
        interval = self._runner.settings.lease / 3
        while not self._done.wait(interval):
            try:
                [ok] = self._runner.executor.run(self._runner.queue.renew, [self._job],
                                                 self._runner.settings.lease)
            except Exception:
                log.exception("renewing the lease of job %s failed", self._job.id)
                continue
            if not ok:
                return  # taken over: the handler finds out at its next save
