"""The store's read model: what every reader (REST API, web UI, status page, CLI) gets.

One shape per concept, made once from the rows: a project is a `ProjectView`, a policy a
`PolicyView`, a delivery (Harbor's execution and its task) a `DeliveryView`. Targets become
typed `Target`s here, at the store boundary, and nothing is redacted yet: the views carry the
secrets a delivery needs to be rendered, and every reader shows them through `sidecar.redact`.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from sidecar.rules.target import Target
from sidecar.store.models import Attempt
from sidecar.store.models import Delivery
from sidecar.store.models import Policy
from sidecar.store.models import Project


class StoreError(Exception):
    """A request the store refuses; `message` is what the API tells the client."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    pass


class ReadOnly(StoreError):
    """The object is managed elsewhere (the rules file) and cannot change through the API."""


@dataclass(frozen=True)
class Page:
    """Harbor's pagination: 1-based page; page_size 0 means everything."""

    page: int = 1
    page_size: int = 10

    def apply(self, query):
        if self.page_size <= 0:
            return query
        return query.paginate(max(self.page, 1), self.page_size)

    def rows(self, query, sort: Sequence[tuple[str, bool]], columns: Mapping[str, Any],
             default: Sequence[Any]) -> tuple[int, list]:
        """(total, this page's rows) of `query`, in Harbor's `sort` order (field, descending)
        over `columns`; unknown fields are ignored, as Harbor's query builder does."""
        order = [columns[k].desc() if desc else columns[k] for k, desc in sort if k in columns]
        return query.count(), list(self.apply(query.order_by(*(order or default))))


@dataclass(frozen=True)
class ProjectView:
    id: int
    name: str
    public: bool
    source: str
    created_at: float
    policy_count: int = 0
    repo_count: int = 0


@dataclass(frozen=True)
class PolicyView:
    id: int
    project_id: int
    project: str
    name: str
    description: str
    enabled: bool
    event_types: tuple[str, ...]
    targets: tuple[Target, ...]
    source: str
    creator: str
    created_at: float
    updated_at: float
    #: beyond Harbor: filters, pull_dedup_seconds (rules.policy.Policy.options)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AttemptView:
    number: int
    started_at: float
    duration_ms: int
    status_code: int | None
    error: str
    response_excerpt: str


@dataclass(frozen=True)
class DeliveryView:
    """One delivery: Harbor's execution and its single task."""

    id: int
    uid: str
    policy_id: int | None
    policy_name: str
    project: str
    event_type: str
    target: Target
    status: str
    attempts: int
    max_attempts: int
    next_attempt_at: float
    last_status_code: int | None
    last_error: str
    created_at: float
    updated_at: float
    finished_at: float | None
    payload: dict[str, Any]
    request_id: str
    attempt_rows: tuple[AttemptView, ...] = field(default=())


def project_view(row: Project, policy_count: int = 0, repo_count: int = 0) -> ProjectView:
    return ProjectView(row.id, row.name, row.public, row.source, row.created_at,
                       policy_count, repo_count)


def policy_view(row: Policy, project_name: str) -> PolicyView:
    return PolicyView(
        id=row.id, project_id=row.project_id, project=project_name, name=row.name,
        description=row.description, enabled=row.enabled, event_types=row.event_types,
        targets=tuple(Target.from_dict(t) for t in row.targets), source=row.source,
        creator=row.creator, created_at=row.created_at, updated_at=row.updated_at,
        options=row.options,
    )


def delivery_view(row: Delivery, attempts: Sequence[Attempt] = ()) -> DeliveryView:
    """`row` must come with its event (select Delivery, Event joined): payload, request id."""
    return DeliveryView(
        id=row.id, uid=row.uid, policy_id=row.policy_id, policy_name=row.policy_name,
        project=row.project, event_type=row.event_type, target=Target.from_dict(row.target),
        status=row.status, attempts=row.attempts, max_attempts=row.max_attempts,
        next_attempt_at=row.next_attempt_at, last_status_code=row.last_status_code,
        last_error=row.last_error or "", created_at=row.created_at, updated_at=row.updated_at,
        finished_at=row.finished_at, payload=row.event.payload,
        request_id=row.event.request_id,
        attempt_rows=tuple(
            AttemptView(a.number, a.started_at, a.duration_ms, a.status_code, a.error or "",
                        a.response_excerpt or "")
            for a in attempts
        ),
    )


def with_attempts(rows: Sequence[Delivery]) -> list[DeliveryView]:
    """Views of `rows` with their attempts, read in one query."""
    grouped: dict[int, list[Attempt]] = {row.id: [] for row in rows}
    if rows:
        for attempt in (Attempt.select().where(Attempt.delivery.in_(list(grouped)))
                        .order_by(Attempt.delivery, Attempt.number)):
            grouped[attempt.delivery_id].append(attempt)
    return [delivery_view(row, grouped[row.id]) for row in rows]
