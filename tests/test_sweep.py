"""Old finished deliveries and events are forgotten; anything still owed a send is kept."""

from __future__ import annotations

import time

import pytest

from sidecar.store import db as store_db
from sidecar.store import delivery_queue as queue
from sidecar.store import sweep
from sidecar.store.models import DELIVERED
from sidecar.store.models import FAILED
from sidecar.store.models import Attempt
from sidecar.store.models import Delivery
from sidecar.store.models import Event
from tests.conftest import webhook_rules
from tests.support import clients

DAY = 86400.0


@pytest.fixture
def store(tmp_path):
    db = store_db.bind(f"sqlite:///{tmp_path / 'store.db'}")
    db.connect(reuse_if_open=True)
    yield db
    db.close()


def event(deliveries: int, n: int) -> queue.NewEvent:
    target = {"type": "http", "address": "http://127.0.0.1:9/hook"}
    return queue.NewEvent(
        type="PULL_ARTIFACT", occur_at=1_700_000_000 + n, operator="", project="proj",
        repository="proj/app", request_id=f"r{n}", payload={"type": "PULL_ARTIFACT"},
        deliveries=tuple(queue.NewDelivery(None, "ci", target) for _ in range(deliveries)),
    )


def settle(status: str) -> None:
    [claimed] = queue.claim(1, lease_seconds=30)
    queue.finish(claimed, queue.Outcome(status, 200 if status == DELIVERED else 500, "",
                                        time.time(), 1))


def test_sweep_keeps_what_is_recent_or_still_owed(store):
    now = time.time()
    long_ago = now - 30 * DAY
    # r1 matched no policy, r2 was delivered, r3 failed, r4 is still pending: all old
    queue.record_events([event(0, 1), event(1, 2), event(1, 3), event(1, 4)], 3, now=long_ago)
    settle(DELIVERED)
    settle(FAILED)
    Delivery.update(updated_at=long_ago).execute()
    queue.record_events([event(0, 5), event(1, 6)], 3, now=now)  # recent
    swept = sweep.sweep(cutoff=now - 14 * DAY, now=now)
    assert (swept.deliveries, swept.events) == (2, 3)
    assert {e.request_id for e in Event.select()} == {"r4", "r5", "r6"}
    assert Delivery.select().count() == 2
    orphans = Attempt.select().where(Attempt.delivery.not_in(Delivery.select(Delivery.id)))
    assert orphans.count() == 0


def test_finished_deliveries_go_with_their_attempts(store):
    old = time.time() - 30 * DAY
    queue.record_events([event(1, 1)], 3, now=old)
    settle(FAILED)
    Delivery.update(updated_at=old).execute()
    swept = sweep.sweep(cutoff=time.time() - DAY, now=time.time())
    assert (swept.deliveries, swept.events) == (1, 1)
    assert (Delivery.select().count(), Attempt.select().count(), Event.select().count()) == (
        0, 0, 0)


@pytest.mark.e2e
def test_a_running_sidecar_forgets_old_deliveries(sidecar_factory, receiver, image):
    # retention of about a second, swept every half second
    sidecar = sidecar_factory(
        webhook_rules(receiver.url, auth_header=None, event_types=["PUSH_ARTIFACT"]),
        config={"sidecar": {"retention_days": 1.0 / DAY, "retention_sweep_seconds": 0.5,
                            "delivery": {"backoff_seconds": 0.2, "backoff_max_seconds": 1.0},
                            "rules_poll_seconds": 0.2}})
    layout, _ = image("v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1")
    receiver.wait_for(1)
    sidecar.wait_status(lambda s: s["deliveries"]["delivered"] == 1)
    sidecar.wait_status(lambda s: s["deliveries"]["delivered"] == 0 and not s["recent"])


def test_each_policy_keeps_its_newest_executions(store):
    from sidecar.store.models import Policy
    from sidecar.store.models import Project

    project = Project.create(name="proj", created_at=0)
    busy = Policy.create(project=project, name="busy", created_at=0, updated_at=0)
    quiet = Policy.create(project=project, name="quiet", created_at=0, updated_at=0)
    target = {"type": "http", "address": "http://127.0.0.1:9/hook"}

    def fire(policy, n: int, targets: int = 2) -> None:
        queue.record_events([queue.NewEvent(
            type="PUSH_ARTIFACT", occur_at=n, operator="", project="proj",
            repository="proj/app", request_id=f"{policy.name}{n}", payload={},
            deliveries=tuple(queue.NewDelivery(policy.id, policy.name, target)
                             for _ in range(targets)))], max_attempts=1)

    for n in range(8):
        fire(busy, n)
    fire(quiet, 100)
    for _ in range(16):
        settle(DELIVERED)
    fire(busy, 8)  # still pending: never swept, whatever its rank
    swept = sweep.sweep(cutoff=0, now=time.time(), keep_per_policy=3)
    # busy kept the deliveries of its newest 3 events (8 pending, 7, 6), two targets each
    assert swept.deliveries == 12
    kept = {(d.policy_id, d.event_id) for d in Delivery.select()}
    assert len({e for p, e in kept if p == busy.id}) == 3
    assert Delivery.select().where(Delivery.policy == quiet.id).count() == 2
    assert Attempt.select().count() == 16 - 12 + 0
    assert sweep.sweep(cutoff=0, now=time.time(), keep_per_policy=3).deliveries == 0


def test_old_finished_jobs_go_with_their_tasks_but_a_shown_scan_stays(store):
    from sidecar.store import jobs
    from sidecar.store.models import RUNNING
    from sidecar.store.models import SUCCEEDED
    from sidecar.store.models import ArtifactScan
    from sidecar.store.models import Job
    from sidecar.store.tag_retention_models import RetentionExecution

    now = time.time()
    long_ago = now - 30 * DAY

    def job(kind: str, status: str, parent: int | None = None, when: float = long_ago) -> int:
        job_id = jobs.enqueue(kind, {}, parent=parent, now=when)
        Job.update(status=status, updated_at=when).where(Job.id == job_id).execute()
        return job_id

    old_run = job("retention", SUCCEEDED)
    RetentionExecution.insert(id=old_run, policy=1, project="proj", trigger="MANUAL",
                              created_at=long_ago).execute()
    old_tasks = [job("retention_task", SUCCEEDED, parent=old_run) for _ in range(3)]
    busy_run = job("retention", RUNNING)  # old, but not finished
    busy_task = job("retention_task", SUCCEEDED, parent=busy_run)
    recent = job("replication", SUCCEEDED, when=now)
    old_scan, shown_scan = job("scan", SUCCEEDED), job("scan", SUCCEEDED)
    ArtifactScan.insert(scanner="trivy", digest="sha256:" + "a" * 64, scans=2,
                        latest_job=shown_scan, updated_at=long_ago).execute()

    swept = sweep.sweep(cutoff=now - 14 * DAY, now=now)
    assert swept.jobs == 1 + len(old_tasks) + 1  # the run, its tasks, the superseded scan
    left = {row.id for row in Job.select(Job.id)}
    assert left == {busy_run, busy_task, recent, shown_scan}
    assert old_scan not in left
    assert RetentionExecution.select().count() == 0  # the API lists it no more
