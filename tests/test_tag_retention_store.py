"""Tag retention in the store: the rules sync keeps a project's policy id (its `retention_id`),
recorded events fold into push/pull activity, one run per project at a time, an execution's
status is Harbor's rule over its tasks; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from sidecar.events.model import DELETE_ARTIFACT
from sidecar.events.model import PULL_ARTIFACT
from sidecar.events.model import PUSH_ARTIFACT
from sidecar.events.model import ArtifactEvent
from sidecar.retain.job import _parse_time
from sidecar.retain.recording import record_activity
from sidecar.rules.load import parse_rules
from sidecar.store import db as store_db
from sidecar.store import jobs
from sidecar.store import retention_runs as runs
from sidecar.store import tag_retention as store
from sidecar.store.models import SUCCEEDED
from sidecar.store.models import Job

RULES = """\
projects:
  - name: library
    retention:
      schedule: "0 0 3 * * *"
      rules:
        - template: latestPushedK
          params: {latestPushedK: 3}
          tag_selectors: [{kind: doublestar, decoration: matches, pattern: "**"}]
  - name: other
"""


@pytest.fixture
def database(empty_store_url):
    url = empty_store_url
    db = store_db.bind(url)
    with db.connection_context():
        yield db
    db.close()


def sync(text: str) -> list[str]:
    return store.sync_rules(parse_rules(text, "rules.yaml", {}))


def test_the_sync_keeps_the_policy_id_and_follows_the_file(database):
    assert sync(RULES) == ["library"]
    first = store.policy_for_project("library")
    assert first.schedule == "0 0 3 * * *"
    assert first.rules[0]["params"] == {"latestPushedK": 3}
    assert first.policy.rules[0].value == 3
    assert store.policy_ids() == {"library": first.id}
    assert sync(RULES) == []  # unchanged: nothing written

    assert sync(RULES.replace("latestPushedK: 3", "latestPushedK: 5")) == ["library"]
    again = store.policy_for_project("library")
    assert again.id == first.id and again.rules[0]["params"] == {"latestPushedK": 5}

    sync("projects: [{name: library}]")
    assert store.policy_for_project("library") is None and store.policies() == []


def _event(kind: str, digest: str, at: int, *tags: str) -> ArtifactEvent:
    return ArtifactEvent(type=kind, repository="library/app", digest=digest, operator="u",
                         occur_at=at, tags=tags)


def test_recorded_events_fold_into_push_and_pull_times(database):
    record_activity([_event(PUSH_ARTIFACT, "sha256:a", 100, "v1"),
                     _event(PULL_ARTIFACT, "sha256:a", 150, "v1"),
                     _event(PULL_ARTIFACT, "sha256:a", 120, "v1")])  # older: ignored
    record_activity([_event(PUSH_ARTIFACT, "sha256:a", 200, "v1")])  # same tag, same digest
    artifacts, tags = store.repository_activity("library/app")
    assert artifacts == {"sha256:a": (100, 150)}
    assert tags == {"v1": ("sha256:a", 100)}  # a re-push refreshes neither (Harbor)

    record_activity([_event(PUSH_ARTIFACT, "sha256:b", 300, "v1", "latest")])  # v1 moves
    artifacts, tags = store.repository_activity("library/app")
    assert tags == {"v1": ("sha256:b", 300), "latest": ("sha256:b", 300)}

    record_activity([_event(DELETE_ARTIFACT, "sha256:b", 400)])  # drops it with its tags
    artifacts, tags = store.repository_activity("library/app")
    assert artifacts == {"sha256:a": (100, 150)} and tags == {}

    assert store.backdate("library/app", 50, pulls=True) == 1
    assert store.repository_activity("library/app")[0] == {"sha256:a": (100, 100)}


def test_one_run_per_project_at_a_time(database):
    sync(RULES)
    policy = store.policy_for_project("library")
    first = runs.start_execution(policy, runs.TRIGGER_MANUAL, dry_run=False, operator="admin")
    second = runs.start_execution(policy, runs.TRIGGER_MANUAL, dry_run=True, operator="admin")
    assert runs.earlier_active("library", first) is None
    assert runs.earlier_active("library", second) == first

    # the first planned one task, still pending: the project's run is not over
    task = jobs.enqueue(runs.TASK_KIND, {"repository": "library/app"}, parent=first)
    Job.update(status=SUCCEEDED, finished_at=1.0).where(Job.id == first).execute()
    assert runs.earlier_active("library", second) == first
    assert runs.execution(first).status == runs.RUNNING

    Job.update(status=SUCCEEDED, finished_at=2.0,
               result_json='{"total": 4, "retained": 1, "deleted": 3}').where(
        Job.id == task).execute()
    assert runs.earlier_active("library", second) is None
    view = runs.execution(first)
    assert (view.status, view.total, view.retained, view.deleted) == (runs.SUCCESS, 4, 1, 3)
    total, listed = runs.executions(policy_id=policy.id)
    assert total == 2 and [v.id for v in listed] == [second, first]
    assert listed[0].dry_run is True and listed[0].status == runs.RUNNING
    [row] = runs.tasks(first)[1]
    assert (row.repository, row.status, row.deleted) == ("app", runs.SUCCESS, 3)


def test_an_image_configs_created_time_is_read_as_go_writes_it():
    assert _parse_time("2024-03-01T10:00:00Z") == 1709287200
    assert _parse_time("2024-03-01T10:00:00.123456789Z") == 1709287200
    assert _parse_time("2024-03-01T12:00:00+02:00") == 1709287200
    assert _parse_time("yesterday") is None and _parse_time(None) is None


def test_a_rule_set_that_keeps_nothing_is_recognised(database):
    sync(RULES.replace("latestPushedK: 3", "latestPushedK: 0"))
    assert runs.retains_nothing(store.policy_for_project("library"))
    sync(RULES)
    assert not runs.retains_nothing(store.policy_for_project("library"))
