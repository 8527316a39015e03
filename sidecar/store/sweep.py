"""Forget what is old and finished, so the store does not grow with every pull forever.

Every manifest GET through a busy registry is an event row; Harbor itself keeps only the newest
50 executions per policy. Here a row goes once it is older than the retention period AND
finished: an event stays while any of its deliveries is pending or being sent, whatever its age.
So do finished jobs (scans, replication and retention executions with their tasks), except the
scan whose report an artifact still shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from peewee import fn

from sidecar.store import dedup
from sidecar.store import login_throttle
from sidecar.store import pacing
from sidecar.store.models import DELIVERED
from sidecar.store.models import FAILED
from sidecar.store.models import STOPPED
from sidecar.store.models import SUCCEEDED
from sidecar.store.models import ArtifactScan
from sidecar.store.models import Attempt
from sidecar.store.models import Delivery
from sidecar.store.models import Event
from sidecar.store.models import Job
from sidecar.store.models import database
from sidecar.store.replication_models import ReplicationExecution
from sidecar.store.tag_retention_models import RetentionExecution

#: Rows deleted per statement: short transactions, so recording never waits long on the sweep.
BATCH = 500


def _beyond_newest(keep: int) -> int:
    """Harbor keeps a policy's newest 50 executions: here its deliveries of the newest `keep`
    events (one execution per event), finished ones beyond them deleted with their attempts.
    Pending deliveries stay whatever their rank, as with age."""
    deleted = 0
    busy = (Delivery.select(Delivery.policy)
            .where(Delivery.policy.is_null(False))
            .group_by(Delivery.policy)
            .having(fn.COUNT(fn.DISTINCT(Delivery.event)) > keep))
    for (policy_id,) in busy.tuples():
        oldest_kept = (Delivery.select(Delivery.event).where(Delivery.policy == policy_id)
                       .distinct().order_by(Delivery.event.desc()).offset(keep - 1).limit(1)
                       .scalar())
        if oldest_kept is None:
            continue
        while True:
            ids = [row.id for row in Delivery.select(Delivery.id).where(
                (Delivery.policy == policy_id) & (Delivery.event < oldest_kept)
                & Delivery.status.in_([DELIVERED, FAILED])).limit(BATCH)]
            if not ids:
                break
            with database.atomic():
                Attempt.delete().where(Attempt.delivery.in_(ids)).execute()
                deleted += Delivery.delete().where(Delivery.id.in_(ids)).execute()
    return deleted


def _finished_jobs(cutoff: float) -> int:
    """Finished top-level jobs last changed before `cutoff`, each with its tasks and the row
    the API lists an execution by. A task goes only with its run: a run's page must not lose
    half its tasks. The latest scan of an artifact stays: its result is the scan overview."""
    deleted = 0
    shown = (ArtifactScan.select(ArtifactScan.latest_job)
             .where(ArtifactScan.latest_job.is_null(False)))
    while True:
        ids = [row.id for row in Job.select(Job.id).where(
            Job.parent.is_null() & Job.status.in_([SUCCEEDED, FAILED, STOPPED])
            & (Job.updated_at < cutoff) & Job.id.not_in(shown)).limit(BATCH)]
        if not ids:
            return deleted
        with database.atomic():
            deleted += Job.delete().where(Job.parent.in_(ids)).execute()
            ReplicationExecution.delete().where(ReplicationExecution.id.in_(ids)).execute()
            RetentionExecution.delete().where(RetentionExecution.id.in_(ids)).execute()
            deleted += Job.delete().where(Job.id.in_(ids)).execute()


@dataclass(frozen=True)
class Swept:
    deliveries: int = 0
    events: int = 0
    windows: int = 0
    jobs: int = 0  # finished jobs, tasks included


def sweep(cutoff: float, now: float, keep_per_policy: int = 0) -> Swept:
    """Delete finished deliveries (with their attempts), events and jobs older than `cutoff`,
    and each policy's finished deliveries beyond its newest `keep_per_policy` events (0: no
    cap)."""
    deliveries = events = 0
    if keep_per_policy > 0:
        deliveries += _beyond_newest(keep_per_policy)
    while True:
        ids = [
            row.id for row in Delivery.select(Delivery.id)
            .where(Delivery.status.in_([DELIVERED, FAILED]) & (Delivery.updated_at < cutoff))
            .limit(BATCH)
        ]
        if not ids:
            break
        with database.atomic():
            Attempt.delete().where(Attempt.delivery.in_(ids)).execute()
            deliveries += Delivery.delete().where(Delivery.id.in_(ids)).execute()
    while True:
        referenced = Delivery.select(Delivery.id).where(Delivery.event == Event.id)
        ids = [
            row.id for row in Event.select(Event.id)
            .where((Event.created_at < cutoff) & ~fn.EXISTS(referenced))
            .limit(BATCH)
        ]
        if not ids:
            break
        with database.atomic():
            events += Event.delete().where(Event.id.in_(ids)).execute()
    jobs = _finished_jobs(cutoff)
    windows = dedup.forget_closed(now)
    login_throttle.sweep(now)
    pacing.forget_idle(now - 3600)
    return Swept(deliveries=deliveries, events=events, windows=windows, jobs=jobs)
