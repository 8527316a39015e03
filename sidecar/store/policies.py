"""Projects and policies in the store: rules-file sync and the lookups the recorder needs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sidecar.rules.load import Rules
from sidecar.rules.policy import Filters
from sidecar.store.db import serialized
from sidecar.store.models import Policy
from sidecar.store.models import Project
from sidecar.store.models import Repository
from sidecar.store.models import Setting
from sidecar.store.models import database

RULES = "rules"
API = "api"


@dataclass(frozen=True)
class StoredPolicy:
    """A policy as the recorder sees it: plain data, detached from the database."""

    id: int
    project: str
    name: str
    enabled: bool
    event_types: tuple[str, ...]
    targets: tuple[dict[str, Any], ...]
    filters: Filters = Filters()
    pull_dedup_seconds: int = 0


@dataclass(frozen=True)
class ProjectPolicies:
    name: str
    public: bool
    policies: tuple[StoredPolicy, ...]


def sync_rules(rules: Rules, now: float | None = None) -> None:
    """Make the store's rules-file projects and policies equal to `rules`.

    API-created policies are left alone; a rules-file policy that disappeared is deleted
    (its deliveries keep their history with the policy name).
    """
    now = time.time() if now is None else now
    with database.atomic():
        serialized("rules-sync")  # workers and sidecars starting together take turns
        wanted: dict[tuple[str, str], Any] = {}
        for project in rules.projects:
            row = Project.get_or_none(Project.name == project.name)
            if row is None:
                row = Project.create(
                    name=project.name, public=project.public, source=RULES, created_at=now
                )
            elif row.public != project.public or row.source != RULES:
                row.public = project.public
                row.source = RULES
                row.save()
            for policy in project.policies:
                wanted[(project.name, policy.name)] = (row, policy)
        existing = {
            (p.project.name, p.name): p
            for p in Policy.select(Policy, Project).join(Project).where(Policy.source == RULES)
        }
        for key, stored in existing.items():
            if key not in wanted:
                stored.delete_instance()
        for key, (project_row, policy) in wanted.items():
            fields = {
                "description": policy.description,
                "enabled": policy.enabled,
                "event_types_json": json.dumps(list(policy.event_types)),
                "targets_json": json.dumps([t.as_dict() for t in policy.targets]),
                "options_json": json.dumps(policy.options()),
            }
            stored = existing.get(key)
            if stored is None:
                clash = Policy.get_or_none(
                    (Policy.project == project_row) & (Policy.name == policy.name)
                )
                if clash is not None:  # an API policy of the same name: the rules file wins
                    clash.delete_instance()
                Policy.create(
                    project=project_row, name=policy.name, source=RULES, creator="rules",
                    created_at=now, updated_at=now, **fields,
                )
            elif any(getattr(stored, k) != v for k, v in fields.items()):
                for k, v in fields.items():
                    setattr(stored, k, v)
                stored.updated_at = now
                stored.save()


def policies_for(projects: Iterable[str]) -> dict[str, ProjectPolicies]:
    """The named projects that exist, with their policies."""
    names = sorted(set(projects))
    if not names:
        return {}
    out: dict[str, ProjectPolicies] = {}
    rows = list(Project.select().where(Project.name.in_(names)))
    by_id = {row.id: row for row in rows}
    grouped: dict[int, list[StoredPolicy]] = {row.id: [] for row in rows}
    if rows:
        for policy in Policy.select().where(Policy.project.in_(list(by_id))).order_by(Policy.id):
            options = policy.options
            grouped[policy.project_id].append(
                StoredPolicy(
                    id=policy.id,
                    project=by_id[policy.project_id].name,
                    name=policy.name,
                    enabled=policy.enabled,
                    event_types=policy.event_types,
                    targets=tuple(policy.targets),
                    filters=Filters.from_dict(options.get("filters")),
                    pull_dedup_seconds=int(options.get("pull_dedup_seconds") or 0),
                )
            )
    for row in rows:
        out[row.name] = ProjectPolicies(row.name, row.public, tuple(grouped[row.id]))
    return out


def repository_created(names: Iterable[str], pushed: Iterable[str], now: int) -> dict[str, int]:
    """First-seen time of each repository; a pushed repository seen for the first time is `now`."""
    wanted = sorted(set(names) | set(pushed))
    known = {
        r.name: r.created_at for r in Repository.select().where(Repository.name.in_(wanted))
    }
    for name in sorted(set(pushed)):
        if name not in known:
            Repository.insert(name=name, created_at=now).on_conflict_ignore().execute()
            known[name] = now
    return known


def project_id_for(policy_id: int | None, project: str) -> int | None:
    """The project id of a delivery's policy (CloudEvents `source`); by name once it is gone."""
    if policy_id is not None:
        row = Policy.select(Policy.project).where(Policy.id == policy_id).first()
        if row is not None:
            return row.project_id
    found = Project.select(Project.id).where(Project.name == project).first() if project else None
    return found.id if found is not None else None


def get_setting(key: str, default: str) -> str:
    row = Setting.get_or_none(Setting.key == key)
    return default if row is None else row.value


def set_setting(key: str, value: str) -> None:
    Setting.insert(key=key, value=value).on_conflict_replace().execute()


def ensure_setting(key: str, value: str) -> str:
    """The stored value of `key`, storing `value` first if there is none.

    Several workers racing agree on one value: the first insert wins, the others read it.
    """
    Setting.insert(key=key, value=value).on_conflict_ignore().execute()
    return Setting.get(Setting.key == key).value
