"""Scheduled retention: each policy with a `schedule` is a schedule of the sidecar's scheduler
(jobs.scheduler), which queues one execution per fire time across workers and sidecars (the
job key names the policy and the fire time). The execution's row is made when its planner
first runs (runs.ensure_execution)."""

from __future__ import annotations

from sidecar.events.retention import JOBSERVICE_OPERATOR
from sidecar.jobs.scheduler import Schedule
from sidecar.store import retention_runs as runs
from sidecar.store import tag_retention as store


def retention_schedules() -> list[Schedule]:
    """The scheduler's provider (runs on a database thread)."""
    return [Schedule(name=f"retention:{policy.id}", cron=policy.schedule,
                     kind=runs.EXECUTION_KIND,
                     payload={"policy_id": policy.id, "project": policy.project,
                              "trigger": runs.TRIGGER_SCHEDULE, "dry_run": False},
                     project=policy.project, title=f"retention of {policy.project} (schedule)",
                     operator=JOBSERVICE_OPERATOR)
            for policy in store.policies() if policy.schedule]
