"""Retention executions and tasks: started, listed and summed up as Harbor's API shows them.

An execution is a job of kind "retention" (it plans: which repositories of the project the
rules select) and its tasks are jobs of kind "retention-task" with `parent` = the execution,
one per repository, in the queue every job uses. The execution's status is Harbor's rule over
its tasks: Running while any is pending or running, then Error if any failed, else Stopped if
any was stopped, else Success. A task's counts are its job's result (total, retained, deleted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sidecar.store import clock
from sidecar.store import jobs as job_store
from sidecar.store.jobs import FINAL
from sidecar.store.models import FAILED
from sidecar.store.models import PENDING
from sidecar.store.models import RUNNING as JOB_RUNNING
from sidecar.store.models import STOPPED as JOB_STOPPED
from sidecar.store.models import Job
from sidecar.store.models import database
from sidecar.store.tag_retention import PolicyView
from sidecar.store.tag_retention_models import RetentionExecution

EXECUTION_KIND = "retention"
TASK_KIND = "retention-task"
KINDS = (EXECUTION_KIND, TASK_KIND)
RUNNING, SUCCESS, ERROR, STOPPED, PENDING_STATUS = (
    "Running", "Success", "Error", "Stopped", "Pending")
#: Harbor's triggers: "MANUAL" from the API, "Schedule" (sic) from the scheduler
TRIGGER_MANUAL, TRIGGER_SCHEDULE = "MANUAL", "Schedule"
#: a planning run waits its turn (another run of the project) without failing
EXECUTION_ATTEMPTS = 1000
TASK_ATTEMPTS = 5
NO_RESOURCES = "no resources for retention"
STATUS_CODES = {PENDING_STATUS: 0, RUNNING: 2, SUCCESS: 3, ERROR: 3, STOPPED: 3}


@dataclass(frozen=True)
class ExecutionView:
    id: int
    policy_id: int
    project: str
    trigger: str
    dry_run: bool
    operator: str
    status: str
    status_text: str
    start_time: float
    end_time: float | None
    tasks: int
    total: int
    retained: int
    deleted: int


@dataclass(frozen=True)
class TaskView:
    id: int
    execution_id: int
    repository: str  # without the project, as Harbor shows it
    status: str
    start_time: float | None
    end_time: float | None
    total: int
    retained: int
    deleted: int
    dry_run: bool
    error: str
    log: str = ""

    @property
    def status_code(self) -> int:
        return STATUS_CODES.get(self.status, 0)


def task_status(row: Job) -> str:
    if row.status == PENDING:
        return PENDING_STATUS if row.attempts == 0 else RUNNING
    if row.status == JOB_RUNNING:
        return RUNNING
    if row.status == FAILED:
        return ERROR
    if row.status == JOB_STOPPED:
        return STOPPED
    return SUCCESS


def start_execution(policy: PolicyView, trigger: str, *, dry_run: bool, operator: str,
                    key: str | None = None, now: float | None = None) -> int | None:
    """Queue an execution (its job and row in one transaction); its id, or None when `key`
    names one that was already queued."""
    now = clock.now() if now is None else now
    with database.atomic():
        job_id = job_store.enqueue(
            EXECUTION_KIND, {"policy_id": policy.id, "project": policy.project,
                             "trigger": trigger, "dry_run": bool(dry_run)},
            key=key, project=policy.project, operator=operator,
            title=f"retention of {policy.project}" + (" (dry run)" if dry_run else ""),
            max_attempts=EXECUTION_ATTEMPTS, now=now)
        if job_id is not None:
            ensure_execution(job_id, policy.id, policy.project, trigger, bool(dry_run), now)
    return job_id


def ensure_execution(job_id: int, policy_id: int, project: str, trigger: str,
                     dry_run: bool, created_at: float) -> None:
    """The execution's row (a scheduled run's job is queued by the scheduler without it)."""
    if RetentionExecution.get_or_none(RetentionExecution.id == job_id) is None:
        RetentionExecution.insert(id=job_id, policy=policy_id, project=project,
                                  trigger=trigger, dry_run=dry_run,
                                  created_at=created_at).on_conflict_ignore().execute()


def earlier_active(project: str, execution_id: int) -> int | None:
    """An earlier execution of the project still planning or with tasks to run (one run per
    project at a time: a later one waits for it), or None."""
    earlier = [row.id for row in RetentionExecution.select(RetentionExecution.id).where(
        (RetentionExecution.project == project) & (RetentionExecution.id < execution_id))]
    if not earlier:
        return None
    row = (Job.select(Job.id, Job.parent, Job.kind)
           .where((Job.id.in_(earlier) | Job.parent.in_(earlier))
                  & Job.kind.in_(list(KINDS)) & Job.status.not_in(list(FINAL)))
           .order_by(Job.id).first())
    if row is None:
        return None
    return row.parent if row.kind == TASK_KIND and row.parent else row.id


def executions(policy_id: int | None = None, project: str | None = None, offset: int = 0,
               limit: int | None = None) -> tuple[int, list[ExecutionView]]:
    """Newest first; the total and one page."""
    query = RetentionExecution.select(RetentionExecution.id)
    if policy_id is not None:
        query = query.where(RetentionExecution.policy == policy_id)
    if project is not None:
        query = query.where(RetentionExecution.project == project)
    total = query.count()
    page = query.order_by(RetentionExecution.id.desc()).offset(offset)
    if limit is not None:
        page = page.limit(limit)
    return total, _views([row.id for row in page])


def execution(execution_id: int) -> ExecutionView | None:
    found = _views([execution_id])
    return found[0] if found else None


def tasks(execution_id: int, offset: int = 0, limit: int | None = None
          ) -> tuple[int, list[TaskView]]:
    query = Job.select().where((Job.parent == execution_id) & (Job.kind == TASK_KIND))
    total = query.count()
    page = query.order_by(Job.id).offset(offset)
    if limit is not None:
        page = page.limit(limit)
    return total, [_task_view(row) for row in page]


def task(execution_id: int, task_id: int) -> TaskView | None:
    row = Job.get_or_none((Job.id == task_id) & (Job.parent == execution_id)
                          & (Job.kind == TASK_KIND))
    return _task_view(row, with_log=True) if row is not None else None


def _task_view(row: Job, with_log: bool = False) -> TaskView:
    payload, result = row.payload, row.result
    state = row.state
    deleted = result.get("deleted")
    if deleted is None:
        deleted = len(state.get("deleted", []))
    return TaskView(
        id=row.id, execution_id=row.parent or 0,
        repository=str(payload.get("repository", "")).partition("/")[2],
        status=task_status(row), start_time=row.started_at, end_time=row.finished_at,
        total=int(result.get("total", state.get("total", 0))),
        retained=int(result.get("retained", state.get("retained", 0))),
        deleted=int(deleted), dry_run=bool(payload.get("dry_run")), error=row.last_error,
        log=row.log_text if with_log else "")


def _views(ids: list[int]) -> list[ExecutionView]:
    if not ids:
        return []
    rows = {row.id: row for row in RetentionExecution.select().where(
        RetentionExecution.id.in_(ids))}
    jobs = {row.id: row for row in Job.select().where(Job.id.in_(ids))}
    children: dict[int, list[Job]] = {i: [] for i in ids}
    for row in Job.select().where(Job.parent.in_(ids) & (Job.kind == TASK_KIND)):
        children[row.parent].append(row)
    out = []
    for execution_id in ids:
        row, job = rows.get(execution_id), jobs.get(execution_id)
        if row is None or job is None:
            continue
        out.append(_execution_view(row, job, [_task_view(t) for t in children[execution_id]]))
    return out


def _execution_view(row: RetentionExecution, job: Job, task_views: list[TaskView]
                    ) -> ExecutionView:
    statuses = [t.status for t in task_views]
    text = str(job.result.get("status_text", ""))
    if job.status not in FINAL or RUNNING in statuses or PENDING_STATUS in statuses:
        status = RUNNING
    elif job.status == FAILED:
        status, text = ERROR, job.last_error or text
    elif ERROR in statuses:
        status = ERROR
    elif job.status == JOB_STOPPED or STOPPED in statuses:
        status = STOPPED
    else:
        status = SUCCESS
    end = None
    if status != RUNNING:
        ends = [x for x in [job.finished_at, *(t.end_time for t in task_views)]
                if x is not None]
        end = max(ends) if ends else job.created_at
    return ExecutionView(
        id=row.id, policy_id=row.policy, project=row.project, trigger=row.trigger,
        dry_run=row.dry_run, operator=job.operator, status=status, status_text=text,
        start_time=job.created_at, end_time=end, tasks=len(task_views),
        total=sum(t.total for t in task_views), retained=sum(t.retained for t in task_views),
        deleted=sum(t.deleted for t in task_views))


def report(limit: int = 10) -> dict[str, Any]:
    """What /sidecar/status and `sidecar status` show of tag retention: each policy with its
    next scheduled run and latest run, and the latest runs with what they deleted."""
    from sidecar.rules.cron import next_fire
    from sidecar.store import tag_retention

    now = clock.now()
    _, recent = executions(limit=limit)
    policies = []
    for p in tag_retention.policies():
        _, last = executions(policy_id=p.id, limit=1)
        policies.append({"id": p.id, "project": p.project, "schedule": p.schedule,
                         "next_run": next_fire(p.schedule, now), "rules": len(p.rules),
                         "last_run": vars(last[0]) if last else None})
    return {"policies": policies, "recent_executions": [vars(v) for v in recent]}


def project_section(project: str, limit: int = 10) -> dict[str, Any] | None:
    """The Retention section of a project's page: its rules, next scheduled run and last
    runs (each with its tasks); None when the project has no retention policy."""
    from sidecar.rules.cron import next_fire
    from sidecar.store import tag_retention

    policy = tag_retention.policy_for_project(project)
    if policy is None:
        return None
    _, recent = executions(policy_id=policy.id, limit=limit)
    return {"policy": policy, "next_run": next_fire(policy.schedule, clock.now()),
            "retains_nothing": retains_nothing(policy),
            "executions": [(v, tasks(v.id, limit=100)[1]) for v in recent]}


#: templates that keep a number of artifacts: with 0 they keep none
_COUNTS = ("latestPushedK", "latestPulledN", "latestActiveK")


def retains_nothing(policy: PolicyView) -> bool:
    """Whether a run deletes every artifact of the repositories the rules select (`nothing`,
    or a count of 0, in every enabled rule): the UI says so before anyone presses Run."""
    active = [r for r in policy.rules if not r.get("disabled") and r.get("tag_selectors")]
    return bool(active) and all(
        r.get("template") == "nothing"
        or (r.get("template") in _COUNTS and (r.get("params") or {}).get(r["template"]) == 0)
        for r in active)
