"""Asking for a project's usage to be rebuilt from the registry: a `quota.recalc` job.

One job per project at a time: the ask locks the project's quota row (as every quota writer
does) and queues a job only when none is waiting or running, so workers and sidecars asking
together make one. From the ask until the job ends the project shows as recalculating, and
enforcement goes on with the last known figure. The rules-file sync asks for every quota it
creates (a project that already holds images must not start at zero for long).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sidecar.rules.load import Rules
from sidecar.store import jobs as job_store
from sidecar.store import quota_limits
from sidecar.store.models import PENDING
from sidecar.store.models import RUNNING
from sidecar.store.models import Job
from sidecar.store.models import database
from sidecar.store.quota_models import Quota
from sidecar.store.quota_usage import lock_quota

KIND = "quota.recalc"
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Recalc:
    """A project's recalculation job: `queued` False when one was already waiting/running."""

    project: str
    job_id: int
    queued: bool


def request_recalc(project: str, *, operator: str = "", now: float | None = None
                   ) -> Recalc | None:
    """Queue a rebuild of `project`'s usage unless one is pending or running; None when the
    project has no quota."""
    now = time.time() if now is None else now
    with database.atomic():
        if lock_quota(project) is None:
            return None
        running = (Job.select(Job.id)
                   .where((Job.kind == KIND) & (Job.project == project)
                          & Job.status.in_([PENDING, RUNNING]))
                   .order_by(Job.id).first())
        if running is not None:
            return Recalc(project, running.id, queued=False)
        Quota.update(recalc_started_at=now).where(Quota.project == project).execute()
        job_id = job_store.enqueue(KIND, {"project": project, "started_at": now},
                                   project=project, operator=operator,
                                   title=f"quota recalculation of {project}",
                                   max_attempts=MAX_ATTEMPTS, now=now)
        return Recalc(project, int(job_id), queued=True)


def request_all(*, operator: str = "", now: float | None = None) -> list[Recalc]:
    """request_recalc for every project with a quota."""
    found = (request_recalc(project, operator=operator, now=now)
             for project in quota_limits.projects())
    return [recalc for recalc in found if recalc is not None]


def end_recalc(project: str) -> None:
    """A recalculation gave up or was stopped: the project keeps its last known figure."""
    Quota.update(recalc_started_at=None).where(Quota.project == project).execute()


def sync_rules(rules: Rules, now: float | None = None) -> list[str]:
    """The rules file's quotas into the store (store.quota_limits.sync_rules), and a
    recalculation for each new one; returns the new ones. Call inside the rules sync's
    transaction, so policies and quotas change together."""
    created = quota_limits.sync_rules(rules, now=now)
    for project in created:
        request_recalc(project, now=now)
    return created
