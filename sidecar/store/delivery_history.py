"""Deliveries and their attempts as readers ask for them: Harbor's executions and tasks, the
operators' lists, last triggers per policy, and replay.

Every function returns views (`store.views`) and runs on a database thread (`Executor.run`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from peewee import JOIN
from peewee import fn

from sidecar.store import delivery_queue
from sidecar.store.models import DELIVERED
from sidecar.store.models import FAILED
from sidecar.store.models import SKIPPED
from sidecar.store.models import Delivery
from sidecar.store.models import Event
from sidecar.store.models import database
from sidecar.store.views import DeliveryView
from sidecar.store.views import NotFound
from sidecar.store.views import Page
from sidecar.store.views import PolicyView
from sidecar.store.views import delivery_view
from sidecar.store.views import with_attempts


@dataclass(frozen=True)
class Trigger:
    """The newest delivery a policy made for one event type (Harbor's last trigger)."""

    event_type: str
    created_at: float | None = None
    status: str | None = None
    status_code: int | None = None
    delivery_id: int | None = None


@dataclass(frozen=True)
class PolicyTriggers:
    policy: PolicyView
    #: the policy's event types first, then any other type it delivered before an edit
    triggers: tuple[Trigger, ...]


@dataclass(frozen=True)
class Skipped:
    id: int
    reason: str


@dataclass(frozen=True)
class Replayed:
    requeued: tuple[DeliveryView, ...]
    skipped: tuple[Skipped, ...]


def _with_event():
    return Delivery.select(Delivery, Event).join(Event, JOIN.INNER)


# -- Harbor's executions and tasks ---------------------------------------------------------

_EXECUTION_SORT = {
    "id": Delivery.id, "start_time": Delivery.created_at, "end_time": Delivery.finished_at,
    "status": Delivery.status,
}


def list_executions(policy_id: int, page: Page, filters: dict[str, Any] | None = None,
                    sort: Sequence[tuple[str, bool]] = ()) -> tuple[int, list[DeliveryView]]:
    """Deliveries of a policy, newest first. `filters`: status (our names), event_type."""
    query = _with_event().where(Delivery.policy == policy_id)
    for key, value in (filters or {}).items():
        if key == "status":
            query = query.where(Delivery.status.in_(list(value)))
        elif key == "event_type":
            query = query.where(Delivery.event_type == str(value))
    total, rows = page.rows(query, sort, _EXECUTION_SORT, [Delivery.id.desc()])
    return total, with_attempts(rows)


def get_execution(policy_id: int, execution_id: int) -> DeliveryView:
    row = _with_event().where(Delivery.id == execution_id).first()
    if row is None:
        raise NotFound(f"execution {execution_id} not found")
    if row.policy_id != policy_id:
        raise NotFound(f"execution {execution_id} not found in policy {policy_id}")
    return with_attempts([row])[0]


def get_task(policy_id: int, execution_id: int, task_id: int) -> DeliveryView:
    """Each execution has exactly one task, with the execution's id."""
    execution = get_execution(policy_id, execution_id)
    if task_id != execution_id:
        if Delivery.get_or_none(Delivery.id == task_id) is None:
            raise NotFound(f"task {task_id} not found")
        raise NotFound(f"task {task_id} not found in execution {execution_id}")
    return execution


# -- last triggers -------------------------------------------------------------------------

def policy_triggers(policies: Sequence[PolicyView]) -> list[PolicyTriggers]:
    """Each policy with, per event type, its newest delivery and how that went."""
    ids = [policy.id for policy in policies]
    newest: dict[tuple[int, str], int] = {}
    if ids:
        newest = {
            (policy_id, event_type): last_id
            for policy_id, event_type, last_id in Delivery.select(
                Delivery.policy, Delivery.event_type, fn.MAX(Delivery.id))
            .where(Delivery.policy.in_(ids))
            .group_by(Delivery.policy, Delivery.event_type).tuples()
        }
    rows = {row.id: row for row in Delivery.select(
        Delivery.id, Delivery.created_at, Delivery.status, Delivery.last_status_code,
    ).where(Delivery.id.in_(list(newest.values())))} if newest else {}
    out = []
    for policy in policies:
        seen = sorted(t for p, t in newest if p == policy.id and t not in policy.event_types)
        triggers = []
        for event_type in (*policy.event_types, *seen):
            row = rows.get(newest.get((policy.id, event_type), -1))
            triggers.append(Trigger(event_type) if row is None else Trigger(
                event_type, row.created_at, row.status, row.last_status_code, row.id))
        out.append(PolicyTriggers(policy, tuple(triggers)))
    return out


# -- operators' lists and replay -----------------------------------------------------------

def list_deliveries(failed: bool = False, policy: str | None = None, project: str | None = None,
                    limit: int = 50, with_history: bool = False) -> list[DeliveryView]:
    """Newest first; `policy` is a policy name, or `project/name`."""
    query = _with_event()
    if failed:
        query = query.where(Delivery.status == FAILED)
    if policy:
        if "/" in policy:
            project, _, policy = policy.partition("/")
        query = query.where(Delivery.policy_name == policy)
    if project:
        query = query.where(Delivery.project == project)
    rows = list(query.order_by(Delivery.id.desc()).limit(max(1, limit)))
    return with_attempts(rows) if with_history else [delivery_view(row) for row in rows]


def replay(ids: Iterable[int] = (), failed: bool = False, since: float | None = None,
           now: float | None = None, skipped_ones: bool = False,
           policy_id: int | None = None) -> Replayed:
    """Queue finished deliveries again (`delivery_queue.requeue`: attempt history stays).

    `ids` picks deliveries; `failed` adds every failed one, finished within `since` seconds
    if given; `skipped_ones` every one skipped while its target was disabled (store.target_health),
    of `policy_id` only if given. Returns what was queued and, for asked-for ids, why one
    was not.
    """
    now = time.time() if now is None else now
    wanted = [int(i) for i in ids]
    skipped: list[Skipped] = []
    with database.atomic():
        chosen: dict[int, Delivery] = {}
        if wanted:
            rows = {d.id: d for d in Delivery.select().where(Delivery.id.in_(wanted))}
            for delivery_id in wanted:
                row = rows.get(delivery_id)
                if row is None:
                    skipped.append(Skipped(delivery_id, "no such delivery"))
                elif row.status not in (DELIVERED, FAILED, SKIPPED):
                    skipped.append(Skipped(delivery_id,
                                           f"still {row.status}: it will be sent anyway"))
                else:
                    chosen[row.id] = row
        if failed:
            query = Delivery.select().where(Delivery.status == FAILED)
            if since is not None:
                query = query.where(Delivery.finished_at >= now - since)
            for row in query.order_by(Delivery.id):
                chosen[row.id] = row
        if skipped_ones:
            query = Delivery.select().where(Delivery.status == SKIPPED)
            if policy_id is not None:
                query = query.where(Delivery.policy == policy_id)
            for row in query.order_by(Delivery.id):
                chosen[row.id] = row
        delivery_queue.requeue(chosen.keys(), now=now)
        rows = list(_with_event().where(Delivery.id.in_(list(chosen))).order_by(Delivery.id))
    return Replayed(tuple(delivery_view(row) for row in rows), tuple(skipped))
