"""One claiming mechanism for every kind of work: the same contract for deliveries and for
jobs (scans, replication tasks, retention runs), on SQLite and on PostgreSQL.

The shape of huey's StorageTests: `QueueContract` is written once; each kind of work (and each
backend, through the `store` fixture) runs all of it.
"""

from __future__ import annotations

import multiprocessing
import time

import pytest

from sidecar.store import clock
from sidecar.store import db as store_db
from sidecar.store import delivery_queue
from sidecar.store import jobs
from sidecar.store.models import FAILED
from sidecar.store.models import PENDING
from sidecar.store.models import RUNNING
from sidecar.store.models import SENDING
from sidecar.store.models import SUCCEEDED
from sidecar.store.models import Attempt
from sidecar.store.models import Job

LEASE = 60.0


@pytest.fixture
def store(empty_store_url):
    url = empty_store_url
    db = store_db.bind(url)
    db.connect(reuse_if_open=True)
    yield url
    db.close()


class QueueContract:
    """What every kind of queued work gets from store.jobqueue."""

    running: str

    def add(self, count: int, max_attempts: int = 3) -> None:
        raise NotImplementedError

    def queue(self):
        raise NotImplementedError

    def claim(self, limit: int, lease: float = LEASE, now: float | None = None) -> list:
        return self.queue().claim(limit, lease, now)

    def row(self, item):
        return type(item).get_by_id(item.id)

    def test_claim_takes_due_work_once_and_respects_limit(self, store):
        self.add(5)
        first = self.claim(2)
        second = self.claim(10)
        assert len(first) == 2 and len(second) == 3
        assert not {r.id for r in first} & {r.id for r in second}
        assert self.claim(10) == []
        assert {self.row(r).status for r in first + second} == {self.running}

    def test_claims_from_racing_processes_never_overlap(self, store):
        self.add(30)
        context = multiprocessing.get_context("spawn")
        start_at = time.time() + 1.5
        with context.Pool(3) as pool:
            results = pool.starmap(_claim_all, [(store, type(self).__name__, start_at)] * 3)
        claimed = [i for result in results for i in result]
        assert len(claimed) == 30 and len(set(claimed)) == 30

    def test_lease_expiry_counts_as_an_attempt(self, store):
        self.add(1)
        [item] = self.claim(1, lease=5)
        assert self.claim(1, now=clock.now() + 1) == []  # lease still running
        [again] = self.claim(1, now=clock.now() + 6)  # expired: taken over, one attempt used
        assert again.id == item.id
        assert self.row(again).attempts == 1
        assert "lease expired" in self.row(again).last_error

    def test_only_the_current_holder_may_settle(self, store):
        self.add(1)
        [item] = self.claim(1, lease=5)
        [successor] = self.claim(1, now=clock.now() + 6)
        q = self.queue()
        assert q.settle(item, last_error="stale") is False
        assert q.settle(successor, last_error="fresh") is True
        assert self.row(item).last_error == "fresh"

    def test_release_gives_work_back_without_an_attempt(self, store):
        self.add(2)
        claimed = self.claim(2)
        assert self.queue().release(claimed) == 2
        again = self.claim(2)
        assert sorted(r.id for r in again) == sorted(r.id for r in claimed)
        assert {self.row(r).attempts for r in again} == {0}

    def test_postpone_hides_work_until_its_time(self, store):
        self.add(1)
        [item] = self.claim(1)
        assert self.queue().postpone(item, until=clock.now() + 30)
        assert self.claim(1) == []
        assert [r.id for r in self.claim(1, now=clock.now() + 31)] == [item.id]

    def test_renew_keeps_a_long_claim(self, store):
        self.add(1)
        [item] = self.claim(1, lease=5)
        assert self.queue().renew([item], 60, now=clock.now() + 4) == [True]
        assert self.claim(1, now=clock.now() + 30) == []

    def test_counts_by_status(self, store):
        self.add(3)
        self.claim(1)
        counts = self.queue().counts([PENDING, self.running])
        assert counts[PENDING] == 2 and counts[self.running] == 1


def _claim_all(url: str, contract: str, start_at: float) -> list[int]:
    store_db.bind(url)
    queue = CONTRACTS[contract]().queue()
    while time.time() < start_at:
        time.sleep(0.001)
    got: list[int] = []
    try:
        while batch := queue.claim(2, LEASE):
            got.extend(r.id for r in batch)
    finally:
        Job._meta.database.close()
    return got


class TestDeliveries(QueueContract):
    running = SENDING

    def add(self, count: int, max_attempts: int = 3) -> None:
        delivery_queue.record_events([
            delivery_queue.NewEvent(
                type="PUSH_ARTIFACT", occur_at=1_700_000_000 + n, operator="", project="p",
                repository="p/a", request_id=str(n), payload={"type": "PUSH_ARTIFACT"},
                deliveries=(delivery_queue.NewDelivery(None, "ci", {"type": "http",
                                                                   "address": "http://x"}),))
            for n in range(count)], max_attempts=max_attempts)

    def queue(self):
        return delivery_queue.QUEUE

    def test_expiry_on_the_last_attempt_ends_the_delivery_with_its_attempt(self, store):
        self.add(1, max_attempts=1)
        [item] = self.claim(1, lease=5)
        assert delivery_queue.expire_leases(now=clock.now() + 6) == 1
        row = self.row(item)
        assert row.status == FAILED and "gave up after 1 attempts" in row.last_error
        assert [a.error for a in Attempt.select()] == [delivery_queue.LEASE_EXPIRED]


class TestJobs(QueueContract):
    running = RUNNING

    def add(self, count: int, max_attempts: int = 3) -> None:
        for n in range(count):
            jobs.enqueue("scan", {"n": n}, max_attempts=max_attempts)

    def queue(self):
        return jobs.queue_for(["scan"])

    def test_expiry_on_the_last_attempt_leaves_the_job_for_its_handler(self, store):
        """A job that used up its attempts is claimed once more so its handler can say why it
        gave up (SCANNING_FAILED): the queue never ends it silently."""
        self.add(1, max_attempts=1)
        [item] = self.claim(1, lease=5)
        [again] = self.claim(1, now=clock.now() + 6)
        assert again.id == item.id and again.attempts == 1 and again.max_attempts == 1

    def test_scope_keeps_kinds_apart(self, store):
        jobs.enqueue("scan", {})
        jobs.enqueue("replication", {})
        assert [r.kind for r in jobs.queue_for(["replication"]).claim(5, LEASE)] == [
            "replication"]
        assert [r.kind for r in jobs.queue_for(["scan", "retention"]).claim(5, LEASE)] == [
            "scan"]

    def test_enqueue_is_idempotent_by_key(self, store):
        first = jobs.enqueue("scan", {"digest": "sha256:a"}, key="scan:sha256:a")
        assert first is not None
        assert jobs.enqueue("scan", {"digest": "sha256:a"}, key="scan:sha256:a") is None
        assert Job.select().count() == 1
        assert jobs.find("scan:sha256:a").id == first

    def test_run_at_delays_a_job(self, store):
        jobs.enqueue("retention", {}, run_at=clock.now() + 60)
        assert jobs.queue_for(["retention"]).claim(1, LEASE) == []
        assert len(jobs.queue_for(["retention"]).claim(1, LEASE, now=clock.now() + 61)) == 1

    def test_checkpoint_and_finish_check_the_claim(self, store):
        self.add(1)
        q = self.queue()
        [item] = jobs.claim(q, 1, 5)
        assert item.started_at is not None
        assert jobs.checkpoint(q, item, state={"scan_id": "abc"}, log=["submitted"])
        [successor] = jobs.claim(q, 1, 5, now=clock.now() + 6)
        assert successor.state == {"scan_id": "abc"}  # taken over: resumes from there
        assert not jobs.checkpoint(q, item, state={"scan_id": "other"})
        assert not jobs.finish(q, item, SUCCEEDED)
        assert jobs.finish(q, successor, SUCCEEDED, result={"total": 3})
        view = jobs.get(successor.id, with_log=True)
        assert view.status == SUCCEEDED and view.result == {"total": 3}
        assert view.finished_at is not None and "submitted" in view.log

    def test_finish_with_retry_at_puts_the_job_back(self, store):
        self.add(1)
        q = self.queue()
        [item] = jobs.claim(q, 1, LEASE)
        assert jobs.finish(q, item, FAILED, reason="registry down",
                           retry_at=clock.now() + 30)
        view = jobs.get(item.id)
        assert (view.status, view.attempts, view.last_error) == (PENDING, 1, "registry down")
        assert jobs.claim(q, 1, LEASE) == []

    def test_stop_request_wakes_a_waiting_job(self, store):
        job_id = jobs.enqueue("scan", {}, run_at=clock.now() + 3600)
        assert jobs.request_stop(job_id).stop_requested
        [item] = jobs.claim(self.queue(), 1, LEASE)
        assert item.id == job_id and item.stop_requested


CONTRACTS = {"TestDeliveries": TestDeliveries, "TestJobs": TestJobs}


def test_ids_only_grow_after_deletes(store):
    """Harbor never hands a deleted resource's id to a new one; neither do we."""
    first = jobs.enqueue("scan", {})
    second = jobs.enqueue("scan", {})
    Job.delete().where(Job.id == second).execute()
    third = jobs.enqueue("scan", {})
    assert first < second < third


def test_old_sqlite_store_is_migrated_to_ids_that_only_grow(tmp_path):
    """A store made before AUTOINCREMENT keeps its rows and their links, then stops reusing."""
    from sidecar.store.models import Policy
    from sidecar.store.models import Project

    url = f"sqlite:///{tmp_path / 'old.db'}"
    db = store_db.bind(url)
    with db.connection_context():
        Project.create(name="a", created_at=0)
        keep = Project.create(name="b", created_at=0)
        Policy.create(project=keep, name="ci", created_at=0, updated_at=0)
        # what an older sidecar made: the same tables without AUTOINCREMENT, version 2
        db.execute_sql("PRAGMA foreign_keys = OFF")
        for table in ("project", "policy"):
            [sql] = db.execute_sql("SELECT sql FROM sqlite_master WHERE name = ?",
                                   (table,)).fetchone()
            db.execute_sql(sql.replace(" AUTOINCREMENT", "").replace(
                f'"{table}"', f'"{table}_old"', 1))
            db.execute_sql(f'INSERT INTO "{table}_old" SELECT * FROM "{table}"')
            db.execute_sql(f'DROP TABLE "{table}"')
            db.execute_sql(f'ALTER TABLE "{table}_old" RENAME TO "{table}"')
        db.execute_sql("UPDATE schemaversion SET version = 2")
        db.execute_sql("PRAGMA foreign_keys = ON")
        assert "AUTOINCREMENT" not in db.execute_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'project'").fetchone()[0]
    db = store_db.bind(url)
    with db.connection_context():
        for table in ("project", "policy"):
            [sql] = db.execute_sql("SELECT sql FROM sqlite_master WHERE name = ?",
                                   (table,)).fetchone()
            assert "AUTOINCREMENT" in sql
        assert [p.name for p in Project.select().order_by(Project.id)] == ["a", "b"]
        assert Policy.get(Policy.name == "ci").project_id == keep.id
        assert db.execute_sql("PRAGMA foreign_key_check").fetchall() == []
        Project.delete().where(Project.id == keep.id).execute()
        assert Policy.select().count() == 0  # the cascade still works after the rebuild
        assert Project.create(name="c", created_at=0).id > keep.id
