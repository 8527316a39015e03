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

from peewee import SqliteDatabase

from sidecar.store import clock
from sidecar.store import target_health
from sidecar.store.bulk import insert_rows
from sidecar.store.bulk import insert_rows_returning_ids
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
    return record_and_claim(events, max_attempts, 0, 0.0, now)[0]


def record_and_claim(events: Iterable[NewEvent], max_attempts: int, claim_limit: int,
                     lease_seconds: float, now: float | None = None,
                     ) -> tuple[int, list[Claimed]]:
    """`record_events`, with up to `claim_limit` of the new deliveries claimed as they are
    inserted (status sending, a token and a lease, as `claim` would), and returned as a claim
    reads them.

    The recorder hands those straight to its own dispatcher: a webhook then waits for no
    claim query and no poll. Should the worker die before sending them, their lease runs
    out and another worker sends them, as for any claim.
    """
    events = list(events)
    if not events:
        return 0, []
    now = clock.now() if now is None else now
    token = uuid.uuid4().hex if claim_limit > 0 else None
    event_rows = [_event_row(item, now) for item in events]
    deliveries: list[dict[str, Any]] = []
    health_keys: list[str] = []  # per delivery: its target's key in store.target_health
    sources: list[dict[str, Any]] = []  # per delivery: its event's row

    with database.atomic():
        if not any(item.deliveries for item in events):
            insert_rows(Event, event_rows)
            return 0, []
        event_ids = insert_rows_returning_ids(Event, event_rows)
        for item, event_id, event_row in zip(events, event_ids, event_rows, strict=True):
            for new in item.deliveries:
                health_keys.append(target_health.key_of(new.policy_id,
                                                        new.target.get("address", "")))
                sources.append(event_row)
                deliveries.append({
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
                    "finished_at": None,
                    "last_error": "",
                })
        _skip_disabled(deliveries, health_keys, now)
        taken = 0
        for row in deliveries:
            if taken == claim_limit:
                break
            if row["status"] != SKIPPED:
                row.update(status=SENDING, claim_token=token, lease_until=now + lease_seconds)
                taken += 1
        if not taken:
            insert_rows(Delivery, deliveries)
            return len(deliveries), []
        ids = insert_rows_returning_ids(Delivery, deliveries)
    # what a claim would read back, from the rows just written
    claimed = [Claimed((delivery_id, row["uid"], row["event"], row["policy"],
                        row["policy_name"], row["project"], row["event_type"],
                        row["target_json"], row["status"], 0, row["max_attempts"], token,
                        row["lease_until"], source["payload_json"], source["request_id"]))
               for delivery_id, row, source in zip(ids, deliveries, sources, strict=True)
               if row.get("claim_token") == token]
    return len(deliveries), claimed


def _skip_disabled(deliveries: list[dict[str, Any]], keys: list[str], now: float) -> None:
    """Deliveries to a disabled target are recorded as skipped: never sent, replayable."""
    disabled = target_health.disabled_keys(keys)
    if not disabled:
        return
    for row, key in zip(deliveries, keys, strict=True):
        reason = disabled.get(key)
        if reason is not None:
            row.update(status=SKIPPED, finished_at=now,
                       last_error=f"skipped: the target is disabled ({reason})"[:1000])


def _attempt_lost(delivery_id: int, number: int, now: float) -> None:
    Attempt.create(delivery=delivery_id, number=number, started_at=now, error=LEASE_EXPIRED)


QUEUE = JobQueue(Delivery, running=SENDING, done=(DELIVERED, FAILED, SKIPPED),
                 on_expired=_attempt_lost)


def expire_leases(now: float | None = None, limit: int = 100) -> int:
    """Count each claim whose lease ran out as an attempt (recorded), then retry or end it."""
    return QUEUE.expire_leases(now, limit)


def claim(limit: int, lease_seconds: float, now: float | None = None) -> list[Claimed]:
    """Atomically take up to `limit` due deliveries, with their events.

    The same claim as store.jobqueue's (one UPDATE stamps a token and a lease on due rows),
    with its SQL written out and the rows read as tuples: built by peewee's query builder and
    read as model instances, a claim of 10 cost about 5 ms of CPU, most of a delivery's.
    """
    now = clock.now() if now is None else now
    if _run(_ANY_EXPIRED, (SENDING, now)).fetchone() is not None:
        expire_leases(now)  # rare: a worker died holding claims
    token = uuid.uuid4().hex
    with database.atomic():
        taken = _run(_CLAIM if _sqlite() else _CLAIM_LOCKED,
                     (SENDING, token, now + lease_seconds, now, PENDING, now, limit)).rowcount
    if not taken:
        return []
    return [Claimed(row) for row in _run(_CLAIMED, (token,)).fetchall()]


def finish(delivery: Claimed | Delivery, outcome: Outcome) -> bool:
    """Record an attempt and move the delivery on; False if our claim was taken over."""
    return finish_many([(delivery, outcome)])[0]


def finish_many(results: Sequence[tuple[Claimed | Delivery, Outcome]]) -> list[bool]:
    """`finish` for several attempts in one transaction; one flag per item, in order.

    A commit per delivery was the largest database cost of sending. Each row still checks
    its own claim token, so a taken-over claim records nothing, whatever else is in the batch.
    """
    now = clock.now()
    settles = [_settle_params(delivery, outcome, now) for delivery, outcome in results]
    with database.atomic():
        recorded = [_run(_SETTLE, params).rowcount == 1 for params in settles]
        insert_rows(Attempt, [
            {
                "delivery": delivery.id,
                "number": delivery.attempts + 1,
                "started_at": outcome.started_at,
                "duration_ms": outcome.duration_ms,
                "status_code": outcome.status_code,
                "error": outcome.error,
                "response_excerpt": outcome.response_excerpt,
            }
            for (delivery, outcome), ok in zip(results, recorded, strict=True) if ok
        ])
    return recorded


def _settle_params(delivery: Claimed | Delivery, outcome: Outcome, now: float) -> tuple:
    """_SETTLE's parameters: a retry moves next_attempt_at, a final outcome sets finished_at."""
    retry = outcome.status == PENDING and outcome.retry_at is not None
    return (delivery.attempts + 1, outcome.status_code, outcome.error, now,
            PENDING if retry else outcome.status, outcome.retry_at if retry else None,
            None if retry else now, delivery.id, delivery.claim_token)


# --- the delivery path's SQL ----------------------------------------------------------------
# Written out, as the quota's push path (store.quota_usage): peewee's builder cost several
# times the database's own work per claim and per outcome (bench/deliveries.py). The tables
# are models.Delivery, Event and Attempt; `?` becomes psycopg2's `%s` on PostgreSQL.

_ANY_EXPIRED = "SELECT 1 FROM delivery WHERE status = ? AND lease_until < ? LIMIT 1"
_DUE = ("SELECT id FROM delivery WHERE status = ? AND next_attempt_at <= ? "
        "ORDER BY next_attempt_at LIMIT ?")
_CLAIM = ("UPDATE delivery SET status = ?, claim_token = ?, lease_until = ?, updated_at = ? "
          f"WHERE id IN ({_DUE})")
_CLAIM_LOCKED = _CLAIM[:-1] + " FOR UPDATE SKIP LOCKED)"  # PostgreSQL: workers skip each other
_COLUMNS = ("d.id, d.uid, d.event_id, d.policy_id, d.policy_name, d.project, d.event_type, "
            "d.target_json, d.status, d.attempts, d.max_attempts, d.claim_token, d.lease_until, "
            "e.payload_json, e.request_id")
_CLAIMED = (f"SELECT {_COLUMNS} FROM delivery d JOIN event e ON e.id = d.event_id "
            "WHERE d.claim_token = ? ORDER BY d.id")
_SETTLE = ("UPDATE delivery SET attempts = ?, last_status_code = ?, last_error = ?, "
           "updated_at = ?, claim_token = NULL, lease_until = NULL, status = ?, "
           "next_attempt_at = COALESCE(?, next_attempt_at), finished_at = COALESCE(?, finished_at) "
           "WHERE id = ? AND claim_token = ?")


def _sqlite() -> bool:
    return isinstance(database.obj, SqliteDatabase)


def _run(sql: str, params: Sequence[Any] = ()):
    return database.execute_sql(sql if _sqlite() else sql.replace("?", "%s"), tuple(params))


class ClaimedEvent:
    """The part of a claimed delivery's event that sending uses."""

    __slots__ = ("id", "payload_json", "request_id")

    def __init__(self, id: int, payload_json: str, request_id: str):  # noqa: A002
        self.id = id
        self.payload_json = payload_json
        self.request_id = request_id

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.payload_json)


class Claimed:
    """A claimed delivery as sending sees it: the columns of models.Delivery it reads, under
    the same names, without a model instance (building those was a good part of a claim)."""

    __slots__ = ("id", "uid", "event", "policy_id", "policy_name", "project", "event_type",
                 "target_json", "status", "attempts", "max_attempts", "claim_token",
                 "lease_until")

    def __init__(self, row: Sequence[Any]):
        (self.id, self.uid, event_id, self.policy_id, self.policy_name, self.project,
         self.event_type, self.target_json, self.status, self.attempts, self.max_attempts,
         self.claim_token, self.lease_until, payload_json, request_id) = row
        self.event = ClaimedEvent(event_id, payload_json, request_id)

    @property
    def target(self) -> dict[str, Any]:
        return json.loads(self.target_json)

    def __repr__(self) -> str:
        return f"<Claimed delivery {self.id} {self.status}>"


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
