"""What operators watch: the queue, each endpoint's health, recent deliveries and failures.

Read by /sidecar/status, its page, `sidecar status` and /sidecar/metrics, so they always agree.
Runs on a database thread (`Executor.run`); the views still carry secrets, which every reader
shows through `sidecar.redact`.

Bounded at any size (issue 17: 10,000 policies made a 5 MB page): the report is a summary,
its lists cut at fixed lengths with their totals beside them, and policies come a page at a
time (`PolicyQuery`), never all at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from dataclasses import field

from peewee import Case
from peewee import fn

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
from sidecar.store.models import Policy
from sidecar.store.models import Project
from sidecar.store.views import DeliveryView
from sidecar.store.views import Page
from sidecar.store.views import policy_view
from sidecar.store.views import with_attempts

#: How many recent deliveries the per-endpoint summary looks at: bounded work at any table size.
ENDPOINT_WINDOW = 1000
#: Endpoint states, worst first: the order the status page lists them in.
ENDPOINT_STATES = ("failing", "retrying", "ok")
#: Endpoints the summary lists (worst first); `endpoint_states` counts all of them.
ENDPOINT_LIMIT = 20
#: Policy names an endpoint lists; `policy_count` says how many there are.
ENDPOINT_POLICY_LIMIT = 10
#: Policies per page of the report when no page_size is asked for.
POLICY_PAGE_SIZE = 20


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
    #: how many policies sent to it (`policies` lists the first ENDPOINT_POLICY_LIMIT)
    policy_count: int = 0


@dataclass(frozen=True)
class PolicyQuery:
    """Which policies the report details: a project's, one policy (`name` or `project/name`),
    or the first page of all; Harbor's page/page_size."""

    project: str = ""
    policy: str = ""
    page: Page = Page(1, POLICY_PAGE_SIZE)

    @property
    def narrowed(self) -> bool:
        return bool(self.project or self.policy)


@dataclass(frozen=True)
class PolicyCounts:
    projects: int
    policies: int
    enabled: int


@dataclass(frozen=True)
class StatusReport:
    generated_at: float
    queue: QueueNumbers
    attempts: int
    #: the worst ENDPOINT_LIMIT endpoints; `endpoint_states` counts every one
    endpoints: list[EndpointHealth]
    recent_failures: list[DeliveryView]
    retrying: list[DeliveryView]
    recent: list[DeliveryView]
    #: this page of the policies `policy_query` asked for, and how many there are in all
    policies: list[PolicyTriggers]
    policies_total: int = 0
    policy_query: PolicyQuery = PolicyQuery()
    policy_counts: PolicyCounts = PolicyCounts(0, 0, 0)
    endpoint_states: dict[str, int] = field(default_factory=dict)


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
        entry.policy_count = len(entry.policies)
        del entry.policies[ENDPOINT_POLICY_LIMIT:]
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


def policy_counts() -> PolicyCounts:
    """How many projects and policies the store holds: one aggregate query."""
    policies, enabled = Policy.select(
        fn.COUNT(Policy.id), fn.SUM(Case(None, [(Policy.enabled, 1)], 0))).tuples().get()
    return PolicyCounts(Project.select().count(), policies or 0, int(enabled or 0))


def policy_page(query: PolicyQuery) -> tuple[int, list[PolicyTriggers]]:
    """(how many policies `query` selects, this page of them with their last triggers), by
    project name and policy name: a page costs the same at 10 or 10,000 policies."""
    select = Policy.select(Policy, Project).join(Project)
    if query.project:
        select = select.where(Project.name == query.project)
    if query.policy:
        project, _, name = query.policy.rpartition("/")
        select = select.where(Policy.name == name)
        if project:
            select = select.where(Project.name == project)
    total, rows = query.page.rows(select, (), {}, [Project.name, Policy.name])
    return total, policy_triggers([policy_view(row, row.project.name) for row in rows])


def endpoint_states(found: list[EndpointHealth]) -> dict[str, int]:
    counts = dict.fromkeys(ENDPOINT_STATES, 0)
    for entry in found:
        counts[entry.state] += 1
    return counts


def status_report(limit: int = 20, policies: PolicyQuery | None = None) -> StatusReport:
    """Everything /sidecar/status reports from the store: a summary of bounded size, with
    the page of policies `policies` asks for (the first page of all by default)."""
    now = time.time()
    query = policies or PolicyQuery()
    waiting = Delivery.status.in_([PENDING, SENDING]) & (Delivery.attempts > 0)
    found = endpoints()
    total, page = policy_page(query)
    return StatusReport(
        generated_at=now,
        queue=queue_numbers(now),
        attempts=Attempt.select().count(),
        endpoints=found[:ENDPOINT_LIMIT],
        recent_failures=_newest(Delivery.status == FAILED, Delivery.updated_at.desc(), limit),
        retrying=_newest(waiting, Delivery.updated_at.desc(), limit),
        recent=_newest(None, Delivery.id.desc(), limit),
        policies=page,
        policies_total=total,
        policy_query=query,
        policy_counts=policy_counts(),
        endpoint_states=endpoint_states(found),
    )
