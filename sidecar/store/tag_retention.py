"""Tag retention in the store: each project's policy (from the rules file) and the push/pull
activity retention ranks artifacts by.

Activity rows are read and written as plain values here; retain.recording folds the events
into them (retain.activity, pure) inside the recorder's transaction, so an event is recorded
with the activity it implies or not at all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.rules.load import Rules
from sidecar.rules.retention import RetentionPolicy
from sidecar.rules.retention import parse_retention
from sidecar.store.models import Project
from sidecar.store.models import database
from sidecar.store.tag_retention_models import ArtifactActivity
from sidecar.store.tag_retention_models import RetentionPolicyRow
from sidecar.store.tag_retention_models import TagActivity

RULES = "rules"


# -- policies -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PolicyView:
    """A project's retention policy as the job and the API read it."""

    id: int
    project: str
    project_id: int
    schedule: str
    rules: tuple[dict[str, Any], ...]  # Harbor's JSON shape, disabled rules too

    @property
    def policy(self) -> RetentionPolicy:
        parsed, problems = parse_retention({"schedule": self.schedule,
                                            "rules": list(self.rules)})
        if parsed is None:  # checked when the rules loaded; a stored row is always valid
            raise ValueError(f"stored retention policy {self.id} is invalid: {problems}")
        return parsed


def sync_rules(rules: Rules, now: float | None = None) -> list[str]:
    """Make the stored policies equal to the rules file's; return the projects changed.
    Call inside the rules sync's transaction."""
    now = time.time() if now is None else now
    wanted = {project.name: project.retention for project in rules.projects
              if project.retention is not None}
    changed = []
    for name, policy in wanted.items():
        rules_json = json.dumps([rule.as_harbor() for rule in policy.rules],
                                separators=(",", ":"))
        row = RetentionPolicyRow.get_or_none(RetentionPolicyRow.project == name)
        if row is None:
            RetentionPolicyRow.create(project=name, rules_json=rules_json,
                                      schedule=policy.schedule, source=RULES,
                                      created_at=now, updated_at=now)
            changed.append(name)
        elif (row.rules_json, row.schedule) != (rules_json, policy.schedule):
            RetentionPolicyRow.update(rules_json=rules_json, schedule=policy.schedule,
                                      updated_at=now).where(
                RetentionPolicyRow.id == row.id).execute()
            changed.append(name)
    gone = (RetentionPolicyRow.delete()
            .where((RetentionPolicyRow.source == RULES)
                   & RetentionPolicyRow.project.not_in(list(wanted) or [""])))
    gone.execute()
    return changed


def _view(row: RetentionPolicyRow, project_ids: Mapping[str, int]) -> PolicyView:
    return PolicyView(id=row.id, project=row.project,
                      project_id=project_ids.get(row.project, 0), schedule=row.schedule,
                      rules=tuple(json.loads(row.rules_json or "[]")))


def _project_ids(names: Iterable[str]) -> dict[str, int]:
    names = list(names)
    if not names:
        return {}
    return {row.name: row.id for row in Project.select(Project.id, Project.name)
            .where(Project.name.in_(names))}


def policy(policy_id: int) -> PolicyView | None:
    row = RetentionPolicyRow.get_or_none(RetentionPolicyRow.id == policy_id)
    return _view(row, _project_ids([row.project])) if row is not None else None


def policy_for_project(project: str) -> PolicyView | None:
    row = RetentionPolicyRow.get_or_none(RetentionPolicyRow.project == project)
    return _view(row, _project_ids([project])) if row is not None else None


def policies() -> list[PolicyView]:
    rows = list(RetentionPolicyRow.select().order_by(RetentionPolicyRow.project))
    ids = _project_ids(row.project for row in rows)
    return [_view(row, ids) for row in rows]


def policy_ids() -> dict[str, int]:
    """project -> retention policy id (the projects' `retention_id` metadata)."""
    return {row.project: row.id for row in
            RetentionPolicyRow.select(RetentionPolicyRow.id, RetentionPolicyRow.project)}


# -- activity -----------------------------------------------------------------------------------
# Written out rather than built per call: these run in the recorder's transaction for every
# batch of pushes and pulls, where peewee building the SQL cost several times the query.
_SELECT_ARTIFACTS = ("SELECT repository, digest, pushed_at, pulled_at FROM artifact_activity "
                     "WHERE repository = {p} AND digest IN ({many})")
_SELECT_TAGS = ("SELECT repository, tag, digest, pushed_at FROM tag_activity "
                "WHERE repository = {p} AND {column} IN ({many})")
_UPSERT_ARTIFACT = ("INSERT INTO artifact_activity (repository, digest, pushed_at, pulled_at) "
                    "VALUES ({p}, {p}, {p}, {p}) ON CONFLICT (repository, digest) DO UPDATE "
                    "SET pushed_at = excluded.pushed_at, pulled_at = excluded.pulled_at")
_UPSERT_TAG = ("INSERT INTO tag_activity (repository, tag, digest, pushed_at) "
               "VALUES ({p}, {p}, {p}, {p}) ON CONFLICT (repository, tag) DO UPDATE "
               "SET digest = excluded.digest, pushed_at = excluded.pushed_at")
_DELETE_ARTIFACT = "DELETE FROM artifact_activity WHERE repository = {p} AND digest = {p}"
_DELETE_TAG = "DELETE FROM tag_activity WHERE repository = {p} AND tag = {p}"


def _sql(template: str, count: int = 0, **names: str) -> str:
    p = database.param
    return template.format(p=p, many=", ".join([p] * count), **names)


def load_activity(artifact_keys: Iterable[tuple[str, str]], tag_keys: Iterable[tuple[str, str]],
                  deleted: Iterable[tuple[str, str]]
                  ) -> tuple[dict[tuple[str, str], tuple[int | None, int | None]],
                             dict[tuple[str, str], tuple[str, int]]]:
    """The rows a batch touches: (repository, digest) -> (pushed_at, pulled_at), and
    (repository, tag) -> (digest, pushed_at), the tags of `deleted` digests included."""
    artifacts: dict[tuple[str, str], tuple[int | None, int | None]] = {}
    tags: dict[tuple[str, str], tuple[str, int]] = {}
    for repository, digests in _by_repository(artifact_keys).items():
        cursor = database.execute_sql(_sql(_SELECT_ARTIFACTS, len(digests)),
                                      (repository, *digests))
        for repo, digest, pushed, pulled in cursor.fetchall():
            artifacts[(repo, digest)] = (pushed, pulled)
    for column, keys in (("tag", tag_keys), ("digest", deleted)):
        for repository, values in _by_repository(keys).items():
            cursor = database.execute_sql(_sql(_SELECT_TAGS, len(values), column=column),
                                          (repository, *values))
            for repo, tag, digest, pushed in cursor.fetchall():
                tags[(repo, tag)] = (digest, pushed)
    return artifacts, tags


def save_activity(artifacts: Mapping[tuple[str, str], Any],
                  tags: Mapping[tuple[str, str], Any]) -> None:
    """Write back what the fold produced; a None value deletes the row. Values carry
    `pushed_at`/`pulled_at` (artifacts) and `digest`/`pushed_at` (tags)."""
    for (repository, digest), row in artifacts.items():
        if row is None:
            database.execute_sql(_sql(_DELETE_ARTIFACT), (repository, digest))
        else:
            database.execute_sql(_sql(_UPSERT_ARTIFACT),
                                 (repository, digest, row.pushed_at, row.pulled_at))
    for (repository, tag), row in tags.items():
        if row is None:
            database.execute_sql(_sql(_DELETE_TAG), (repository, tag))
        else:
            database.execute_sql(_sql(_UPSERT_TAG),
                                 (repository, tag, row.digest, row.pushed_at))


def repository_activity(repository: str
                        ) -> tuple[dict[str, tuple[int | None, int | None]],
                                   dict[str, tuple[str, int]]]:
    """Everything recorded of one repository: digest -> (pushed_at, pulled_at), and
    tag -> (digest, pushed_at)."""
    artifacts = {row.digest: (row.pushed_at, row.pulled_at) for row in
                 ArtifactActivity.select().where(ArtifactActivity.repository == repository)}
    tags = {row.tag: (row.digest, row.pushed_at) for row in
            TagActivity.select().where(TagActivity.repository == repository)}
    return artifacts, tags


def backdate(repository: str, seconds: int, *, pulls: bool = False) -> int:
    """Move the recorded push (or pull) times of a repository `seconds` into the past; for
    operators importing history and for tests of the day-based templates."""
    if pulls:
        return (ArtifactActivity.update(pulled_at=ArtifactActivity.pulled_at - seconds)
                .where((ArtifactActivity.repository == repository)
                       & ArtifactActivity.pulled_at.is_null(False)).execute())
    done = (ArtifactActivity.update(pushed_at=ArtifactActivity.pushed_at - seconds)
            .where((ArtifactActivity.repository == repository)
                   & ArtifactActivity.pushed_at.is_null(False)).execute())
    return done + (TagActivity.update(pushed_at=TagActivity.pushed_at - seconds)
                   .where(TagActivity.repository == repository).execute())


def _by_repository(keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for repository, item in keys:
        out.setdefault(repository, []).append(item)
    return out
