"""Projects and webhook policies as Harbor's API manages them: list, read, create, change, delete.

One store for every way of managing policies (the REST API, the web UI): validation happens
before these functions are called (`rules.policy.parse_policy`), so they only enforce what the
database knows: names unique per project, rules-file objects read-only, ids that belong
together. Every function returns views (`store.views`), detached from the database, and is
meant to run on a database thread (`Executor.run`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from typing import Any

from peewee import IntegrityError
from peewee import fn

from sidecar.redact import unmask_targets
from sidecar.rules.policy import Policy as ValidPolicy
from sidecar.store.models import PENDING
from sidecar.store.models import SENDING
from sidecar.store.models import Delivery
from sidecar.store.models import Policy
from sidecar.store.models import Project
from sidecar.store.models import Repository
from sidecar.store.models import database
from sidecar.store.policies import API
from sidecar.store.policies import RULES
from sidecar.store.views import Conflict
from sidecar.store.views import NotFound
from sidecar.store.views import Page
from sidecar.store.views import PolicyView
from sidecar.store.views import ProjectView
from sidecar.store.views import ReadOnly
from sidecar.store.views import policy_view
from sidecar.store.views import project_view

# -- projects ------------------------------------------------------------------------------


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
    return project_view(row, *_project_counts([row]).get(row.id, (0, 0)))


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


def list_projects(page: Page, name: str = "", public: bool | None = None,
                  exact_name: str = "") -> tuple[int, list[ProjectView]]:
    """Projects by name; `name` is a fuzzy match, `exact_name` an exact one and `public` a
    filter, as Harbor's query."""
    query = Project.select()
    if name:
        query = query.where(Project.name.contains(name))
    if exact_name:
        query = query.where(Project.name == exact_name)
    if public is not None:
        query = query.where(Project.public == public)
    total, rows = page.rows(query, (), {}, [Project.name])
    counts = _project_counts(rows)
    return total, [project_view(row, *counts.get(row.id, (0, 0))) for row in rows]


def create_project(name: str, public: bool, now: float | None = None) -> int:
    now = time.time() if now is None else now
    try:
        with database.atomic():
            if Project.get_or_none(Project.name == name) is not None:
                raise Conflict(f"The project named {name} already exists")
            return Project.create(name=name, public=public, source=API, created_at=now).id
    except IntegrityError as exc:  # a concurrent create of the same name
        raise Conflict(f"The project named {name} already exists") from exc


def update_project(project_id: int, public: bool | None) -> None:
    """PUT /projects/{p}: only projects created through the API."""
    row = Project.get_or_none(Project.id == project_id)
    if row is None:
        raise NotFound(f"project {project_id} not found")
    if row.source == RULES:
        raise ReadOnly(f"project {row.name} is managed by the rules file; change it there")
    if public is not None and public != row.public:
        Project.update(public=public).where(Project.id == project_id).execute()


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

_POLICY_SORT = {
    "id": Policy.id, "name": Policy.name, "creation_time": Policy.created_at,
    "update_time": Policy.updated_at, "enabled": Policy.enabled,
}


def list_policies(project_id: int, page: Page, filters: dict[str, Any] | None = None,
                  sort: Sequence[tuple[str, bool]] = ()) -> tuple[int, list[PolicyView]]:
    """Policies of a project. `filters`: name (exact, or ("~", part) fuzzy), enabled (bool).

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
            query = query.where(Policy.enabled == bool(value))
    total, rows = page.rows(query, sort, _POLICY_SORT,
                            [Policy.created_at.desc(), Policy.id.desc()])
    return total, [policy_view(row, project.name) for row in rows]


def all_policies() -> list[PolicyView]:
    """Every policy of every project, by project name and policy name."""
    query = Policy.select(Policy, Project).join(Project).order_by(Project.name, Policy.name)
    return [policy_view(row, row.project.name) for row in query]


def get_policy(project_id: int, policy_id: int) -> PolicyView:
    """Harbor's two 404s: the id does not exist, or it belongs to another project."""
    row = Policy.get_or_none(Policy.id == policy_id)
    if row is None:
        raise NotFound(f"notificationPolicy {policy_id} not found")
    if row.project_id != project_id:
        raise NotFound(f"project id:{project_id}, webhook policy id: {policy_id} not found")
    return policy_view(row, Project.get_by_id(project_id).name)


def _conflict(name: str) -> Conflict:
    return Conflict(f"notification policy named {name} already exists")


def _policy_fields(policy: ValidPolicy) -> dict[str, Any]:
    return {
        "name": policy.name,
        "description": policy.description,
        "enabled": policy.enabled,
        "event_types_json": json.dumps(list(policy.event_types)),
        "targets_json": json.dumps([target.as_dict() for target in policy.targets]),
        "options_json": json.dumps(policy.options()),
    }


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
            row = Policy.create(project=project_id, source=API, creator=creator,
                                created_at=now, updated_at=now, **_policy_fields(policy))
            return row.id
    except IntegrityError as exc:
        raise _conflict(policy.name) from exc


def update_policy(project_id: int, policy_id: int, policy: ValidPolicy,
                  now: float | None = None) -> None:
    """Replace the policy with `policy` (Harbor's PUT is not a merge); masked secrets sent
    back keep their stored values."""
    now = time.time() if now is None else now
    stored = get_policy(project_id, policy_id)
    try:
        with database.atomic():
            row = Policy.get_by_id(policy_id)
            if row.source == RULES:
                raise _read_only(row)
            if policy.name != row.name and Policy.get_or_none(
                    (Policy.project == project_id) & (Policy.name == policy.name)) is not None:
                raise _conflict(policy.name)
            policy = dataclasses.replace(
                policy, targets=unmask_targets(policy.targets, stored.targets))
            for key, value in _policy_fields(policy).items():
                setattr(row, key, value)
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
