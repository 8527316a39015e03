"""Replication executions and tasks: started, listed, stopped, as Harbor's API shows them.

An execution is a job of kind "replication" (it plans: which repositories need copying) and
its tasks are jobs of kind "replication-task" with `parent` = the execution's id, one per
source repository, in the queue every job uses (claims, leases, retries, checkpoints). The
execution's status is Harbor's rule over its tasks: Running while any is pending or running,
then Error if any failed, else Stopped if any was stopped, else Success.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from peewee import fn

from sidecar.store import clock
from sidecar.store import jobs as job_store
from sidecar.store import replication as replication_store
from sidecar.store.jobs import FINAL
from sidecar.store.models import FAILED
from sidecar.store.models import PENDING
from sidecar.store.models import RUNNING as JOB_RUNNING
from sidecar.store.models import STOPPED as JOB_STOPPED
from sidecar.store.models import SUCCEEDED
from sidecar.store.models import Job
from sidecar.store.models import database
from sidecar.store.replication import PolicyView
from sidecar.store.replication_models import ReplicationExecution

EXECUTION_KIND = "replication"
TASK_KIND = "replication-task"
KINDS = (EXECUTION_KIND, TASK_KIND)
#: Harbor's internal statuses (jobservice names); the API maps them to InProgress/Succeed/...
RUNNING, SUCCESS, ERROR, STOPPED, PENDING_STATUS = (
    "Running", "Success", "Error", "Stopped", "Pending")
#: a replication job's attempts (Harbor's REPLICATION job: MaxFails 3)
MAX_ATTEMPTS = 3
NO_RESOURCES = "no resources need to be replicated"
SKIPPED = "Execution skipped: active replication still in progress."


@dataclass(frozen=True)
class ExecutionView:
    id: int
    policy_id: int
    policy_name: str
    trigger: str
    operator: str
    status: str
    status_text: str
    start_time: float
    end_time: float | None
    total: int
    failed: int
    succeed: int
    in_progress: int
    stopped: int


@dataclass(frozen=True)
class TaskView:
    id: int
    execution_id: int
    status: str
    operation: str
    resource_type: str
    src_resource: str
    dst_resource: str
    references: tuple[str, ...]
    start_time: float | None
    end_time: float | None
    attempts: int
    error: str
    bytes: int
    log: str = ""


def task_status(row: Job) -> str:
    """A task's Harbor status; a task waiting to be retried is still Running."""
    if row.status == PENDING:
        return RUNNING if row.attempts else PENDING_STATUS
    return {JOB_RUNNING: RUNNING, SUCCEEDED: SUCCESS, FAILED: ERROR,
            JOB_STOPPED: STOPPED}.get(row.status, row.status)


# -- writes ----------------------------------------------------------------------------------

def start_execution(policy: PolicyView, trigger: str, *, operator: str, host: str = "",
                    resource: dict[str, Any] | None = None, key: str | None = None,
                    now: float | None = None) -> int | None:
    """Queue an execution of `policy` (its planner job) and its row; the execution's id, or
    None when `key` names one that exists (a scheduled run fired twice)."""
    now = clock.now() if now is None else now
    payload: dict[str, Any] = {"policy_id": policy.id, "policy": policy.name,
                               "trigger": trigger, "host": host}
    if resource is not None:
        payload["resource"] = resource
    with database.atomic():
        job_id = job_store.enqueue(EXECUTION_KIND, payload, key=key, operator=operator,
                                   title=f"{policy.name} ({trigger.lower()})",
                                   max_attempts=MAX_ATTEMPTS, now=now)
        if job_id is None:
            return None
        ReplicationExecution.insert(id=job_id, policy=policy.id, policy_name=policy.name,
                                    trigger=trigger, created_at=now).execute()
    return job_id


def ensure_execution(execution_id: int, policy_id: int, policy_name: str, trigger: str,
                     created_at: float) -> None:
    """The row of an execution queued without one (by the scheduler); nothing if it exists."""
    ReplicationExecution.insert(id=execution_id, policy=policy_id, policy_name=policy_name,
                                trigger=trigger, created_at=created_at
                                ).on_conflict_ignore().execute()


def stop_execution(execution_id: int) -> bool:
    """Ask the execution and every unfinished task of it to stop; False if there is none."""
    now = clock.now()
    with database.atomic():
        if ReplicationExecution.get_or_none(ReplicationExecution.id == execution_id) is None:
            return False
        ours = (Job.id == execution_id) | ((Job.parent == execution_id)
                                           & (Job.kind == TASK_KIND))
        Job.update(stop_requested=True, updated_at=now).where(
            ours & Job.status.not_in(FINAL)).execute()
        Job.update(next_attempt_at=now).where(ours & (Job.status == PENDING)).execute()
    return True


def active_executions(policy_id: int, other_than: int) -> int:
    """Executions of the policy still running, besides `other_than` (single_active)."""
    ids = [row.id for row in ReplicationExecution.select(ReplicationExecution.id).where(
        (ReplicationExecution.policy == policy_id) & (ReplicationExecution.id != other_than))]
    if not ids:
        return 0
    views = _views(ids)
    return sum(1 for view in views if view.status == RUNNING)


# -- reads -----------------------------------------------------------------------------------

def execution(execution_id: int) -> ExecutionView | None:
    views = _views([execution_id])
    return views[0] if views else None


def executions(*, policy_id: int | None = None, trigger: str | None = None,
               status: str | None = None, offset: int = 0, limit: int = 10
               ) -> tuple[int, list[ExecutionView]]:
    """Newest first; `status` is Harbor's internal name (Running, Success, Error, Stopped)."""
    query = ReplicationExecution.select(ReplicationExecution.id)
    if policy_id is not None:
        query = query.where(ReplicationExecution.policy == policy_id)
    if trigger is not None:
        query = query.where(ReplicationExecution.trigger == trigger)
    query = query.order_by(ReplicationExecution.id.desc())
    if status is None:
        total = query.count()
        ids = [row.id for row in query.offset(offset).limit(limit)]
        return total, _views(ids)
    matching = [view for view in _views([row.id for row in query]) if view.status == status]
    return len(matching), matching[offset:offset + limit]


def tasks(execution_id: int, *, statuses: Sequence[str] = (), offset: int = 0,
          limit: int = 10) -> tuple[int, list[TaskView]]:
    """The execution's tasks, newest first; `statuses` filters on Harbor's task status."""
    rows = list(Job.select().where((Job.parent == execution_id) & (Job.kind == TASK_KIND))
                .order_by(Job.id.desc()))
    views = [_task_view(row) for row in rows]
    if statuses:
        views = [view for view in views if view.status in statuses]
    return len(views), views[offset:offset + limit]


def task(execution_id: int, task_id: int) -> TaskView | None:
    row = Job.get_or_none((Job.id == task_id) & (Job.parent == execution_id)
                          & (Job.kind == TASK_KIND))
    return _task_view(row, with_log=True) if row is not None else None


def execution_log(execution_id: int) -> str:
    row = Job.get_or_none((Job.id == execution_id) & (Job.kind == EXECUTION_KIND))
    return row.log_text if row is not None else ""


def task_outcomes() -> dict[str, int]:
    """Tasks by Harbor status (status page, metrics)."""
    out = {status: 0 for status in (PENDING_STATUS, RUNNING, SUCCESS, ERROR, STOPPED)}
    query = (Job.select(Job.status, (Job.attempts > 0).alias("retried"),
                        fn.COUNT(Job.id).alias("n"))
             .where(Job.kind == TASK_KIND).group_by(Job.status, Job.attempts > 0))
    for row in query:
        status = task_status(Job(status=row.status, attempts=1 if row.retried else 0))
        out[status] = out.get(status, 0) + row.n
    return out


def bytes_copied(execution_ids: Iterable[int]) -> dict[int, int]:
    """Bytes the tasks of each execution uploaded (their results, or their checkpoints)."""
    ids = list(execution_ids)
    out = {execution_id: 0 for execution_id in ids}
    if not ids:
        return out
    for row in Job.select(Job.parent, Job.result_json, Job.state_json).where(
            Job.parent.in_(ids) & (Job.kind == TASK_KIND)):
        done = row.result.get("bytes")
        out[row.parent] += int(done if done is not None else row.state.get("bytes", 0))
    return out


def _views(ids: Sequence[int]) -> list[ExecutionView]:
    if not ids:
        return []
    rows = {row.id: row for row in ReplicationExecution.select().where(
        ReplicationExecution.id.in_(list(ids)))}
    jobs = {row.id: row for row in Job.select().where(Job.id.in_(list(ids)))}
    counts: dict[int, dict[str, int]] = {i: {} for i in ids}
    ended: dict[int, float] = {}
    query = (Job.select(Job.parent, Job.status, (Job.attempts > 0).alias("retried"),
                        fn.COUNT(Job.id).alias("n"), fn.MAX(Job.finished_at).alias("last"))
             .where(Job.parent.in_(list(ids)) & (Job.kind == TASK_KIND))
             .group_by(Job.parent, Job.status, Job.attempts > 0))
    for row in query:
        status = task_status(Job(status=row.status, attempts=1 if row.retried else 0))
        bucket = counts[row.parent]
        bucket[status] = bucket.get(status, 0) + row.n
        if row.last is not None:
            ended[row.parent] = max(ended.get(row.parent, 0.0), row.last)
    out = []
    for execution_id in ids:
        row, job = rows.get(execution_id), jobs.get(execution_id)
        if row is None or job is None:
            continue
        out.append(_execution_view(row, job, counts[execution_id], ended.get(execution_id)))
    return out


def _execution_view(row: ReplicationExecution, job: Job, counts: dict[str, int],
                    last_task_end: float | None) -> ExecutionView:
    in_progress = counts.get(PENDING_STATUS, 0) + counts.get(RUNNING, 0)
    failed, stopped = counts.get(ERROR, 0), counts.get(STOPPED, 0)
    succeed = counts.get(SUCCESS, 0)
    text = str(job.result.get("status_text", ""))
    if job.status in (PENDING, JOB_RUNNING) or in_progress:
        status = RUNNING
    elif job.status == FAILED:
        status, text = ERROR, job.last_error or text
    elif failed:
        status = ERROR
    elif job.status == JOB_STOPPED or stopped:
        status = STOPPED
    else:
        status = SUCCESS
    end = None
    if status != RUNNING:
        ends = [x for x in (job.finished_at, last_task_end) if x is not None]
        end = max(ends) if ends else job.created_at
    return ExecutionView(
        id=row.id, policy_id=row.policy, policy_name=row.policy_name, trigger=row.trigger,
        operator=job.operator, status=status, status_text=text, start_time=job.created_at,
        end_time=end, total=in_progress + failed + stopped + succeed, failed=failed,
        succeed=succeed, in_progress=in_progress, stopped=stopped)


def _task_view(row: Job, with_log: bool = False) -> TaskView:
    payload, result, state = row.payload, row.result, row.state
    copied = result.get("bytes")
    return TaskView(
        id=row.id, execution_id=row.parent or 0, status=task_status(row),
        operation=payload.get("operation", "copy"),
        resource_type=payload.get("resource_type", "artifact"),
        src_resource=payload.get("src_resource", ""),
        dst_resource=payload.get("dst_resource", ""),
        references=tuple(payload.get("references") or ()), start_time=row.started_at,
        end_time=row.finished_at, attempts=row.attempts, error=row.last_error,
        bytes=int(copied if copied is not None else state.get("bytes", 0)),
        log=row.log_text if with_log else "")


def recent_failures(limit: int = 10) -> list[TaskView]:
    """The newest failed tasks, with their reasons (status page, UI)."""
    rows = (Job.select().where((Job.kind == TASK_KIND) & (Job.status == FAILED))
            .order_by(Job.id.desc()).limit(limit))
    return [_task_view(row) for row in rows]


def report(limit: int = 10) -> dict[str, Any]:
    """What /sidecar/status shows of replication: never a credential, only whether one is
    set. Registries, policies, tasks by status, recent executions and failures."""
    registries = replication_store.registries()
    names = {r.id: r.name for r in registries}
    _, recent = executions(limit=limit)
    copied = bytes_copied(v.id for v in recent)
    return {
        "registries": [{"id": r.id, "name": r.name, "type": r.type, "url": r.url,
                        "insecure": r.insecure,
                        "credential": "configured" if r.access_key else "anonymous"}
                       for r in registries],
        "policies": [{"id": p.id, "name": p.name, "enabled": p.enabled, "trigger": p.trigger,
                      "destination": names.get(p.registry_id, ""),
                      "dest_namespace": p.dest_namespace}
                     for p in replication_store.policies()],
        "tasks": task_outcomes(),
        "recent_executions": [{**vars(v), "bytes": copied.get(v.id, 0)} for v in recent],
        "recent_failures": [{"id": t.id, "execution_id": t.execution_id,
                             "source": t.src_resource, "destination": t.dst_resource,
                             "references": list(t.references), "attempts": t.attempts,
                             "error": t.error, "end_time": t.end_time}
                            for t in recent_failures(limit)],
    }
