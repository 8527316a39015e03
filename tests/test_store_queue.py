"""The delivery queue's contract, run against SQLite and PostgreSQL alike.

Every backend must give the same answers: one delivery per target, claims that never hand the
same delivery to two workers, leases that expire, attempts recorded only by the current holder.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from dataclasses import dataclass

import pytest

from sidecar.store import db as store_db
from sidecar.store import delivery_queue as queue
from sidecar.store import target_health
from sidecar.store.models import DELIVERED
from sidecar.store.models import FAILED
from sidecar.store.models import PENDING
from sidecar.store.models import SENDING
from sidecar.store.models import SKIPPED
from sidecar.store.models import Attempt
from sidecar.store.models import Delivery
from sidecar.store.models import Event
from sidecar.store.models import Policy
from sidecar.store.models import Project
from sidecar.store.models import SchemaVersion
from tests.support import postgres

LEASE = 60.0




@dataclass
class Store:
    url: str
    backend: str


@pytest.fixture
def store(empty_store_url):
    url = empty_store_url
    db = store_db.bind(url)
    db.connect(reuse_if_open=True)
    yield Store(url, "sqlite" if url.startswith("sqlite") else "postgresql")
    db.close()


def target(n: int = 0) -> dict:
    return {"type": "http", "address": f"http://127.0.0.1:9/hook{n}",
            "auth_header": "Bearer x", "payload_format": "Default", "skip_cert_verify": False}


def new_event(targets: int = 1, kind: str = "PUSH_ARTIFACT", repo: str = "proj/app",
              n: int = 0) -> queue.NewEvent:
    return queue.NewEvent(
        type=kind, occur_at=1_700_000_000 + n, operator="alice", project="proj",
        repository=repo, request_id=f"req-{n}",
        payload={"type": kind, "occur_at": 1_700_000_000 + n, "operator": "alice"},
        deliveries=tuple(queue.NewDelivery(None, "ci", target(i)) for i in range(targets)),
    )


def outcome(status: str, code: int | None = None, error: str = "",
            retry_at: float | None = None) -> queue.Outcome:
    return queue.Outcome(status=status, status_code=code, error=error, started_at=time.time(),
                         duration_ms=5, response_excerpt="body", retry_at=retry_at)


def _claim_until_empty(url: str | None, start_at: float) -> list[int]:
    """Claim in small batches until nothing is due; the ids this worker got."""
    if url is not None:  # a fresh process: bind the models first
        store_db.bind(url)
    while time.time() < start_at:
        time.sleep(0.001)
    got: list[int] = []
    try:
        while batch := queue.claim(3, LEASE):
            got.extend(d.id for d in batch)
    finally:
        Delivery._meta.database.close()
    return got


class TestStoreContract:
    def test_record_events_creates_one_delivery_per_target(self, store):
        created = queue.record_events(
            [new_event(targets=2, n=1), new_event(targets=0, n=2), new_event(targets=1, n=3)],
            max_attempts=4,
        )
        assert created == 3
        assert Event.select().count() == 3
        rows = list(Delivery.select().order_by(Delivery.id))
        assert [r.target["address"] for r in rows] == [
            "http://127.0.0.1:9/hook0", "http://127.0.0.1:9/hook1", "http://127.0.0.1:9/hook0"]
        assert {r.status for r in rows} == {PENDING}
        assert {r.max_attempts for r in rows} == {4}
        assert {r.attempts for r in rows} == {0}
        assert len({r.uid for r in rows}) == 3  # one stable id each
        first = Event.get(Event.request_id == "req-1")
        assert first.payload == {"type": "PUSH_ARTIFACT", "occur_at": 1_700_000_001,
                                 "operator": "alice"}
        assert Delivery.select().where(Delivery.event == first).count() == 2

    def test_claim_takes_due_work_once_and_respects_limit(self, store):
        queue.record_events([new_event(n=i) for i in range(5)], max_attempts=3)
        first = queue.claim(2, LEASE)
        assert len(first) == 2
        assert all(d.status == SENDING and d.claim_token for d in first)
        assert first[0].event.request_id  # the event comes with the claim
        rest = queue.claim(10, LEASE)
        assert len(rest) == 3
        assert not {d.id for d in first} & {d.id for d in rest}
        assert queue.claim(10, LEASE) == []

    def test_claim_skips_work_not_yet_due(self, store):
        now = time.time()
        queue.record_events([new_event()], max_attempts=3, now=now + 30)
        assert queue.claim(10, LEASE, now=now) == []
        assert len(queue.claim(10, LEASE, now=now + 31)) == 1

    def test_concurrent_claims_from_threads_never_overlap(self, store):
        total = 60
        queue.record_events([new_event(n=i) for i in range(total)], max_attempts=3)
        results: list[list[int]] = []
        lock = threading.Lock()
        start_at = time.time() + 0.2

        def worker():
            got = _claim_until_empty(None, start_at)
            with lock:
                results.append(got)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        claimed = [i for got in results for i in got]
        assert len(results) == 4
        assert len(claimed) == len(set(claimed)) == total
        assert queue.counts()[SENDING] == total

    def test_concurrent_claims_from_processes_never_overlap(self, store):
        total = 60
        queue.record_events([new_event(n=i) for i in range(total)], max_attempts=3)
        context = multiprocessing.get_context("spawn")
        start_at = time.time() + 1.5  # spawned interpreters need a moment to import
        with context.Pool(3) as pool:
            results = pool.starmap(_claim_until_empty, [(store.url, start_at)] * 3, chunksize=1)
        claimed = [i for got in results for i in got]
        assert len(claimed) == len(set(claimed)) == total
        assert queue.counts()[SENDING] == total

    def test_expired_lease_is_taken_over_and_old_holder_records_nothing(self, store):
        now = time.time()
        queue.record_events([new_event()], max_attempts=3, now=now)
        [old] = queue.claim(1, lease_seconds=5, now=now)
        assert queue.claim(1, lease_seconds=5, now=now + 4) == []  # lease still running
        [new] = queue.claim(1, lease_seconds=5, now=now + 6)
        assert new.id == old.id and new.claim_token != old.claim_token
        # the dead holder's send may have reached the endpoint: it counts as an attempt
        assert new.attempts == 1
        assert queue.finish(old, outcome(DELIVERED, 200)) is False
        row = Delivery.get_by_id(old.id)
        assert (row.status, row.attempts, row.claim_token) == (SENDING, 1, new.claim_token)
        assert [a.error for a in Attempt.select()] == [queue.LEASE_EXPIRED]
        assert queue.finish(new, outcome(DELIVERED, 200)) is True
        assert queue.finish(new, outcome(DELIVERED, 200)) is False  # a claim finishes once
        row = Delivery.get_by_id(old.id)
        assert (row.status, row.attempts, row.claim_token) == (DELIVERED, 2, None)
        assert Attempt.select().count() == 2

    def test_a_delivery_that_keeps_killing_its_worker_ends_failed(self, store):
        now = time.time()
        queue.record_events([new_event()], max_attempts=2, now=now)
        [first] = queue.claim(1, lease_seconds=5, now=now)
        [second] = queue.claim(1, lease_seconds=5, now=now + 6)  # first holder died
        assert queue.claim(1, lease_seconds=5, now=now + 12) == []  # so did the second
        row = Delivery.get_by_id(first.id)
        assert (row.status, row.attempts) == (FAILED, 2)
        assert row.last_error.startswith(queue.LEASE_EXPIRED)
        assert "gave up after 2 attempts" in row.last_error

    def test_finish_records_attempts_with_codes_and_errors(self, store):
        queue.record_events([new_event()], max_attempts=3)
        [d] = queue.claim(1, LEASE)
        retry_at = time.time() + 30
        assert queue.finish(d, outcome(PENDING, 503, "abnormal response code: 503", retry_at))
        row = Delivery.get_by_id(d.id)
        assert (row.status, row.attempts, row.last_status_code) == (PENDING, 1, 503)
        assert row.next_attempt_at == pytest.approx(retry_at)
        assert row.finished_at is None and row.claim_token is None
        assert queue.claim(1, LEASE) == []  # backing off
        [d] = queue.claim(1, LEASE, now=retry_at + 1)
        assert d.attempts == 1
        assert queue.finish(d, outcome(FAILED, None, "connection failed: [Errno 111]"))
        row = Delivery.get_by_id(d.id)
        assert (row.status, row.attempts, row.last_status_code) == (FAILED, 2, None)
        assert row.last_error == "connection failed: [Errno 111]"
        assert row.finished_at is not None
        attempts = list(Attempt.select().where(Attempt.delivery == d.id).order_by(Attempt.number))
        assert [(a.number, a.status_code, a.error) for a in attempts] == [
            (1, 503, "abnormal response code: 503"), (2, None, "connection failed: [Errno 111]")]
        assert attempts[0].response_excerpt == "body" and attempts[0].duration_ms == 5
        assert queue.claim(1, LEASE, now=time.time() + 3600) == []  # final

    def test_requeue_sends_again_and_keeps_history(self, store):
        queue.record_events([new_event(), new_event(n=1)], max_attempts=3)
        first, second = queue.claim(2, LEASE)
        queue.finish(first, outcome(DELIVERED, 200))
        uid = Delivery.get_by_id(first.id).uid
        # only finished deliveries are requeued: the one still sending is left alone
        assert queue.requeue([first.id, second.id]) == 1
        row = Delivery.get_by_id(first.id)
        assert (row.status, row.attempts, row.max_attempts) == (PENDING, 1, 4)
        assert row.finished_at is None and row.uid == uid
        [again] = queue.claim(5, LEASE)
        assert again.id == first.id
        queue.finish(again, outcome(DELIVERED, 204))
        numbers = [a.number for a in Attempt.select().where(Attempt.delivery == first.id)
                   .order_by(Attempt.number)]
        assert numbers == [1, 2]
        assert Delivery.get_by_id(first.id).uid == uid
        assert queue.requeue([]) == 0

    def test_deliveries_claimed_while_recorded_read_as_a_claim_reads_them(self, store):
        events = [new_event(targets=0, n=0), new_event(targets=2, n=1),
                  new_event(targets=0, n=2), new_event(targets=1, n=3)]
        created, claimed = queue.record_and_claim(events, 4, claim_limit=2, lease_seconds=30)
        assert created == 3 and len(claimed) == 2
        # arrival order is kept in the ids, and every event row holds its own request
        assert [e.request_id for e in Event.select().order_by(Event.id)] == [
            "req-0", "req-1", "req-2", "req-3"]
        rows = queue._run(queue._CLAIMED, (claimed[0].claim_token,)).fetchall()
        read = {d.id: d for d in map(queue.Claimed, rows)}
        assert sorted(read) == [d.id for d in claimed]
        for mine in claimed:
            theirs = read[mine.id]
            for name in queue.Claimed.__slots__:
                if name != "event":
                    assert getattr(mine, name) == pytest.approx(getattr(theirs, name)), name
            assert (mine.event.id, mine.event.payload, mine.event.request_id) == (
                theirs.event.id, theirs.event.payload, theirs.event.request_id) == (
                theirs.event.id, {"type": "PUSH_ARTIFACT", "occur_at": 1_700_000_001,
                                  "operator": "alice"}, "req-1")
        # the third delivery was left for any sender to claim
        [rest] = queue.claim(5, LEASE)
        assert rest.event.request_id == "req-3" and rest.id not in read

    def test_a_claim_behind_a_skipped_delivery_keeps_its_token_and_lease(self, store):
        """A disabled target's delivery (skipped) ahead of a claimed one in the same batch:
        the claimed row must still be stored with its token and lease, or it would stay
        'sending' for ever (no lease to expire)."""
        policy = Policy.create(project=Project.create(name="proj", created_at=0), name="ci",
                               created_at=0, updated_at=0)
        disabled = target(0)
        failed = target_health.Observed(policy.id, disabled, False, "down")
        target_health.observe([failed], after=1, now=1000.0)
        assert target_health.observe([failed], after=1, now=1002.0)  # now disabled
        event = queue.NewEvent(
            type="PUSH_ARTIFACT", occur_at=1, operator="", project="proj",
            repository="proj/app", request_id="r", payload={},
            deliveries=(queue.NewDelivery(policy.id, "ci", disabled),
                        queue.NewDelivery(policy.id, "ci", target(1))))
        created, [claimed] = queue.record_and_claim([event], 3, claim_limit=5,
                                                    lease_seconds=30)
        rows = {row.target["address"]: row for row in Delivery.select()}
        assert rows[disabled["address"]].status == SKIPPED
        sent = rows[target(1)["address"]]
        assert (sent.id, sent.status, sent.claim_token) == (claimed.id, SENDING,
                                                            claimed.claim_token)
        assert sent.lease_until is not None

    def test_a_batch_of_outcomes_settles_all_but_a_claim_taken_over(self, store):
        now = time.time()
        queue.record_events([new_event(n=i) for i in range(4)], max_attempts=3, now=now)
        [b] = queue.claim(1, lease_seconds=5, now=now)
        a, c, d = queue.claim(3, lease_seconds=600, now=now)
        [b_again] = queue.claim(1, lease_seconds=5, now=now + 6)  # b's lease ran out
        assert b_again.id == b.id
        retry_at = now + 100
        results = [(a, outcome(DELIVERED, 200)), (b, outcome(DELIVERED, 200)),
                   (c, outcome(PENDING, 503, "abnormal response code: 503", retry_at)),
                   (d, outcome(FAILED, 400, "abnormal response code: 400"))]
        assert queue.finish_many(results) == [True, False, True, True]
        rows = {row.id: row for row in Delivery.select()}
        assert (rows[a.id].status, rows[a.id].attempts, rows[a.id].finished_at is None) == (
            DELIVERED, 1, False)
        assert rows[b.id].claim_token == b_again.claim_token  # the new holder's, untouched
        assert (rows[c.id].status, rows[c.id].finished_at) == (PENDING, None)
        assert rows[c.id].next_attempt_at == pytest.approx(retry_at)
        assert (rows[d.id].status, rows[d.id].last_status_code) == (FAILED, 400)
        numbers = sorted((row.delivery_id, row.number, row.error) for row in Attempt.select())
        assert numbers == sorted([(a.id, 1, ""), (b.id, 1, queue.LEASE_EXPIRED),
                                  (c.id, 1, "abnormal response code: 503"),
                                  (d.id, 1, "abnormal response code: 400")])

    def test_counts(self, store):
        assert queue.counts() == {PENDING: 0, SENDING: 0, DELIVERED: 0, FAILED: 0, SKIPPED: 0}
        queue.record_events([new_event(n=i) for i in range(5)], max_attempts=1)
        a, b, c = queue.claim(3, LEASE)
        queue.finish(a, outcome(DELIVERED, 200))
        queue.finish(b, outcome(FAILED, 500, "abnormal response code: 500"))
        assert queue.counts() == {PENDING: 2, SENDING: 1, DELIVERED: 1, FAILED: 1,
                                  SKIPPED: 0}

    def test_migrations_are_idempotent(self, store):
        store_db.bind(store.url)
        store_db.bind(store.url)
        assert [r.version for r in SchemaVersion.select()] == [len(store_db.MIGRATIONS)]


def _bind_once(url: str, start_at: float) -> int:
    while time.time() < start_at:
        time.sleep(0.001)
    db = store_db.bind(url)
    db.close()
    return 1


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_fresh_database_migrated_by_racing_processes(backend, tmp_path, request):
    """Several workers (or sidecars) start at once on an empty database: one schema results."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'race.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        postgres.reset_schema(url)
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 1.5
    with context.Pool(3) as pool:
        assert pool.starmap(_bind_once, [(url, start_at)] * 3, chunksize=1) == [1, 1, 1]
    db = store_db.bind(url)
    with db.connection_context():
        assert [r.version for r in SchemaVersion.select()] == [len(store_db.MIGRATIONS)]
        assert queue.counts()[PENDING] == 0


def test_executor_reopens_a_dropped_postgresql_connection(request):
    """After a PostgreSQL restart every pooled connection is dead: the next call still works."""
    import psycopg2

    from sidecar.store.executor import Executor

    url = request.getfixturevalue("postgres_url")
    postgres.reset_schema(url)
    db = store_db.bind(url)
    executor = Executor()
    executor.run(queue.record_events, [new_event()], 3)
    name = url.rsplit("/", 1)[1]
    with psycopg2.connect(host=postgres.HOST, port=postgres.PORT, user=postgres.USER,
                          dbname="postgres") as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        assert cur.rowcount == 1
    [claimed] = executor.run(queue.claim, 5, LEASE)
    assert executor.run(queue.finish, claimed, outcome(DELIVERED, 200)) is True
    assert executor.run(queue.counts)[DELIVERED] == 1
    db.close()


GEVENT_EXECUTOR_STRESS = """
from gevent import monkey
monkey.patch_all()
import sys
import gevent
from sidecar.store import db as store_db
from sidecar.store import delivery_queue as queue
from sidecar.store.executor import Executor

db = store_db.bind(sys.argv[1])
executor = Executor(4)

def work():
    for _ in range(200):
        executor.run(db.close)  # each call then opens its connection again
        executor.run(queue.counts)

greenlets = [gevent.spawn(work) for _ in range(8)]
done = gevent.joinall(greenlets, timeout=30)
print(f"{len(done)} of {len(greenlets)} finished")
"""


def test_database_threads_of_a_gevent_worker_never_hang(tmp_path):
    """As in a gunicorn gevent worker: many greenlets, four database threads, one database.

    peewee's connect lock, made after gevent patched threading, was a gevent lock; contended
    across the executor's OS threads it lost wake-ups and left threads hung for ever.
    """
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", GEVENT_EXECUTOR_STRESS, f"sqlite:///{tmp_path / 'g.db'}"],
        capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "8 of 8 finished"
