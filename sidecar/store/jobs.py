"""Jobs in the store: enqueue, claim, checkpoint, finish and read scans, replication tasks and
retention runs. Claiming and leases are store.jobqueue's, the same as deliveries'.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from peewee import IntegrityError

from sidecar.store import clock
from sidecar.store.jobqueue import JobQueue
from sidecar.store.models import FAILED
from sidecar.store.models import JOB_STATUSES
from sidecar.store.models import PENDING
from sidecar.store.models import RUNNING
from sidecar.store.models import STOPPED
from sidecar.store.models import SUCCEEDED
from sidecar.store.models import Job
from sidecar.store.models import database

FINAL = (SUCCEEDED, FAILED, STOPPED)
#: A job's log is for people: keep its tail when it grows past this.
MAX_LOG_CHARS = 64 * 1024
LEASE_EXPIRED = "the worker running it stopped before it finished (lease expired)"


def _compact(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _append_log(old: str, lines: Sequence[str]) -> str:
    if not lines:
        return old
    text = old + "".join(line.rstrip("\n") + "\n" for line in lines)
    return text[-MAX_LOG_CHARS:]


def queue_for(kinds: Iterable[str]) -> JobQueue:
    """The queue of the given job kinds (one worker lane runs them)."""
    return JobQueue(Job, running=RUNNING, done=FINAL, scope=Job.kind.in_(sorted(set(kinds))),
                    fail_on_expiry=False, lease_expired=LEASE_EXPIRED)


ALL = JobQueue(Job, running=RUNNING, done=FINAL, fail_on_expiry=False,
               lease_expired=LEASE_EXPIRED)


@dataclass(frozen=True)
class JobView:
    """A job as callers see it: plain data, detached from the database."""

    id: int
    kind: str
    key: str | None
    project: str
    parent: int | None
    title: str
    status: str
    attempts: int
    max_attempts: int
    payload: dict[str, Any]
    state: dict[str, Any]
    result: dict[str, Any]
    last_error: str
    operator: str
    stop_requested: bool
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    next_attempt_at: float
    log: str = ""

    @property
    def finished(self) -> bool:
        return self.status in FINAL


def view(row: Job, with_log: bool = False) -> JobView:
    return JobView(
        id=row.id, kind=row.kind, key=row.key, project=row.project, parent=row.parent,
        title=row.title, status=row.status, attempts=row.attempts,
        max_attempts=row.max_attempts, payload=row.payload, state=row.state,
        result=row.result, last_error=row.last_error, operator=row.operator,
        stop_requested=row.stop_requested, created_at=row.created_at,
        updated_at=row.updated_at, started_at=row.started_at, finished_at=row.finished_at,
        next_attempt_at=row.next_attempt_at, log=row.log_text if with_log else "",
    )


def enqueue(kind: str, payload: dict[str, Any], *, key: str | None = None, project: str = "",
            parent: int | None = None, title: str = "", operator: str = "",
            max_attempts: int = 5, run_at: float | None = None,
            now: float | None = None) -> int | None:
    """Add a job; its id, or None when a job with the same `key` already exists.

    The key makes enqueueing idempotent: two sidecars firing the same scheduled run, or two
    workers asked to scan the same digest, make one job.
    """
    now = clock.now() if now is None else now
    fields = dict(kind=kind, key=key, project=project, parent=parent, title=title[:512],
                  operator=operator, payload_json=_compact(payload), status=PENDING,
                  max_attempts=max(1, max_attempts), next_attempt_at=now if run_at is None
                  else run_at, created_at=now, updated_at=now)
    if key is None:
        return Job.insert(**fields).execute()
    try:
        with database.atomic():  # a savepoint when nested: the caller's transaction survives
            return Job.insert(**fields).execute()
    except IntegrityError:
        return None


def claim(queue: JobQueue, limit: int, lease_seconds: float,
          now: float | None = None) -> list[Job]:
    """Take up to `limit` due jobs of the queue's kinds; the first claim stamps `started_at`."""
    rows = queue.claim(limit, lease_seconds, now)
    fresh = [row.id for row in rows if row.started_at is None]
    if fresh:
        stamp = clock.now() if now is None else now
        Job.update(started_at=stamp).where(Job.id.in_(fresh)).execute()
        for row in rows:
            if row.started_at is None:
                row.started_at = stamp
    return rows


def checkpoint(queue: JobQueue, job: Job, *, state: dict[str, Any] | None = None,
               result: dict[str, Any] | None = None, log: Sequence[str] = (),
               lease_seconds: float | None = None) -> bool:
    """Save progress of a job we hold (and extend its lease); False if the claim was lost."""
    now = clock.now()
    fields: dict[str, Any] = {"updated_at": now}
    if state is not None:
        fields["state_json"] = _compact(state)
    if result is not None:
        fields["result_json"] = _compact(result)
    if log:
        fields["log_text"] = _append_log(job.log_text, log)
    if lease_seconds is not None:
        fields["lease_until"] = now + lease_seconds
    ok = queue.settle(job, **fields)
    if ok:
        for name in ("state_json", "result_json", "log_text"):
            if name in fields:
                setattr(job, name, fields[name])
    return ok


def finish(queue: JobQueue, job: Job, status: str, *, reason: str = "",
           result: dict[str, Any] | None = None, log: Sequence[str] = (),
           retry_at: float | None = None, count_attempt: bool = True) -> bool:
    """End a job we hold (or, with `retry_at`, put it back for later); False if we lost it."""
    now = clock.now()
    fields: dict[str, Any] = {
        "attempts": job.attempts + (1 if count_attempt else 0),
        "last_error": reason, "updated_at": now, "claim_token": None, "lease_until": None,
        "log_text": _append_log(job.log_text, log),
    }
    if result is not None:
        fields["result_json"] = _compact(result)
    if retry_at is not None:
        fields.update(status=PENDING, next_attempt_at=retry_at)
    else:
        fields.update(status=status, finished_at=now)
    return queue.settle(job, **fields)


def request_stop(job_id: int) -> JobView | None:
    """Ask a job to stop: a running one stops at its next check, a waiting one at once
    (its worker claims it now and says it stopped). Finished jobs are left as they are."""
    now = clock.now()
    with database.atomic():
        Job.update(stop_requested=True, updated_at=now).where(
            (Job.id == job_id) & Job.status.not_in(FINAL)).execute()
        Job.update(next_attempt_at=now).where(
            (Job.id == job_id) & (Job.status == PENDING)).execute()
        row = Job.get_or_none(Job.id == job_id)
    return view(row) if row is not None else None


def stop_requested(job_id: int) -> bool:
    row = Job.select(Job.stop_requested).where(Job.id == job_id).first()
    return bool(row and row.stop_requested)


def get(job_id: int, with_log: bool = False) -> JobView | None:
    row = Job.get_or_none(Job.id == job_id)
    return view(row, with_log) if row is not None else None


def find(key: str) -> JobView | None:
    row = Job.get_or_none(Job.key == key)
    return view(row) if row is not None else None


def listing(*, kinds: Sequence[str] = (), project: str | None = None,
            parent: int | None = None, statuses: Sequence[str] = (), offset: int = 0,
            limit: int = 50, newest_first: bool = True) -> tuple[int, list[JobView]]:
    """Jobs matching every given filter: the total, and one page of them."""
    query = Job.select()
    if kinds:
        query = query.where(Job.kind.in_(list(kinds)))
    if project is not None:
        query = query.where(Job.project == project)
    if parent is not None:
        query = query.where(Job.parent == parent)
    if statuses:
        query = query.where(Job.status.in_(list(statuses)))
    total = query.count()
    order = Job.id.desc() if newest_first else Job.id
    rows = query.order_by(order).offset(offset).limit(limit)
    return total, [view(row) for row in rows]


def counts(kinds: Sequence[str] = ()) -> dict[str, dict[str, int]]:
    """Jobs by kind and status (status page, metrics)."""
    from peewee import fn

    query = Job.select(Job.kind, Job.status, fn.COUNT(Job.id).alias("n"))
    if kinds:
        query = query.where(Job.kind.in_(list(kinds)))
    out: dict[str, dict[str, int]] = {}
    for row in query.group_by(Job.kind, Job.status):
        out.setdefault(row.kind, {status: 0 for status in JOB_STATUSES})[row.status] = row.n
    return out
