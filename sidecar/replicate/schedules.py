"""Scheduled replication: each enabled `scheduled` policy is a schedule of the sidecar's
scheduler (jobs.scheduler), which queues one execution per fire time across workers and
sidecars (the job key names the policy and the fire time). The execution's row is made when
its planner first runs (runs.ensure_execution), as for the other triggers it is made with the
job."""

from __future__ import annotations

from sidecar.events.replication import TRIGGER_SCHEDULE
from sidecar.jobs.scheduler import Schedule
from sidecar.store import replication as replication_store
from sidecar.store import replication_runs as runs

#: the operator Harbor's scheduler names on the executions it starts
SCHEDULER = "harbor-jobservice"


def replication_schedules() -> list[Schedule]:
    """The scheduler's provider (runs on a database thread)."""
    return [Schedule(name=f"replication:{policy.id}", cron=policy.cron,
                     kind=runs.EXECUTION_KIND,
                     payload={"policy_id": policy.id, "policy": policy.name,
                              "trigger": TRIGGER_SCHEDULE, "host": ""},
                     title=f"{policy.name} (schedule)", operator=SCHEDULER)
            for policy in replication_store.scheduled_policies()]
