"""From inferred events to recorded rows: which deliveries are made, and that none are lost."""

from __future__ import annotations

import json
import threading
import time

import pytest
from peewee import OperationalError

from sidecar.events.model import DELETE_ARTIFACT
from sidecar.events.model import PULL_ARTIFACT
from sidecar.events.model import PUSH_ARTIFACT
from sidecar.events.model import ArtifactEvent
from sidecar.record.late import LateEvents
from sidecar.record.recorder import Recorder
from sidecar.record.recorder import RecorderSettings
from sidecar.record.recorder import build_records
from sidecar.store import db as store_db
from sidecar.store import jobs
from sidecar.store.executor import Executor
from sidecar.store.models import Delivery
from sidecar.store.models import Event
from sidecar.store.models import Job
from sidecar.store.models import Policy
from sidecar.store.models import Project
from sidecar.store.models import Repository
from sidecar.store.policies import ProjectPolicies
from sidecar.store.policies import StoredPolicy

HOOK_A = {"type": "http", "address": "http://a.example/hook", "auth_header": "Bearer a"}
HOOK_B = {"type": "http", "address": "http://b.example/hook"}


def event(kind: str = PUSH_ARTIFACT, repository: str = "proj/app", n: int = 0) -> ArtifactEvent:
    return ArtifactEvent(type=kind, repository=repository, digest=f"sha256:{n:064x}",
                         operator="alice", occur_at=1_700_000_000 + n, tags=("v1",))


def policy(pid: int = 1, name: str = "ci", enabled: bool = True,
           types=(PUSH_ARTIFACT, DELETE_ARTIFACT), targets=(HOOK_A,)) -> StoredPolicy:
    return StoredPolicy(id=pid, project="proj", name=name, enabled=enabled,
                        event_types=tuple(types), targets=tuple(targets))


def projects(*policies: StoredPolicy, name: str = "proj", public: bool = False) -> dict:
    return {name: ProjectPolicies(name, public, tuple(policies))}


def deliveries(records) -> list[tuple[int | None, str, str]]:
    return [(d.policy_id, d.policy_name, d.target["address"])
            for r in records for d in r.deliveries]


class TestBuildRecords:
    def test_one_delivery_per_target_of_each_matching_policy(self):
        records = build_records(
            [event()],
            projects(policy(1, "ci", targets=(HOOK_A, HOOK_B)), policy(2, "audit")),
            {}, "registry.example", True)
        assert deliveries(records) == [
            (1, "ci", "http://a.example/hook"), (1, "ci", "http://b.example/hook"),
            (2, "audit", "http://a.example/hook")]
        [record] = records
        assert (record.type, record.project, record.repository) == (PUSH_ARTIFACT, "proj",
                                                                    "proj/app")
        assert record.payload["event_data"]["resources"][0]["resource_url"] == (
            "registry.example/proj/app:v1")
        assert record.deliveries[0].target == HOOK_A

    def test_no_project_no_deliveries(self):
        [record] = build_records([event(repository="other/app")], projects(policy()), {},
                                 "h", True)
        assert record.deliveries == () and record.project == ""
        assert record.payload["type"] == PUSH_ARTIFACT  # the event itself is still recorded

    def test_single_segment_repository_has_no_project(self):
        # "alpine" has no namespace: even a project named "alpine" does not match it
        [record] = build_records([event(repository="alpine")],
                                 projects(policy(), name="alpine"), {}, "h", True)
        assert record.deliveries == () and record.project == ""

    def test_disabled_policy_and_unsubscribed_type_make_no_delivery(self):
        records = build_records(
            [event(PUSH_ARTIFACT), event(PULL_ARTIFACT, n=1)],
            projects(policy(1, "off", enabled=False),
                     policy(2, "push-only", types=[PUSH_ARTIFACT])),
            {}, "h", True)
        push, pull = records
        assert deliveries([push]) == [(2, "push-only", "http://a.example/hook")]
        assert pull.deliveries == ()

    def test_global_switch_off_records_event_without_deliveries(self):
        [record] = build_records([event()], projects(policy()), {}, "h", False)
        assert record.deliveries == ()
        assert record.project == "proj"

    def test_public_project_and_first_seen_date(self):
        [record] = build_records([event()], projects(policy(), public=True),
                                 {"proj/app": 1_600_000_000}, "h", True)
        repo = record.payload["event_data"]["repository"]
        assert repo["repo_type"] == "public" and repo["date_created"] == 1_600_000_000


class FlakyExecutor(Executor):
    """Fails the first `failures` calls, as a database that is down for a while would."""

    def __init__(self, failures: int):
        super().__init__()
        self.failures = failures
        self.calls = 0

    def run(self, fn, *args, **kwargs):
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError("database is unavailable")
        return super().run(fn, *args, **kwargs)


@pytest.fixture
def store(tmp_path):
    db = store_db.bind(f"sqlite:///{tmp_path / 'rec.db'}")
    now = time.time()
    project = Project.create(name="proj", created_at=now)
    Policy.create(project=project, name="ci", event_types_json=json.dumps([PUSH_ARTIFACT]),
                  targets_json=json.dumps([HOOK_A, HOOK_B]), created_at=now, updated_at=now)
    yield db
    db.close()


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


@pytest.mark.parametrize(("keep_unmatched", "rows"), [(False, 1), (True, 3)])
def test_recorder_writes_events_and_deliveries_and_wakes_dispatch(store, keep_unmatched, rows):
    woken: list[int] = []
    recorder = Recorder(Executor(), RecorderSettings(hostname="h", batch_interval=0.01,
                                                     keep_unmatched=keep_unmatched),
                        on_recorded=woken.append)
    recorder.start()
    try:
        recorder.submit([event(n=1), event(PULL_ARTIFACT, n=2), event(repository="alpine", n=3)])
        wait_until(lambda: recorder.recorded == 3)
    finally:
        recorder.stop()
    # the pull and the project-less push get no delivery: rows only when asked for
    assert Event.select().count() == rows
    assert Delivery.select().count() == 2  # the push, to both targets
    assert sum(woken) == 2


def test_recorder_keeps_events_while_the_database_fails(store):
    executor = FlakyExecutor(failures=3)
    recorder = Recorder(executor, RecorderSettings(batch_interval=0.01, retry_interval=0.02))
    recorder.start()
    try:
        recorder.submit([event(n=i) for i in range(5)])
        wait_until(lambda: recorder.recorded == 5)
        recorder.submit([event(n=i) for i in range(5, 8)])
        wait_until(lambda: recorder.recorded == 8)
    finally:
        recorder.stop()
    assert executor.calls > 3
    assert sorted(e.occur_at - 1_700_000_000 for e in Event.select()) == list(range(8))
    assert Delivery.select().count() == 16
    assert recorder.dropped == 0 and recorder.backlog == 0


def test_stop_flushes_what_is_buffered(store):
    recorder = Recorder(Executor(), RecorderSettings())  # never started: only stop() writes
    recorder.submit([event(n=i) for i in range(3)])
    assert Event.select().count() == 0
    recorder.stop()
    assert Event.select().count() == 3


def test_full_buffer_drops_and_counts(store):
    recorder = Recorder(Executor(), RecorderSettings(max_buffer=2))
    recorder.submit([event(n=i) for i in range(3)])
    assert (recorder.backlog, recorder.dropped) == (2, 1)


def test_submit_from_many_threads_loses_nothing(store):
    recorder = Recorder(Executor(), RecorderSettings(batch_interval=0.005, batch_size=7))
    recorder.start()
    try:
        def produce(base):
            for i in range(25):
                recorder.submit([event(n=base + i)])

        threads = [threading.Thread(target=produce, args=(k * 100,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wait_until(lambda: recorder.recorded == 100)
    finally:
        recorder.stop()
    assert Event.select().count() == 100


def test_triggers_queue_jobs_with_the_batch_and_a_broken_one_loses_no_event(store):
    triggered: list[int] = []
    recorder = Recorder(Executor(), RecorderSettings(batch_interval=0.01, keep_unmatched=True))

    def queue_a_job(batch) -> int:
        return sum(jobs.enqueue("demo", {"occur_at": e.occur_at}) is not None for e in batch
                   if e.type == PUSH_ARTIFACT)

    def broken(batch) -> int:
        jobs.enqueue("half-done", {})  # rolled back with its savepoint
        raise RuntimeError("a bug in a trigger")

    recorder.add_trigger({PUSH_ARTIFACT}, broken)
    recorder.add_trigger({PUSH_ARTIFACT}, queue_a_job, started=triggered.append)
    recorder.start()
    try:
        recorder.submit([event(n=1), event(PULL_ARTIFACT, n=2)])
        wait_until(lambda: recorder.recorded == 2)
    finally:
        recorder.stop()
    assert Event.select().count() == 2, "every event recorded, the broken trigger aside"
    assert [j.kind for j in Job.select()] == ["demo"]
    assert triggered == [1]


class Slots:
    """A dispatcher with `free` sender slots, as the recorder's handoff sees it."""

    lease = 30.0

    def __init__(self, free: int):
        self.free = free
        self.taken: list = []
        self.returned = 0

    def reserve(self, limit: int) -> int:
        got, self.free = min(limit, self.free), self.free - min(limit, self.free)
        return got

    def take(self, deliveries: list, reserved: int) -> None:
        self.taken.extend(deliveries)
        self.returned += reserved - len(deliveries)
        self.free += reserved - len(deliveries)


def test_deliveries_are_claimed_for_the_dispatcher_up_to_its_free_slots(store):
    slots = Slots(free=1)
    woken: list[int] = []
    recorder = Recorder(Executor(), RecorderSettings(hostname="h"), on_recorded=woken.append,
                        handoff=slots)
    recorder.submit([event(n=1)])  # one push: two targets, one free slot
    recorder.flush()
    [handed] = slots.taken
    row = Delivery.get_by_id(handed.id)
    assert (row.status, row.claim_token) == ("sending", handed.claim_token)
    assert row.lease_until == pytest.approx(time.time() + slots.lease, abs=5)
    assert handed.event.payload["type"] == PUSH_ARTIFACT
    assert handed.target["address"] == row.target["address"]
    [other] = Delivery.select().where(Delivery.id != handed.id)
    assert (other.status, other.claim_token) == ("pending", None)  # for the poll to claim
    assert woken == [1]  # the dispatcher is woken for the one nobody claimed


def test_a_failed_write_gives_the_reserved_slots_back(store):
    slots = Slots(free=4)
    recorder = Recorder(FlakyExecutor(failures=1), RecorderSettings(), handoff=slots)
    recorder.submit([event(n=1)])
    assert recorder._write_batch() is False
    assert (slots.taken, slots.returned) == ([], 4)
    assert recorder._write_batch() is True
    assert len(slots.taken) == 2 and slots.returned == 4 + 2
    assert Delivery.select().where(Delivery.status == "sending").count() == 2


class CountingExecutor(Executor):
    """Counts the writes (each a transaction); slow ones, as under load."""

    def __init__(self, delay: float = 0.0):
        super().__init__()
        self.writes = 0
        self.delay = delay

    def run(self, fn, *args, **kwargs):
        self.writes += 1
        time.sleep(self.delay)
        return super().run(fn, *args, **kwargs)


def test_a_steady_stream_shares_writes_and_a_lone_event_is_written_at_once(store):
    executor = CountingExecutor(delay=0.001)
    recorder = Recorder(executor, RecorderSettings(gather_window=0.3))
    recorder.start()
    try:
        started = time.monotonic()
        recorder.submit([event(n=0)])
        wait_until(lambda: recorder.recorded == 1)
        assert time.monotonic() - started < 0.2  # not held for the window
        for n in range(1, 101):  # 1 event per ms for 100 ms: load
            recorder.submit([event(n=n)])
            time.sleep(0.001)
        wait_until(lambda: recorder.recorded == 101)
    finally:
        recorder.stop()
    assert Event.select().count() == 101
    assert executor.writes <= 30, executor.writes  # one write per event without the window


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pull(repository: str = "proj/app", n: int = 0, at: int = 0) -> ArtifactEvent:
    return ArtifactEvent(type=PULL_ARTIFACT, repository=repository, digest=f"sha256:{n:064x}",
                         operator="alice", occur_at=1_700_000_000 + at)


def late_pulls(clock=None) -> LateEvents:
    return LateEvents({PULL_ARTIFACT}, key=lambda e: (e.repository, e.digest), seconds=10,
                      clock=clock or time.monotonic)


class TestLateEvents:
    def test_keeps_the_latest_event_of_each_key_and_nothing_else(self):
        late = late_pulls()
        late.keep([pull(n=1, at=1), event(PUSH_ARTIFACT, n=1), pull(n=2, at=2), pull(n=1, at=3)])
        assert [(e.digest[-1], e.occur_at % 10) for e in late.take()] == [("1", 3), ("2", 2)]
        assert late.take() == [] and len(late) == 0

    def test_due_once_the_oldest_has_waited(self):
        clock = Clock()
        late = late_pulls(clock)
        assert not late.due()
        late.keep([pull(n=1)])
        clock.now += 6
        late.keep([pull(n=2)])  # does not restart the wait
        assert not late.due()
        clock.now += 4
        assert late.due()
        late.take()
        assert not late.due()

    def test_given_back_events_never_replace_newer_ones(self):
        late = late_pulls()
        late.keep([pull(n=1, at=1), pull(n=2, at=1)])
        taken = late.take()
        late.keep([pull(n=1, at=5)])  # arrived while the write failed
        late.give_back(taken)
        assert sorted((e.digest[-1], e.occur_at % 10) for e in late.take()) == [
            ("1", 5), ("2", 1)]


class TestLateTrigger:
    """A trigger that may see pulls late (retention's pull times)."""

    def recorder(self, executor=None, **settings) -> tuple[Recorder, list, LateEvents]:
        seen: list[list[tuple[str, int]]] = []
        recorder = Recorder(executor or CountingExecutor(), RecorderSettings(**settings))
        late = late_pulls()
        recorder.add_trigger(
            {PUSH_ARTIFACT, PULL_ARTIFACT, DELETE_ARTIFACT},
            lambda batch: seen.append([(e.type, e.occur_at % 100) for e in batch]) or 0,
            late=late)
        return recorder, seen, late

    def test_pulls_nobody_wants_open_no_transaction_until_something_is_written(self, store):
        recorder, seen, late = self.recorder()
        recorder.submit([pull(n=1, at=1), pull(n=1, at=2), pull(n=2, at=3)])
        recorder._write_batch()
        assert seen == [] and Event.select().count() == 0 and len(late) == 2
        # a push is written at once, the pulls gathered so far in the same transaction, first
        recorder.submit([event(PUSH_ARTIFACT, n=4)])
        recorder._write_batch()
        assert seen == [[(PULL_ARTIFACT, 2), (PULL_ARTIFACT, 3)], [(PUSH_ARTIFACT, 4)]]
        assert len(late) == 0 and Event.select().count() == 1

    def test_gathered_pulls_are_written_when_due_and_at_stop(self, store):
        recorder, seen, late = self.recorder()
        clock = Clock()
        late._clock = clock
        recorder.start()
        try:
            recorder.submit([pull(n=1, at=1)])
            wait_until(lambda: len(late) == 1)
            time.sleep(0.05)
            assert seen == []
            clock.now += 10  # due: the recorder's next look (at most a second) writes them
            wait_until(lambda: seen == [[(PULL_ARTIFACT, 1)]], timeout=3)
            recorder.submit([pull(n=2, at=2)])
            wait_until(lambda: len(late) == 1)
        finally:
            recorder.stop()
        assert seen == [[(PULL_ARTIFACT, 1)], [(PULL_ARTIFACT, 2)]] and len(late) == 0

    def test_a_failed_write_keeps_the_gathered_pulls(self, store):
        written: list[list[tuple[str, int]]] = []
        failures = [OperationalError("database is locked")]

        def start(batch):  # the push's part of the transaction fails once
            if failures and any(e.type == PUSH_ARTIFACT for e in batch):
                raise failures.pop()
            written.append([(e.type, e.occur_at % 100) for e in batch])
            return 0

        recorder = Recorder(Executor(), RecorderSettings())
        late = late_pulls()
        recorder.add_trigger({PUSH_ARTIFACT, PULL_ARTIFACT}, start, late=late)
        recorder.submit([pull(n=1, at=1)])
        assert recorder._write_batch()  # gathered, no write
        recorder.submit([event(PUSH_ARTIFACT, n=2)])
        assert not recorder._write_batch()  # rolled back: the pull written with it is kept
        assert recorder.backlog == 1 and len(late) == 1
        assert Event.select().count() == 0
        assert recorder._write_batch()
        assert written == [[(PULL_ARTIFACT, 1)], [(PULL_ARTIFACT, 1)], [(PUSH_ARTIFACT, 2)]]
        assert Event.select().count() == 1 and len(late) == 0

    def test_a_job_recording_its_events_leaves_the_gathered_pulls_alone(self, store):
        recorder, seen, late = self.recorder()
        recorder.submit([pull(n=1, at=1)])
        recorder._write_batch()
        recorder.write_now([event(DELETE_ARTIFACT, n=3)])  # inside a job's own transaction
        assert seen == [[(DELETE_ARTIFACT, 3)]] and len(late) == 1


def test_a_repository_without_a_row_is_not_looked_up_with_every_batch(store, monkeypatch):
    from sidecar.store import policies as policy_store

    looked_up: list[list[str]] = []
    lookup = policy_store.repository_created

    def counting(names, pushed, now):
        looked_up.append(sorted(set(names) | set(pushed)))
        return lookup(names, pushed, now)

    monkeypatch.setattr(policy_store, "repository_created", counting)
    recorder = Recorder(Executor(), RecorderSettings())
    for n in range(3):  # pulled only: pushed before the sidecar watched
        recorder.submit([event(PULL_ARTIFACT, repository="proj/old", n=n)])
        recorder.flush()
    assert looked_up == [["proj/old"]]
    recorder.submit([event(PUSH_ARTIFACT, repository="proj/old", n=5)])  # now it has a row
    recorder.flush()
    recorder.submit([event(PUSH_ARTIFACT, repository="proj/old", n=6)])
    recorder.flush()
    assert looked_up == [["proj/old"], ["proj/old"]]
    created = Repository.get(Repository.name == "proj/old").created_at
    assert [json.loads(e.payload_json)["event_data"]["repository"]["date_created"]
            for e in Event.select()] == [created, created]


def test_events_nobody_wants_are_checked_in_few_batches_and_a_wanted_one_at_once(store):
    executor = CountingExecutor()
    recorder = Recorder(executor, RecorderSettings(quiet_window=0.4))
    recorder.submit([event(PULL_ARTIFACT, n=0)])
    recorder.flush()  # the policy index is read: proj's policy wants pushes only
    recorder.start()
    try:
        writes = executor.writes
        for n in range(1, 61):  # pulls nobody subscribed to, 1 per ms
            recorder.submit([event(PULL_ARTIFACT, n=n)])
            time.sleep(0.001)
        started = time.monotonic()
        recorder.submit([event(PUSH_ARTIFACT, n=100)])  # a policy wants it: no waiting
        wait_until(lambda: Delivery.select().count() == 2, timeout=5)
        assert time.monotonic() - started < 0.3
        wait_until(lambda: recorder.recorded == 62)
    finally:
        recorder.stop()
    # the pushes' write carried the pulls before it; with a write per 5 ms it took about 15
    assert executor.writes - writes <= 3, executor.writes - writes
    assert Event.select().count() == 1
