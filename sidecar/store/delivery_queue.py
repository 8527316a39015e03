"""Deliveries: events recorded with one delivery per matching target, claimed and settled
through the one job queue (store.jobqueue), with each attempt kept (Harbor's tasks).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.store import clock
from sidecar.store import target_health
from sidecar.store.bulk import insert_row
from sidecar.store.bulk import insert_rows
from sidecar.store.jobqueue import LEASE_EXPIRED
from sidecar.store.jobqueue import JobQueue
from sidecar.store.models import DELIVERED
from sidecar.store.models import FAILED
from sidecar.store.models import PENDING
from sidecar.store.models import SENDING
from sidecar.store.models import SKIPPED
from sidecar.store.models import STATUSES
from sidecar.store.models import Attempt
from sidecar.store.models import Delivery
from sidecar.store.models import Event
from sidecar.store.models import database


@dataclass(frozen=True)
class NewDelivery:
    policy_id: int | None
    policy_name: str
    target: dict[str, Any]


@dataclass(frozen=True)
class NewEvent:
    type: str
    occur_at: int
    operator: str
    project: str
    repository: str
    request_id: str
    payload: dict[str, Any]
    deliveries: tuple[NewDelivery, ...]


@dataclass(frozen=True)
class Outcome:
    """What one attempt ended as. `retry_at` None means final."""

    status: str  # DELIVERED, FAILED or PENDING (retry later)
    status_code: int | None
    error: str
    started_at: float
    duration_ms: int
    response_excerpt: str = ""
    retry_at: float | None = None


def _event_row(item: NewEvent, now: float) -> dict[str, Any]:
    return {
        "type": item.type,
        "occur_at": item.occur_at,
        "operator": item.operator,
        "project": item.project,
        "repository": item.repository,
        "request_id": item.request_id,
        "payload_json": json.dumps(item.payload, separators=(",", ":")),
        "created_at": now,
    }


def record_events(events: Iterable[NewEvent], max_attempts: int, now: float | None = None) -> int:
    """Insert events and their deliveries in one transaction; return deliveries created.

    Most events (every pull, say) match no policy: runs of those go in through one prepared
    multi-row statement (store.bulk), a fraction of a row-by-row create on the busiest path
    of the recorder. Arrival order is kept in the ids.
    """
    now = clock.now() if now is None else now
    plain: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    health_keys: list[str] = []  # per delivery: its target's key in store.target_health

    with database.atomic():
        for item in events:
            if not item.deliveries:
                plain.append(_event_row(item, now))
                continue
            insert_rows(Event, plain)
            plain.clear()
            event_id = insert_row(Event, _event_row(item, now))
            health_keys.extend(target_health.key_of(new.policy_id, new.target.get("address", ""))
                               for new in item.deliveries)
            deliveries.extend(
                {
                    "uid": f"msg_{uuid.uuid4().hex}",
                    "event": event_id,
                    "policy": new.policy_id,
                    "policy_name": new.policy_name,
                    "project": item.project,
                    "event_type": item.type,
                    "target_json": json.dumps(new.target, separators=(",", ":")),
                    "status": PENDING,
                    "max_attempts": max_attempts,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                    "finished_at": None,  # every row the same keys (set if skipped)
                    "last_error": "",
                }
                for new in item.deliveries
            )
        insert_rows(Event, plain)
        if deliveries:
            _skip_disabled(deliveries, health_keys, now)
        insert_rows(Delivery, deliveries)
    return len(deliveries)


def _skip_disabled(deliveries: list[dict[str, Any]], keys: list[str], now: float) -> None:
    """Deliveries to a disabled target are recorded as skipped: never sent, replayable."""
    disabled = target_health.disabled_keys(keys)
    if not disabled:
        return
    for row, key in zip(deliveries, keys, strict=True):
        health = disabled.get(key)
        if health is not None:
            row.update(status=SKIPPED, finished_at=now,
                       last_error=f"skipped: the target is disabled ({health.reason})"[:1000])


def _attempt_lost(delivery_id: int, number: int, now: float) -> None:
    Attempt.create(delivery=delivery_id, number=number, started_at=now, error=LEASE_EXPIRED)


QUEUE = JobQueue(Delivery, running=SENDING, done=(DELIVERED, FAILED, SKIPPED),
                 on_expired=_attempt_lost)


def expire_leases(now: float | None = None, limit: int = 100) -> int:
    """Count each claim whose lease ran out as an attempt (recorded), then retry or end it."""
    return QUEUE.expire_leases(now, limit)


def claim(limit: int, lease_seconds: float, now: float | None = None) -> list[Delivery]:
    """Atomically take up to `limit` due deliveries, with their events."""
    return QUEUE.claim(limit, lease_seconds, now, select=lambda token: (
        Delivery.select(Delivery, Event).join(Event)
        .where(Delivery.claim_token == token).order_by(Delivery.id)))


def finish(delivery: Delivery, outcome: Outcome) -> bool:
    """Record an attempt and move the delivery on; False if our claim was taken over."""
    return finish_many([(delivery, outcome)])[0]


def finish_many(results: Sequence[tuple[Delivery, Outcome]]) -> list[bool]:
    """`finish` for several attempts in one transaction; one flag per item, in order.

    A commit per delivery was the largest database cost of sending. Each row still checks
    its own claim token, so a taken-over claim records nothing, whatever else is in the batch.
    """
    now = clock.now()
    recorded: list[bool] = []
    attempts_rows: list[dict[str, Any]] = []
    with database.atomic():
        for delivery, outcome in results:
            attempts = delivery.attempts + 1
            fields: dict[str, Any] = {
                "attempts": attempts,
                "last_status_code": outcome.status_code,
                "last_error": outcome.error,
                "updated_at": now,
                "claim_token": None,
                "lease_until": None,
            }
            if outcome.status == PENDING and outcome.retry_at is not None:
                fields.update(status=PENDING, next_attempt_at=outcome.retry_at)
            else:
                fields.update(status=outcome.status, finished_at=now)
            ok = QUEUE.settle(delivery, **fields)
            recorded.append(ok)
            if ok:
                attempts_rows.append({
                    "delivery": delivery.id,
                    "number": attempts,
                    "started_at": outcome.started_at,
                    "duration_ms": outcome.duration_ms,
                    "status_code": outcome.status_code,
                    "error": outcome.error,
                    "response_excerpt": outcome.response_excerpt,
                })
        for start in range(0, len(attempts_rows), 100):
            Attempt.insert_many(attempts_rows[start:start + 100]).execute()
    return recorded


def release(deliveries: Iterable[Delivery], now: float | None = None) -> int:
    """Give back claims that were never sent (a stopping worker), so no one waits for the lease."""
    return QUEUE.release(deliveries, now)


def postpone(delivery: Delivery, until: float, now: float | None = None) -> bool:
    """Give back a claim unsent until `until` (rate limit): no attempt is counted."""
    return QUEUE.postpone(delivery, until, now)


def requeue(delivery_ids: Iterable[int], now: float | None = None) -> int:
    """Send finished deliveries again (replay); their attempt history stays."""
    return QUEUE.requeue(delivery_ids, now)


def counts() -> dict[str, int]:
    return QUEUE.counts(STATUSES)
