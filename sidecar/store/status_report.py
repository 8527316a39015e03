"""What operators watch: the queue, each endpoint's health, recent deliveries and failures.

Read by /sidecar/status, its page, `sidecar status` and /sidecar/metrics, so they always agree.
Runs on a database thread (`Executor.run`); the views still carry secrets, which every reader
shows through `sidecar.redact`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from dataclasses import field

from sidecar.redact import redact_address
from sidecar.rules.target import Target
from sidecar.store import delivery_queue
from sidecar.store.delivery_history import PolicyTriggers
from sidecar.store.delivery_history import policy_triggers
from sidecar.store.models import DELIVERED
from sidecar.store.models import FAILED
from sidecar.store.models import PENDING
from sidecar.store.models import SENDING
from sidecar.store.models import SKIPPED
from sidecar.store.models import Attempt
from sidecar.store.models import Delivery
from sidecar.store.models import Event
from sidecar.store.policy_catalog import all_policies
from sidecar.store.views import DeliveryView
from sidecar.store.views import with_attempts

#: How many recent deliveries the per-endpoint summary looks at: bounded work at any table size.
ENDPOINT_WINDOW = 1000
#: Endpoint states, worst first: the order the status page lists them in.
ENDPOINT_STATES = ("failing", "retrying", "ok")


@dataclass(frozen=True)
class QueueNumbers:
    by_status: dict[str, int]
    depth: int
    due_now: int


@dataclass
class EndpointHealth:
    """One endpoint (type and redacted address) over the recent deliveries to it."""

    type: str
    address: str
    policies: list[str] = field(default_factory=list)
    delivered: int = 0
    failed: int = 0
    retrying: int = 0
    pending: int = 0
    skipped: int = 0  # recorded while the target was disabled (store.target_health)
    last_status: str | None = None
    last_status_code: int | None = None
    last_error: str = ""
    last_attempt_at: float | None = None
    last_failure_at: float | None = None
    last_success_at: float | None = None
    state: str = "ok"
    #: every target seen behind this address: what an error text is scrubbed of
    targets: set[Target] = field(default_factory=set, repr=False)


@dataclass(frozen=True)
class StatusReport:
    generated_at: float
    queue: QueueNumbers
    attempts: int
    endpoints: list[EndpointHealth]
    recent_failures: list[DeliveryView]
    retrying: list[DeliveryView]
    recent: list[DeliveryView]
    policies: list[PolicyTriggers]


def queue_numbers(now: float | None = None) -> QueueNumbers:
    """Deliveries by status, queue depth and how many are due: the status cards and metrics."""
    now = time.time() if now is None else now
    counts = delivery_queue.counts()
    due = Delivery.select().where(
        (Delivery.status == PENDING) & (Delivery.next_attempt_at <= now)).count()
    return QueueNumbers(counts, counts[PENDING] + counts[SENDING], due)


def endpoints(window: int = ENDPOINT_WINDOW) -> list[EndpointHealth]:
    """Per target address over the last `window` deliveries, failing endpoints first.

    An endpoint is failing when its latest finished delivery failed, retrying when a
    delivery to it is waiting for another attempt, ok otherwise.
    """
    rows = (Delivery.select(Delivery.id, Delivery.target_json, Delivery.policy_name,
                            Delivery.project, Delivery.status, Delivery.attempts,
                            Delivery.last_status_code, Delivery.last_error, Delivery.updated_at,
                            Delivery.finished_at)
            .order_by(Delivery.id.desc()).limit(window))
    found: dict[tuple[str, str], EndpointHealth] = {}
    for row in rows:  # newest first
        target = Target.from_dict(row.target)
        key = (target.type, redact_address(target.address))
        entry = found.get(key)
        if entry is None:
            entry = found[key] = EndpointHealth(*key)
        entry.targets.add(target)
        policy = f"{row.project}/{row.policy_name}"
        if policy not in entry.policies:
            entry.policies.append(policy)
        if row.status == DELIVERED:
            entry.delivered += 1
            entry.last_success_at = entry.last_success_at or row.finished_at
        elif row.status == FAILED:
            entry.failed += 1
            entry.last_failure_at = entry.last_failure_at or row.finished_at
        elif row.status == SKIPPED:
            entry.skipped += 1
        elif row.attempts > 0:
            entry.retrying += 1
        else:
            entry.pending += 1
        if row.attempts > 0 and (entry.last_attempt_at is None
                                 or row.updated_at > entry.last_attempt_at):
            entry.last_attempt_at = row.updated_at
            entry.last_status = row.status
            entry.last_status_code = row.last_status_code
            entry.last_error = row.last_error or ""
    for entry in found.values():
        success, failure = entry.last_success_at, entry.last_failure_at
        if failure is not None and (success is None or failure >= success):
            entry.state = "failing"
        elif entry.retrying:
            entry.state = "retrying"
    return sorted(found.values(), key=lambda e: (ENDPOINT_STATES.index(e.state),
                                                 -(e.last_attempt_at or 0), e.address))


def _newest(where, order, limit: int) -> list[DeliveryView]:
    query = Delivery.select(Delivery, Event).join(Event)
    if where is not None:
        query = query.where(where)
    return with_attempts(list(query.order_by(order).limit(limit)))


def status_report(limit: int = 20) -> StatusReport:
    """Everything /sidecar/status reports from the store."""
    now = time.time()
    waiting = Delivery.status.in_([PENDING, SENDING]) & (Delivery.attempts > 0)
    return StatusReport(
        generated_at=now,
        queue=queue_numbers(now),
        attempts=Attempt.select().count(),
        endpoints=endpoints(),
        recent_failures=_newest(Delivery.status == FAILED, Delivery.updated_at.desc(), limit),
        retrying=_newest(waiting, Delivery.updated_at.desc(), limit),
        recent=_newest(None, Delivery.id.desc(), limit),
        policies=policy_triggers(all_policies()),
    )
