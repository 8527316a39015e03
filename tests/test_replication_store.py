"""Replication in the store: the rules sync keeps ids stable, an execution's status is
Harbor's rule over its tasks, stop reaches every unfinished task; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from sidecar.rules.load import parse_rules
from sidecar.store import db as store_db
from sidecar.store import jobs
from sidecar.store import policies as policy_store
from sidecar.store import replication as store
from sidecar.store import replication_runs as runs
from sidecar.store.models import FAILED
from sidecar.store.models import PENDING
from sidecar.store.models import RUNNING
from sidecar.store.models import STOPPED
from sidecar.store.models import SUCCEEDED
from sidecar.store.models import Job

RULES = """\
registries:
  - {name: dr, url: "https://dr.example.com", credential: {access_key: robot,
     access_secret: "${SECRET}"}}
  - {name: spare, url: "https://spare.example.com"}
replication:
  - {name: to-dr, dest_registry: dr, trigger: {type: event_based}}
  - {name: nightly, dest_registry: spare}
"""


@pytest.fixture
def database(empty_store_url):
    url = empty_store_url
    db = store_db.bind(url)
    with db.connection_context():
        yield db
    db.close()


def sync(text: str, secret: str = "s1") -> None:
    policy_store.sync_rules(parse_rules(text, "rules.yaml", {"SECRET": secret}))


def test_the_sync_keeps_ids_and_follows_the_file(database):
    sync(RULES)
    dr = {r.name: r for r in store.registries()}["dr"]
    to_dr = store.policy_named("to-dr")
    assert dr.access_secret == "s1" and dr.auth_type == "basic"
    assert to_dr.registry_id == dr.id and to_dr.trigger == "event_based"
    assert [p.name for p in store.event_policies()] == ["to-dr"]

    sync(RULES.replace("type: event_based", "type: manual"), secret="s2")
    assert store.policy_named("to-dr").id == to_dr.id
    assert store.registry(dr.id).access_secret == "s2"
    assert store.event_policies() == []

    sync(RULES.replace("  - {name: nightly, dest_registry: spare}\n", ""))
    assert store.policy_named("nightly") is None
    assert [p.name for p in store.policies()] == ["to-dr"]


def _task(execution_id: int, repository: str, status: str, attempts: int = 0) -> int:
    job_id = jobs.enqueue(runs.TASK_KIND, {"source": repository, "references": ["v1"]},
                          parent=execution_id)
    Job.update(status=status, attempts=attempts,
               finished_at=100.0 if status in (SUCCEEDED, FAILED, STOPPED) else None
               ).where(Job.id == job_id).execute()
    return job_id


def _planned(execution_id: int) -> None:
    Job.update(status=SUCCEEDED, finished_at=50.0).where(Job.id == execution_id).execute()


def test_an_executions_status_is_harbors_rule_over_its_tasks(database):
    sync(RULES)
    policy = store.policy_named("nightly")
    execution_id = runs.start_execution(policy, "MANUAL", operator="admin")
    assert runs.execution(execution_id).status == runs.RUNNING  # still planning
    _planned(execution_id)
    assert runs.execution(execution_id).status == runs.SUCCESS  # nothing to do
    ok = _task(execution_id, "p/a", SUCCEEDED)
    retrying = _task(execution_id, "p/b", PENDING, attempts=1)
    view = runs.execution(execution_id)
    assert (view.status, view.total, view.succeed, view.in_progress) == (runs.RUNNING, 2, 1, 1)
    Job.update(status=STOPPED, finished_at=120.0).where(Job.id == retrying).execute()
    assert runs.execution(execution_id).status == runs.STOPPED
    _task(execution_id, "p/c", FAILED, attempts=3)
    view = runs.execution(execution_id)
    assert (view.status, view.failed, view.stopped, view.end_time) == (runs.ERROR, 1, 1, 120.0)
    total, tasks = runs.tasks(execution_id, statuses=[runs.SUCCESS])
    assert total == 1 and tasks[0].id == ok
    assert runs.task_outcomes()[runs.ERROR] == 1


def test_listing_filters_by_policy_trigger_and_status(database):
    sync(RULES)
    nightly, to_dr = store.policy_named("nightly"), store.policy_named("to-dr")
    manual = runs.start_execution(nightly, "MANUAL", operator="admin")
    event = runs.start_execution(to_dr, "EVENT", operator="alice",
                                 resource={"repository": "p/a", "tags": ["v1"]})
    _planned(manual)
    assert runs.executions()[0] == 2
    assert [v.id for v in runs.executions(policy_id=to_dr.id)[1]] == [event]
    assert [v.id for v in runs.executions(trigger="MANUAL")[1]] == [manual]
    assert [v.id for v in runs.executions(status=runs.SUCCESS)[1]] == [manual]
    assert [v.id for v in runs.executions(status=runs.RUNNING)[1]] == [event]
    assert runs.active_executions(to_dr.id, other_than=0) == 1


def test_stop_reaches_the_execution_and_every_unfinished_task(database):
    sync(RULES)
    execution_id = runs.start_execution(store.policy_named("nightly"), "MANUAL",
                                        operator="admin")
    done = _task(execution_id, "p/a", SUCCEEDED)
    waiting = _task(execution_id, "p/b", PENDING)
    working = _task(execution_id, "p/c", RUNNING)
    assert runs.stop_execution(execution_id)
    flags = {row.id: row.stop_requested for row in Job.select()}
    assert flags == {execution_id: True, done: False, waiting: True, working: True}
    assert not runs.stop_execution(9999)


def test_a_keyed_run_is_started_once(database):
    sync(RULES)
    policy = store.policy_named("nightly")
    first = runs.start_execution(policy, "SCHEDULE", operator="harbor-jobservice",
                                 key="schedule:nightly:1000")
    again = runs.start_execution(policy, "SCHEDULE", operator="harbor-jobservice",
                                 key="schedule:nightly:1000")
    assert first is not None and again is None
    assert runs.executions()[0] == 1


def test_scheduled_policies_are_schedules_of_one_execution_per_fire_time(database):
    from sidecar.jobs.scheduler import due
    from sidecar.jobs.scheduler import enqueue_due
    from sidecar.replicate.schedules import replication_schedules

    sync(RULES.replace("  - {name: nightly, dest_registry: spare}",
                       "  - {name: nightly, dest_registry: spare, trigger: {type: scheduled,\n"
                       "     trigger_settings: {cron: \"0 0 2 * * *\"}}}"))
    [schedule] = replication_schedules()
    policy = store.policy_named("nightly")
    assert (schedule.name, schedule.cron, schedule.kind) == (
        f"replication:{policy.id}", "0 0 2 * * *", runs.EXECUTION_KIND)
    assert schedule.payload["trigger"] == "SCHEDULE"
    two_am = 1_800_000_000 - 1_800_000_000 % 86400 + 2 * 3600
    pending = due([schedule], two_am + 30, grace=600)
    assert enqueue_due(pending, two_am + 30) == 1
    assert enqueue_due(pending, two_am + 31) == 0, "another worker fired it already"
    [job] = Job.select().where(Job.kind == runs.EXECUTION_KIND)
    assert job.operator == "harbor-jobservice"
    runs.ensure_execution(job.id, policy.id, policy.name, "SCHEDULE", job.created_at)
    runs.ensure_execution(job.id, policy.id, policy.name, "SCHEDULE", job.created_at)
    [view] = runs.executions()[1]
    assert (view.id, view.trigger, view.policy_id) == (job.id, "SCHEDULE", policy.id)
    sync(RULES.replace("  - {name: nightly, dest_registry: spare}",
                       "  - {name: nightly, dest_registry: spare, enabled: false, trigger:\n"
                       "     {type: scheduled, trigger_settings: {cron: \"0 0 2 * * *\"}}}"))
    assert replication_schedules() == [], "a disabled policy has no schedule (as Harbor)"
