"""The delivery queue: record events with their deliveries, claim due work, record outcomes.

One claiming mechanism at every scale: a claim stamps a random token on due rows in one UPDATE
(`FOR UPDATE SKIP LOCKED` on PostgreSQL, the write lock on SQLite), and every later write
checks that token, so a worker whose lease expired cannot overwrite its successor's result.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from peewee import PostgresqlDatabase

from sidecar.store.models import DELIVERED
from sidecar.store.models import FAILED
from sidecar.store.models import PENDING
from sidecar.store.models import SENDING
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

    Most events (every pull, say) match no policy: runs of those go in as one multi-row
    INSERT, which costs a fraction of a row-by-row create on the busiest path of the recorder.
    Arrival order is kept in the ids.
    """
    now = time.time() if now is None else now
    created = 0
    plain: list[dict[str, Any]] = []

    def flush_plain() -> None:
        for start in range(0, len(plain), 100):
            Event.insert_many(plain[start:start + 100]).execute()
        plain.clear()

    with database.atomic():
        for item in events:
            if not item.deliveries:
                plain.append(_event_row(item, now))
                continue
            flush_plain()
            event_id = Event.insert(_event_row(item, now)).execute()
            Delivery.insert_many([
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
                }
                for new in item.deliveries
            ]).execute()
            created += len(item.deliveries)
        flush_plain()
    return created


#: Recorded as the attempt of a worker that died (or hung) holding a claim.
LEASE_EXPIRED = "the worker sending it stopped before an answer was recorded (lease expired)"


def expire_leases(now: float | None = None, limit: int = 100) -> int:
    """Count a claim whose lease ran out as an attempt, then retry it or end it.

    The endpoint may well have received that send, so it is an attempt like any other: a
    delivery that kills every worker sending it ends as failed instead of looping forever.
    """
    now = time.time() if now is None else now
    expired = list(
        Delivery.select(Delivery.id, Delivery.attempts, Delivery.max_attempts)
        .where((Delivery.status == SENDING) & (Delivery.lease_until < now))
        .limit(limit)
    )
    done = 0
    for row in expired:
        attempts = row.attempts + 1
        final = attempts >= row.max_attempts
        fields: dict[str, Any] = {
            "attempts": attempts, "claim_token": None, "lease_until": None, "updated_at": now,
            "last_status_code": None,
            "last_error": LEASE_EXPIRED
            + (f" (gave up after {attempts} attempts)" if final else ""),
        }
        if final:
            fields.update(status=FAILED, finished_at=now)
        else:
            fields.update(status=PENDING, next_attempt_at=now)
        with database.atomic():
            changed = (
                Delivery.update(**fields)
                .where((Delivery.id == row.id) & (Delivery.status == SENDING)
                       & (Delivery.lease_until < now))
                .execute()
            )
            if changed == 1:  # another claimer may have expired it first
                Attempt.create(delivery=row.id, number=attempts, started_at=now,
                               error=LEASE_EXPIRED)
                done += 1
    return done


def claim(limit: int, lease_seconds: float, now: float | None = None) -> list[Delivery]:
    """Atomically take up to `limit` due deliveries; expired leases are settled first."""
    now = time.time() if now is None else now
    expire_leases(now)
    token = uuid.uuid4().hex
    due = (
        Delivery.select(Delivery.id)
        .where((Delivery.status == PENDING) & (Delivery.next_attempt_at <= now))
        .order_by(Delivery.next_attempt_at)
        .limit(limit)
    )
    if isinstance(database.obj, PostgresqlDatabase):
        due = due.for_update("FOR UPDATE SKIP LOCKED")
    with database.atomic():
        taken = (
            Delivery.update(
                status=SENDING, claim_token=token, lease_until=now + lease_seconds, updated_at=now
            )
            .where(Delivery.id.in_(due))
            .execute()
        )
    if not taken:
        return []
    return list(
        Delivery.select(Delivery, Event)
        .join(Event)
        .where(Delivery.claim_token == token)
        .order_by(Delivery.id)
    )


def finish(delivery: Delivery, outcome: Outcome) -> bool:
    """Record an attempt and move the delivery on; False if our claim was taken over."""
    return finish_many([(delivery, outcome)])[0]


def finish_many(results: Sequence[tuple[Delivery, Outcome]]) -> list[bool]:
    """`finish` for several attempts in one transaction; one flag per item, in order.

    A commit per delivery was the largest database cost of sending. Each row still checks
    its own claim token, so a taken-over claim records nothing, whatever else is in the batch.
    """
    now = time.time()
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
            rows = (
                Delivery.update(**fields)
                .where((Delivery.id == delivery.id)
                       & (Delivery.claim_token == delivery.claim_token))
                .execute()
            )
            recorded.append(rows == 1)
            if rows == 1:
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
    now = time.time() if now is None else now
    released = 0
    with database.atomic():
        for delivery in deliveries:
            released += (
                Delivery.update(status=PENDING, claim_token=None, lease_until=None, updated_at=now)
                .where((Delivery.id == delivery.id)
                       & (Delivery.claim_token == delivery.claim_token))
                .execute()
            )
    return released


def postpone(delivery: Delivery, until: float, now: float | None = None) -> bool:
    """Give back a claim unsent until `until` (rate limit): no attempt is counted."""
    now = time.time() if now is None else now
    rows = (
        Delivery.update(status=PENDING, next_attempt_at=until, claim_token=None,
                        lease_until=None, updated_at=now)
        .where((Delivery.id == delivery.id) & (Delivery.claim_token == delivery.claim_token))
        .execute()
    )
    return rows == 1


def requeue(delivery_ids: Iterable[int], now: float | None = None) -> int:
    """Send finished deliveries again (replay); their attempt history stays."""
    now = time.time() if now is None else now
    ids = list(delivery_ids)
    if not ids:
        return 0
    return (
        Delivery.update(
            status=PENDING, next_attempt_at=now, finished_at=None, updated_at=now,
            max_attempts=Delivery.attempts + Delivery.max_attempts,
        )
        .where(Delivery.id.in_(ids) & Delivery.status.in_([DELIVERED, FAILED]))
        .execute()
    )


def counts() -> dict[str, int]:
    out = {status: 0 for status in (PENDING, SENDING, DELIVERED, FAILED)}
    from peewee import fn

    query = Delivery.select(Delivery.status, fn.COUNT(Delivery.id).alias("n")).group_by(
        Delivery.status
    )
    for row in query:
        out[row.status] = row.n
    return out
