"""Quotas as Harbor's API and the pages show them: by quota id, with the project's id.

Harbor's quota API names a quota by its own id and its project by the project's id
(`ref.id`, and `reference_id` in the list's filter); our quota rows are per project name, so
these views join the two. Rules-file quotas are read-only here, as rules-file policies are.
A limit set or changed here takes effect in every worker at its next refresh of the projects
with a quota (store.quota_limits), and at once in the one that set it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from peewee import Case

from sidecar.rules.quota import QuotaRule
from sidecar.store import quota_limits
from sidecar.store import quota_recalc
from sidecar.store.models import Project
from sidecar.store.models import database
from sidecar.store.quota_models import Quota
from sidecar.store.views import NotFound
from sidecar.store.views import Page
from sidecar.store.views import ReadOnly

#: Harbor sorts an unlimited (-1) limit as the largest value (castQuantity)
_LARGEST = 2 ** 63 - 1


@dataclass(frozen=True)
class QuotaView:
    id: int
    project_id: int
    project: str
    hard: int
    used: int
    source: str
    recalculating: bool
    created_at: float
    updated_at: float


def _view(row: Quota) -> QuotaView:
    return QuotaView(id=row.id, project_id=row.project_row.id, project=row.project,
                     hard=row.hard, used=row.used, source=row.source,
                     recalculating=row.recalc_started_at is not None,
                     created_at=row.created_at, updated_at=row.updated_at)


def _joined():
    return (Quota.select(Quota, Project.id)
            .join(Project, on=(Project.name == Quota.project), attr="project_row"))


_SORT = {
    "creation_time": Quota.created_at,
    "update_time": Quota.updated_at,
    "hard.storage": Case(None, [(Quota.hard < 0, _LARGEST)], Quota.hard),
    "used.storage": Quota.used,
}


def list_quotas(page: Page, reference: str = "", reference_id: str = "",
                sort: Sequence[tuple[str, bool]] = ()) -> tuple[int, list[QuotaView]]:
    """Harbor's GET /quotas: `reference` is only ever `project`; `reference_id` the project's
    id as a string (anything else finds nothing, as Harbor's filter does)."""
    query = _joined()
    if reference and reference != "project":
        return 0, []
    if reference_id:
        if not reference_id.isdigit():
            return 0, []
        query = query.where(Project.id == int(reference_id))
    total, rows = page.rows(query, sort, _SORT, [Quota.created_at.desc(), Quota.id.desc()])
    return total, [_view(row) for row in rows]


def get_quota(quota_id: int) -> QuotaView:
    row = _joined().where(Quota.id == quota_id).first()
    if row is None:
        raise NotFound(f"quota {quota_id} not found")
    return _view(row)


def set_hard(quota_id: int, hard: int, now: float | None = None) -> QuotaView:
    """PUT /quotas/{id}: a new limit (below current usage is accepted, as in Harbor: later
    pushes that need storage are refused)."""
    now = time.time() if now is None else now
    with database.atomic():
        quota = get_quota(quota_id)
        if quota.source == quota_limits.RULES:
            raise ReadOnly(f"the quota of project {quota.project} is managed by the rules file; "
                           "change it there")
        Quota.update(hard=hard, updated_at=now).where(Quota.id == quota_id).execute()
    return get_quota(quota_id)


def set_project_limit(project: str, hard: int, now: float | None = None) -> bool:
    """A project made or changed through the API gets this limit (a new quota is rebuilt
    from the registry in the background); True when the quota is new. Refused for a
    rules-file quota."""
    now = time.time() if now is None else now
    with database.atomic():
        current = quota_limits.usage(project)
        if current is not None and current.source == quota_limits.RULES:
            raise ReadOnly(f"the quota of project {project} is managed by the rules file; "
                           "change it there")
        rule = QuotaRule(storage=hard) if current is None else QuotaRule(
            storage=hard, warning_percent=current.warning_percent,
            warning_repeat=current.warning_repeat)
        created = quota_limits.configure(project, rule, source=quota_limits.API, now=now)
        if created:
            quota_recalc.request_recalc(project, operator="admin", now=now)
    return created


def drop_project_quota(project: str) -> bool:
    """A project deleted through the API takes its quota with it (as Harbor's does)."""
    current = quota_limits.usage(project)
    if current is None or current.source == quota_limits.RULES:
        return False
    return quota_limits.remove(project)
