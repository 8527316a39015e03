"""Per-project quota limits in the store: set from the rules file or the API, and read back.

A quota is created with usage 0: the caller rebuilds the real figure from the registry
(store.quota_recount) while enforcement uses what is known. Rules-file quotas are read-only
through the API (`source`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from sidecar.rules.load import Rules
from sidecar.rules.quota import QuotaRule
from sidecar.store.models import database
from sidecar.store.quota_models import Quota
from sidecar.store.quota_models import QuotaBlob
from sidecar.store.quota_models import QuotaLink
from sidecar.store.quota_models import QuotaReservation
from sidecar.store.quota_usage import lock_quota

RULES = "rules"
API = "api"


@dataclass(frozen=True)
class Usage:
    """A project's quota as status, metrics and Harbor's quota API show it."""

    id: int
    project: str
    hard: int
    used: int
    reserved: int
    warning_percent: int
    warning_repeat: str
    source: str
    recalculating: bool
    created_at: float
    updated_at: float

    @property
    def percent(self) -> float | None:
        """Used of the limit, in percent (one decimal); None when unlimited."""
        return None if self.hard <= 0 else round(self.used * 100 / self.hard, 1)


def _usage(row: Quota) -> Usage:
    return Usage(id=row.id, project=row.project, hard=row.hard, used=row.used,
                 reserved=row.reserved, warning_percent=row.warning_percent,
                 warning_repeat=row.warning_repeat, source=row.source,
                 recalculating=row.recalc_started_at is not None,
                 created_at=row.created_at, updated_at=row.updated_at)


def configure(project: str, rule: QuotaRule, *, source: str = API,
              now: float | None = None) -> bool:
    """Set a project's limit and warning settings; True when its quota is new (usage 0: the
    caller should rebuild it from the registry)."""
    now = time.time() if now is None else now
    with database.atomic():
        created = (Quota.insert(project=project, hard=rule.storage, used=0, reserved=0,
                                warning_percent=rule.warning_percent,
                                warning_repeat=rule.warning_repeat, source=source,
                                created_at=now, updated_at=now)
                   .on_conflict_ignore().as_rowcount().execute())
        if not created:
            Quota.update(hard=rule.storage, warning_percent=rule.warning_percent,
                         warning_repeat=rule.warning_repeat, source=source,
                         updated_at=now).where(Quota.project == project).execute()
    return bool(created)


def remove(project: str) -> bool:
    """Forget a project's quota and everything counted for it."""
    with database.atomic():
        if lock_quota(project) is None:  # its row first, as every writer
            return False
        for model in (QuotaReservation, QuotaLink, QuotaBlob):
            model.delete().where(model.project == project).execute()
        return bool(Quota.delete().where(Quota.project == project).execute())


def sync_rules(rules: Rules, now: float | None = None) -> list[str]:
    """Make the rules-file quotas in the store equal to `rules`; return the projects whose
    quota is new (to rebuild from the registry). A quota set through the API on a project the
    file now gives one becomes the file's; the file's quotas that disappeared are removed."""
    now = time.time() if now is None else now
    wanted = {project.name: project.quota for project in rules.projects if project.quota}
    created = [name for name, rule in wanted.items()
               if configure(name, rule, source=RULES, now=now)]
    gone = [row.project for row in Quota.select(Quota.project)
            .where((Quota.source == RULES) & Quota.project.not_in(list(wanted) or [""]))]
    for name in gone:
        remove(name)
    return created


def projects() -> list[str]:
    """The projects with a quota (unlimited ones too: their usage is counted)."""
    return [row.project for row in Quota.select(Quota.project)]


def usage(project: str) -> Usage | None:
    row = Quota.get_or_none(Quota.project == project)
    return _usage(row) if row else None


def all_usage(projects: Iterable[str] | None = None) -> list[Usage]:
    """Every quota, or those of `projects` (a page of the UI's project list)."""
    query = Quota.select().order_by(Quota.project)
    if projects is not None:
        query = query.where(Quota.project.in_(sorted(set(projects))))
    return [_usage(row) for row in query]


def usage_by_id(quota_id: int) -> Usage | None:
    row = Quota.get_or_none(Quota.id == quota_id)
    return _usage(row) if row else None
