"""From inferred events to recorded rows: which deliveries are made, and that none are lost."""

from __future__ import annotations

import json
import threading
import time

import pytest

from sidecar.events.model import DELETE_ARTIFACT
from sidecar.events.model import PULL_ARTIFACT
from sidecar.events.model import PUSH_ARTIFACT
from sidecar.events.model import ArtifactEvent
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


def test_recorder_writes_events_and_deliveries_and_wakes_dispatch(store):
    woken: list[int] = []
    recorder = Recorder(Executor(), RecorderSettings(hostname="h", batch_interval=0.01),
                        on_recorded=woken.append)
    recorder.start()
    try:
        recorder.submit([event(n=1), event(PULL_ARTIFACT, n=2), event(repository="alpine", n=3)])
        wait_until(lambda: recorder.recorded == 3)
    finally:
        recorder.stop()
    assert Event.select().count() == 3
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
    recorder = Recorder(Executor(), RecorderSettings(batch_interval=0.01))

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
