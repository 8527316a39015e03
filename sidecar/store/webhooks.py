"""Projects, webhook policies and their delivery history as Harbor's API sees them.

One store for every way of managing policies (the REST API now, a web UI later): validation
happens before these functions are called (`rules.policy.parse_policy`), so they only enforce
what the database knows: names unique per project, rules-file policies read-only, ids that
belong together. Every function returns plain data, detached from the database, and is meant
to run on a database thread (`Executor.run`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from peewee import JOIN
from peewee import IntegrityError
from peewee import fn

from sidecar.rules.policy import Policy as ValidPolicy
from sidecar.store.models import PENDING
from sidecar.store.models import SENDING
from sidecar.store.models import Attempt
from sidecar.store.models import Delivery
from sidecar.store.models import Event
from sidecar.store.models import Policy
from sidecar.store.models import Project
from sidecar.store.models import Repository
from sidecar.store.models import database
from sidecar.store.policies import API
from sidecar.store.policies import RULES

#: What a masked secret looks like in an answer; sent back unchanged, it keeps the stored one.
MASK = "***"
SECRET_TARGET_KEYS = ("auth_header", "secret")


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
    targets: tuple[dict[str, Any], ...]
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
    target: dict[str, Any]
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


@dataclass(frozen=True)
class Page:
    """Harbor's pagination: 1-based page; page_size 0 means everything."""

    page: int = 1
    page_size: int = 10

    def apply(self, query):
        if self.page_size <= 0:
            return query
        return query.paginate(max(self.page, 1), self.page_size)


# -- projects ------------------------------------------------------------------------------

def _project_view(row: Project, policy_count: int = 0, repo_count: int = 0) -> ProjectView:
    return ProjectView(row.id, row.name, row.public, row.source, row.created_at,
                       policy_count, repo_count)


def find_project(ref: str, is_name: bool = False) -> ProjectView:
    """Resolve Harbor's `project_name_or_id`: an integer is an id unless `is_name`."""
    if not is_name and ref.isdigit():
        row = Project.get_or_none(Project.id == int(ref))
        if row is None:
            raise NotFound(f"project {int(ref)} not found")
    else:
        row = Project.get_or_none(Project.name == ref)
        if row is None:
            raise NotFound(f"project {ref} not found")
    return _project_view(row, *_project_counts([row]).get(row.id, (0, 0)))


def _project_counts(rows: Sequence[Project]) -> dict[int, tuple[int, int]]:
    ids = [row.id for row in rows]
    if not ids:
        return {}
    policies = dict(
        Policy.select(Policy.project, fn.COUNT(Policy.id))
        .where(Policy.project.in_(ids)).group_by(Policy.project).tuples()
    )
    out = {}
    for row in rows:
        repos = Repository.select().where(Repository.name.startswith(f"{row.name}/")).count()
        out[row.id] = (policies.get(row.id, 0), repos)
    return out


def list_projects(page: Page, name: str = "") -> tuple[int, list[ProjectView]]:
    """Projects by name; `name` is a fuzzy match, as Harbor's `name` query parameter."""
    query = Project.select()
    if name:
        query = query.where(Project.name.contains(name))
    total = query.count()
    rows = list(page.apply(query.order_by(Project.name)))
    counts = _project_counts(rows)
    return total, [_project_view(row, *counts.get(row.id, (0, 0))) for row in rows]


def create_project(name: str, public: bool, now: float | None = None) -> int:
    now = time.time() if now is None else now
    try:
        with database.atomic():
            if Project.get_or_none(Project.name == name) is not None:
                raise Conflict(f"The project named {name} already exists")
            return Project.create(name=name, public=public, source=API, created_at=now).id
    except IntegrityError as exc:  # a concurrent create of the same name
        raise Conflict(f"The project named {name} already exists") from exc


def delete_project(project_id: int) -> None:
    """Only projects created through the API; their policies go with them."""
    row = Project.get_or_none(Project.id == project_id)
    if row is None:
        raise NotFound(f"project {project_id} not found")
    if row.source == RULES:
        raise ReadOnly(f"project {row.name} is managed by the rules file; remove it there")
    with database.atomic():
        for policy in Policy.select().where(Policy.project == row.id):
            _delete_policy_row(policy)
        row.delete_instance()


# -- policies ------------------------------------------------------------------------------

def _policy_view(row: Policy, project_name: str) -> PolicyView:
    return PolicyView(
        id=row.id, project_id=row.project_id, project=project_name, name=row.name,
        description=row.description, enabled=row.enabled, event_types=row.event_types,
        targets=tuple(row.targets), source=row.source, creator=row.creator,
        created_at=row.created_at, updated_at=row.updated_at, options=row.options,
    )


_POLICY_SORT = {
    "id": Policy.id, "name": Policy.name, "creation_time": Policy.created_at,
    "update_time": Policy.updated_at, "enabled": Policy.enabled,
}


def list_policies(
    project_id: int,
    page: Page,
    filters: dict[str, Any] | None = None,
    sort: Sequence[tuple[str, bool]] = (),
) -> tuple[int, list[PolicyView]]:
    """Policies of a project. `filters`: name (exact, or ("~", part) fuzzy), enabled.

    Default order is Harbor's: newest first.
    """
    project = Project.get_by_id(project_id)
    query = Policy.select().where(Policy.project == project_id)
    for key, value in (filters or {}).items():
        if key == "name":
            if isinstance(value, tuple):
                query = query.where(Policy.name.contains(value[1]))
            else:
                query = query.where(Policy.name == str(value))
        elif key == "enabled":
            query = query.where(Policy.enabled == (str(value).lower() in ("true", "1")))
    total = query.count()
    order = [(_POLICY_SORT[k].desc() if desc else _POLICY_SORT[k])
             for k, desc in sort if k in _POLICY_SORT]
    order = order or [Policy.created_at.desc(), Policy.id.desc()]
    rows = list(page.apply(query.order_by(*order)))
    return total, [_policy_view(row, project.name) for row in rows]


def get_policy(project_id: int, policy_id: int) -> PolicyView:
    """Harbor's two 404s: the id does not exist, or it belongs to another project."""
    row = Policy.get_or_none(Policy.id == policy_id)
    if row is None:
        raise NotFound(f"notificationPolicy {policy_id} not found")
    if row.project_id != project_id:
        raise NotFound(f"project id:{project_id}, webhook policy id: {policy_id} not found")
    return _policy_view(row, Project.get_by_id(project_id).name)


def _conflict(name: str) -> Conflict:
    return Conflict(f"notification policy named {name} already exists")


def _targets_json(policy: ValidPolicy) -> str:
    return json.dumps([target.as_dict() for target in policy.targets])


def create_policy(project_id: int, policy: ValidPolicy, creator: str,
                  now: float | None = None) -> int:
    now = time.time() if now is None else now
    if Project.get_or_none(Project.id == project_id) is None:
        raise NotFound(f"project {project_id} not found")
    try:
        with database.atomic():
            clash = Policy.get_or_none((Policy.project == project_id)
                                       & (Policy.name == policy.name))
            if clash is not None:
                raise _conflict(policy.name)
            row = Policy.create(
                project=project_id, name=policy.name, description=policy.description,
                enabled=policy.enabled, event_types_json=json.dumps(list(policy.event_types)),
                targets_json=_targets_json(policy), options_json=json.dumps(policy.options()),
                source=API, creator=creator,
                created_at=now, updated_at=now,
            )
            return row.id
    except IntegrityError as exc:
        raise _conflict(policy.name) from exc


def unmask_targets(policy: ValidPolicy, stored: Sequence[dict[str, Any]]) -> ValidPolicy:
    """Secrets sent back masked (as GET shows them) keep their stored value.

    A target is matched by address first, then by position, so reordering targets or
    editing an address keeps each secret where it was.
    """
    by_address = {t.get("address"): t for t in stored}
    targets = []
    for index, target in enumerate(policy.targets):
        old = by_address.get(target.address) or (stored[index] if index < len(stored) else {})
        changes = {}
        for key in SECRET_TARGET_KEYS:
            if getattr(target, key, None) == MASK:
                changes[key] = old.get(key, "")
        targets.append(dataclasses.replace(target, **changes) if changes else target)
    return dataclasses.replace(policy, targets=tuple(targets))


def update_policy(project_id: int, policy_id: int, policy: ValidPolicy,
                  now: float | None = None) -> None:
    """Replace the policy with `policy` (Harbor's PUT is not a merge)."""
    now = time.time() if now is None else now
    get_policy(project_id, policy_id)
    try:
        with database.atomic():
            row = Policy.get_by_id(policy_id)
            if row.source == RULES:
                raise _read_only(row)
            if policy.name != row.name and Policy.get_or_none(
                    (Policy.project == project_id) & (Policy.name == policy.name)) is not None:
                raise _conflict(policy.name)
            policy = unmask_targets(policy, row.targets)
            row.name = policy.name
            row.description = policy.description
            row.enabled = policy.enabled
            row.event_types_json = json.dumps(list(policy.event_types))
            row.targets_json = _targets_json(policy)
            row.options_json = json.dumps(policy.options())
            row.updated_at = now
            row.save()
    except IntegrityError as exc:
        raise _conflict(policy.name) from exc


def _read_only(row: Policy) -> ReadOnly:
    return ReadOnly(
        f"webhook policy {row.name} is managed by the rules file and is read-only through the "
        "API: change it in the rules file"
    )


def _delete_policy_row(row: Policy) -> None:
    # Harbor deletes the policy's executions; we keep finished ones as history (with the
    # policy name) and drop what is still waiting, so nothing is sent for a deleted policy.
    Delivery.delete().where(
        (Delivery.policy == row.id) & (Delivery.status.in_([PENDING, SENDING]))
    ).execute()
    row.delete_instance()


def delete_policy(project_id: int, policy_id: int) -> None:
    get_policy(project_id, policy_id)
    with database.atomic():
        row = Policy.get_by_id(policy_id)
        if row.source == RULES:
            raise _read_only(row)
        _delete_policy_row(row)


def last_triggers(project_id: int) -> list[tuple[PolicyView, str, float | None]]:
    """Per policy and subscribed event type, when a delivery for it was last created."""
    _, policies = list_policies(project_id, Page(1, 0))
    if not policies:
        return []
    last = {
        (policy_id, event_type): when
        for policy_id, event_type, when in Delivery.select(
            Delivery.policy, Delivery.event_type, fn.MAX(Delivery.created_at))
        .where(Delivery.policy.in_([p.id for p in policies]))
        .group_by(Delivery.policy, Delivery.event_type).tuples()
    }
    return [(policy, event_type, last.get((policy.id, event_type)))
            for policy in policies for event_type in policy.event_types]


# -- executions (deliveries) ---------------------------------------------------------------

def _delivery_view(row: Delivery, attempts: Sequence[Attempt] = ()) -> DeliveryView:
    return DeliveryView(
        id=row.id, uid=row.uid, policy_id=row.policy_id, policy_name=row.policy_name,
        project=row.project, event_type=row.event_type, target=row.target, status=row.status,
        attempts=row.attempts, max_attempts=row.max_attempts,
        next_attempt_at=row.next_attempt_at, last_status_code=row.last_status_code,
        last_error=row.last_error, created_at=row.created_at, updated_at=row.updated_at,
        finished_at=row.finished_at, payload=row.event.payload,
        request_id=row.event.request_id,
        attempt_rows=tuple(
            AttemptView(a.number, a.started_at, a.duration_ms, a.status_code, a.error,
                        a.response_excerpt)
            for a in attempts
        ),
    )


_EXECUTION_SORT = {
    "id": Delivery.id, "start_time": Delivery.created_at, "end_time": Delivery.finished_at,
    "status": Delivery.status,
}


def _with_attempts(rows: Sequence[Delivery]) -> list[DeliveryView]:
    grouped: dict[int, list[Attempt]] = {row.id: [] for row in rows}
    if rows:
        for attempt in (Attempt.select().where(Attempt.delivery.in_(list(grouped)))
                        .order_by(Attempt.number)):
            grouped[attempt.delivery_id].append(attempt)
    return [_delivery_view(row, grouped[row.id]) for row in rows]


def list_executions(
    policy_id: int,
    page: Page,
    filters: dict[str, Any] | None = None,
    sort: Sequence[tuple[str, bool]] = (),
) -> tuple[int, list[DeliveryView]]:
    """Deliveries of a policy, newest first. `filters`: status (our names), event_type."""
    query = (Delivery.select(Delivery, Event).join(Event, JOIN.INNER)
             .where(Delivery.policy == policy_id))
    for key, value in (filters or {}).items():
        if key == "status":
            query = query.where(Delivery.status.in_(list(value)))
        elif key == "event_type":
            query = query.where(Delivery.event_type == str(value))
    total = query.count()
    order = [(_EXECUTION_SORT[k].desc() if desc else _EXECUTION_SORT[k])
             for k, desc in sort if k in _EXECUTION_SORT]
    rows = list(page.apply(query.order_by(*(order or [Delivery.id.desc()]))))
    return total, _with_attempts(rows)


def get_execution(policy_id: int, execution_id: int) -> DeliveryView:
    row = (Delivery.select(Delivery, Event).join(Event, JOIN.INNER)
           .where(Delivery.id == execution_id).first())
    if row is None:
        raise NotFound(f"execution {execution_id} not found")
    if row.policy_id != policy_id:
        raise NotFound(f"execution {execution_id} not found in policy {policy_id}")
    return _with_attempts([row])[0]


def get_task(policy_id: int, execution_id: int, task_id: int) -> DeliveryView:
    """Each execution has exactly one task, with the execution's id."""
    execution = get_execution(policy_id, execution_id)
    if task_id != execution_id:
        if Delivery.get_or_none(Delivery.id == task_id) is None:
            raise NotFound(f"task {task_id} not found")
        raise NotFound(f"task {task_id} not found in execution {execution_id}")
    return execution
