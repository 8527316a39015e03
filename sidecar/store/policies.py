"""Projects and policies in the store: rules-file sync and the lookups the recorder needs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from sidecar.rules.load import Rules
from sidecar.rules.match import CompiledFilters
from sidecar.rules.policy import Filters
from sidecar.store.db import serialized
from sidecar.store.models import Policy
from sidecar.store.models import Project
from sidecar.store.models import Repository
from sidecar.store.models import Setting
from sidecar.store.models import database
from sidecar.store.replication import sync_replication
from sidecar.store.scans import sync_scanners

RULES = "rules"
API = "api"
#: Rows per multi-row INSERT / DELETE ... IN: well inside SQLite's limit of bound variables.
BATCH = 500
#: The policy columns the rules file decides.
_SYNCED = ("description", "enabled", "event_types_json", "targets_json", "options_json")


@dataclass
class SyncResult:
    """What a rules sync changed (the log line after a reload says it)."""

    projects_added: int = 0
    projects_changed: int = 0
    policies_added: int = 0
    policies_changed: int = 0
    policies_deleted: int = 0
    scanners_changed: int = 0
    replication_changed: int = 0  # registries and replication policies

    @property
    def changed(self) -> bool:
        return any(vars(self).values())

    def __str__(self) -> str:
        if not self.changed:
            return "no changes"
        parts = [f"{n} {what}" for what, n in (
            ("projects added", self.projects_added), ("projects changed", self.projects_changed),
            ("policies added", self.policies_added), ("policies changed", self.policies_changed),
            ("policies deleted", self.policies_deleted),
            ("scanners changed", self.scanners_changed),
            ("replication registries/policies changed", self.replication_changed)) if n]
        return ", ".join(parts)


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
    #: the filters compiled, once per load
    matcher: CompiledFilters = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "matcher", CompiledFilters(self.filters))


@dataclass(frozen=True)
class ProjectPolicies:
    name: str
    public: bool
    policies: tuple[StoredPolicy, ...]
    #: event type -> the enabled policies subscribed to it, in id order: matching an event
    #: looks at those only
    by_type: dict[str, tuple[StoredPolicy, ...]] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        index: dict[str, list[StoredPolicy]] = {}
        for policy in self.policies:
            if policy.enabled:
                for event_type in policy.event_types:
                    index.setdefault(event_type, []).append(policy)
        object.__setattr__(self, "by_type", {k: tuple(v) for k, v in index.items()})


@dataclass(frozen=True)
class PolicyPlan:
    """The policy writes a rules sync needs, worked out before its writing transaction.

    Reading 10,000 stored policies and comparing them takes a few hundred milliseconds; under
    the write lock that long, every worker's recorder waited and webhooks paused during a
    reload. `sync_rules` uses the plan if the policy tables are still as it saw them, and
    works it out again under the lock otherwise.
    """

    fingerprint: tuple  # policies_fingerprint()'s policy part when the plan was read
    gone: list[int]  # policy ids
    added: list[tuple[str, str, tuple]]  # project name, policy name, the _SYNCED values
    updated: list[tuple[int, tuple]]  # policy id, the _SYNCED values


def plan_policies(rules: Rules) -> PolicyPlan:
    """What making the store's policies equal to `rules` would write (reads only)."""
    fingerprint = policies_fingerprint()[:3]  # first: a change after it voids the plan
    names = {row.id: row.name for row in Project.select(Project.id, Project.name)}
    wanted: dict[tuple[str, str], tuple] = {}
    for project in rules.projects:
        for policy in project.policies:
            wanted[(project.name, policy.name)] = (
                policy.description, policy.enabled, json.dumps(list(policy.event_types)),
                json.dumps([t.as_dict() for t in policy.targets]),
                json.dumps(policy.options()))
    stored = {
        (names.get(row.project_id), row.name): row
        for row in Policy.select(Policy.id, Policy.project, Policy.name, Policy.source,
                                 *[getattr(Policy, k) for k in _SYNCED])
    }
    gone = [row.id for key, row in stored.items() if row.source == RULES and key not in wanted]
    # an API policy of the same name as a rules-file one: the rules file wins
    gone += [row.id for key, row in stored.items() if row.source != RULES and key in wanted]
    added, updated = [], []
    for key, values in wanted.items():
        row = stored.get(key)
        if row is None or row.source != RULES:
            added.append((*key, values))
        elif tuple(getattr(row, k) for k in _SYNCED) != values:
            updated.append((row.id, values))
    return PolicyPlan(fingerprint, gone, added, updated)


def sync_rules(rules: Rules, now: float | None = None,
               plan: PolicyPlan | None = None) -> SyncResult:
    """Make the store's rules-file projects and policies equal to `rules`, writing only the
    difference: a file of 10,000 unchanged policies costs two reads, not 10,000 writes.
    `plan`: plan_policies(rules) read before this transaction began (see PolicyPlan).

    API-created policies are left alone, unless a rules-file policy takes their name (the file
    wins); a rules-file policy that disappeared is deleted (its deliveries keep their history
    with the policy name).
    """
    now = time.time() if now is None else now
    result = SyncResult()
    with database.atomic():
        serialized("rules-sync")  # workers and sidecars starting together take turns
        if plan is None or plan.fingerprint != policies_fingerprint()[:3]:
            plan = plan_policies(rules)
        projects = {row.name: row for row in Project.select()}
        fresh = [p for p in rules.projects if p.name not in projects]
        # the scanners first: projects name them, and every worker reads both together
        result.scanners_changed = sync_scanners(rules.scanners, now)
        for start in range(0, len(fresh), BATCH):
            Project.insert_many([
                {"name": p.name, "public": p.public, "source": RULES, "created_at": now,
                 "auto_scan": p.auto_scan, "scanner": p.scanner}
                for p in fresh[start:start + BATCH]]).execute()
        result.projects_added = len(fresh)
        if fresh:
            projects = {row.name: row for row in Project.select()}
        for project in rules.projects:
            row = projects[project.name]
            wanted_row = {"public": project.public, "source": RULES,
                          "auto_scan": project.auto_scan, "scanner": project.scanner}
            if any(getattr(row, k) != v for k, v in wanted_row.items()):
                Project.update(**wanted_row).where(Project.id == row.id).execute()
                result.projects_changed += 1
        # a project the file no longer declares keeps its row (deliveries name it) but no
        # longer scans what is pushed to it
        declared = {p.name for p in rules.projects}
        dropped = [row.id for name, row in projects.items() if name not in declared
                   and row.source == RULES and (row.auto_scan or row.scanner)]
        if dropped:
            Project.update(auto_scan=False, scanner="").where(
                Project.id.in_(dropped)).execute()
            result.projects_changed += len(dropped)

        for start in range(0, len(plan.gone), BATCH):
            Policy.delete().where(Policy.id.in_(plan.gone[start:start + BATCH])).execute()
        _execute_many(
            f"INSERT INTO policy (project_id, name, source, creator, created_at, updated_at, "
            f"{', '.join(_SYNCED)}) VALUES ({', '.join([database.param] * (6 + len(_SYNCED)))})",
            [(projects[project].id, name, RULES, "rules", now, now, *values)
             for project, name, values in plan.added])
        _execute_many(
            f"UPDATE policy SET updated_at = {database.param}, "
            f"{', '.join(f'{k} = {database.param}' for k in _SYNCED)} "
            f"WHERE id = {database.param}",
            [(now, *values, policy_id) for policy_id, values in plan.updated])
        result.policies_changed = len(plan.updated)
        result.policies_added = len(plan.added)
        result.policies_deleted = len(plan.gone)
        result.replication_changed = sync_replication(rules.registries, rules.replication, now)
    return result


def _execute_many(sql: str, rows: list[tuple]) -> None:
    """`sql` once per row, BATCH rows per round trip: peewee building 10,000 INSERTs cost
    more than SQLite running them."""
    for start in range(0, len(rows), BATCH):
        cursor = database.cursor()
        try:
            cursor.executemany(sql, rows[start:start + BATCH])
        finally:
            cursor.close()


def policies_fingerprint() -> tuple:
    """Changes whenever a project or policy is added, changed or deleted (ids only grow, an
    update moves updated_at): one cheap query tells a cached index whether to reload."""
    cursor = database.execute_sql(
        "SELECT (SELECT COUNT(*) FROM policy), (SELECT MAX(id) FROM policy), "
        "(SELECT MAX(updated_at) FROM policy), (SELECT COUNT(*) FROM project), "
        "(SELECT MAX(id) FROM project), "
        "(SELECT SUM(CASE WHEN public THEN id ELSE 0 END) FROM project)")
    return tuple(cursor.fetchone())


def changed_projects(since: tuple, now: tuple) -> list[str] | None:
    """The projects whose policies were added or changed between two `policies_fingerprint`s,
    or None when only reading everything again can tell (a policy or project was deleted, a
    project added or changed). A rules reload that edits 100 projects of 1,000 then costs the
    recorder those 100, not all 10,000 policies."""
    if since[3:] != now[3:]:
        return None
    count, max_id, max_updated = (v or 0 for v in since[:3])
    added = Policy.select().where(Policy.id > max_id).count()
    if (now[0] or 0) < count + added:
        return None  # fewer than the old ones plus the new ones: some were deleted
    touched = (Policy.select(Policy.project).distinct()
               .where((Policy.id > max_id) | (Policy.updated_at > max_updated)))
    ids = [row.project_id for row in touched]
    if not ids:
        return []
    return [row.name for row in Project.select(Project.name).where(Project.id.in_(ids))]


def all_policies() -> dict[str, ProjectPolicies]:
    """Every project, with its policies (the recorder's index, reloaded on a change)."""
    return _load(list(Project.select()), everything=True)


def policies_for(projects: Iterable[str]) -> dict[str, ProjectPolicies]:
    """The named projects that exist, with their policies."""
    names = sorted(set(projects))
    if not names:
        return {}
    return _load(list(Project.select().where(Project.name.in_(names))))


def _load(rows: list, everything: bool = False) -> dict[str, ProjectPolicies]:
    out: dict[str, ProjectPolicies] = {}
    by_id = {row.id: row for row in rows}
    grouped: dict[int, list[StoredPolicy]] = {row.id: [] for row in rows}
    if rows:
        query = Policy.select().order_by(Policy.id)
        if not everything:
            query = query.where(Policy.project.in_(list(by_id)))
        for policy in query:
            if policy.project_id not in by_id:
                continue  # created after the projects were read
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
    """First-seen time of each repository; a pushed repository seen for the first time is `now`.

    Plain SQL: this runs with every batch the recorder writes, and peewee's query building
    cost more than the lookup itself.
    """
    wanted = sorted(set(names) | set(pushed))
    known: dict[str, int] = {}
    mark = database.param
    for start in range(0, len(wanted), BATCH):
        chunk = wanted[start:start + BATCH]
        cursor = database.execute_sql(
            f"SELECT name, created_at FROM repository WHERE name IN "
            f"({', '.join(mark for _ in chunk)})", chunk)
        known.update(cursor.fetchall())
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
    # written out: the recorder asks for notification_enable with every batch, and peewee
    # building the query cost more than the database answering it
    row = database.execute_sql(f"SELECT value FROM setting WHERE key = {database.param}",
                               (key,)).fetchone()
    return default if row is None else row[0]


def set_setting(key: str, value: str) -> None:
    # an upsert both SQLite and PostgreSQL know (REPLACE is SQLite's alone)
    Setting.insert(key=key, value=value).on_conflict(
        conflict_target=[Setting.key], update={Setting.value: value}).execute()


def ensure_setting(key: str, value: str) -> str:
    """The stored value of `key`, storing `value` first if there is none.

    Several workers racing agree on one value: the first insert wins, the others read it.
    """
    Setting.insert(key=key, value=value).on_conflict_ignore().execute()
    return Setting.get(Setting.key == key).value
