"""Background jobs through their handlers: progress, events and outcomes are saved together,
so a job taken over after a crash resumes from its checkpoint and never repeats an event."""

from __future__ import annotations

import json
import threading
import time

import pytest

from sidecar.events.model import PUSH_ARTIFACT
from sidecar.events.model import ArtifactEvent
from sidecar.jobs.lane import Lane
from sidecar.jobs.runner import JobRunner
from sidecar.jobs.runner import Outcome
from sidecar.jobs.runner import Retry
from sidecar.jobs.runner import RunnerSettings
from sidecar.record.recorder import Recorder
from sidecar.record.recorder import RecorderSettings
from sidecar.store import clock
from sidecar.store import db as store_db
from sidecar.store import jobs
from sidecar.store.executor import Executor
from sidecar.store.models import FAILED
from sidecar.store.models import PENDING
from sidecar.store.models import STOPPED
from sidecar.store.models import SUCCEEDED
from sidecar.store.models import Delivery
from sidecar.store.models import Event
from sidecar.store.models import Policy
from sidecar.store.models import Project


@pytest.fixture
def store(empty_store_url):
    url = empty_store_url
    db = store_db.bind(url)
    with db.connection_context():
        project = Project.create(name="proj", created_at=0)
        Policy.create(project=project, name="ci", event_types_json=json.dumps([PUSH_ARTIFACT]),
                      targets_json=json.dumps([{"type": "http", "address": "http://x/hook"}]),
                      created_at=0, updated_at=0)
    yield url
    db.close()


def event(tag: str) -> ArtifactEvent:
    return ArtifactEvent(type=PUSH_ARTIFACT, repository="proj/app", digest="sha256:" + "a" * 64,
                         operator="robot", occur_at=1_700_000_000, tags=(tag,))


class Killed(BaseException):
    """Stands for kill -9: nothing after it runs, nothing is settled."""


class Steps:
    """A two-step job: step 1 checkpoints with an event, step 2 ends with another."""

    kind = "steps"

    def __init__(self, die_after_step_1: bool = False):
        self.die_after_step_1 = die_after_step_1
        self.seen_states: list[dict] = []

    def run(self, ctx):
        self.seen_states.append(dict(ctx.state))
        if ctx.state.get("step") != 1:
            ctx.log("step 1 done")
            ctx.checkpoint({"step": 1}, events=[event("step1")])
            if self.die_after_step_1:
                raise Killed()
        return Outcome(SUCCEEDED, result={"steps": 2}, events=[event("step2")])

    def failed(self, ctx, reason):
        return [event("failed")]

    def stopped(self, ctx):
        return [event("stopped")]


def runner(handler, lease: float = 30.0, woken: list | None = None) -> JobRunner:
    recorder = Recorder(Executor(), RecorderSettings())
    return JobRunner(Executor(), [handler], record=recorder.write_now,
                     recorded=(woken.append if woken is not None else lambda n: None),
                     settings=RunnerSettings(lease=lease, backoff=0.05, backoff_max=0.1))


def run_next(job_runner: JobRunner, now: float | None = None) -> int:
    claimed = jobs.claim(job_runner.queue, 1, job_runner.settings.lease, now=now)
    for job in claimed:
        job_runner.run(job)
    return len(claimed)


def tags_recorded() -> list[str]:
    return [json.loads(e.payload_json)["event_data"]["resources"][0]["tag"]
            for e in Event.select().order_by(Event.id)]


def test_a_job_saves_progress_and_outcome_with_their_events(store):
    woken: list[int] = []
    job_runner = runner(Steps(), woken=woken)
    job_id = jobs.enqueue("steps", {"what": "x"}, title="two steps")
    assert run_next(job_runner) == 1
    view = jobs.get(job_id, with_log=True)
    assert (view.status, view.attempts, view.result) == (SUCCEEDED, 1, {"steps": 2})
    assert "step 1 done" in view.log
    assert tags_recorded() == ["step1", "step2"]
    assert Delivery.select().count() == 2 and sum(woken) == 2  # the policy got both


def test_a_job_taken_over_after_a_crash_resumes_and_repeats_no_event(store):
    job_id = jobs.enqueue("steps", {})
    first = Steps(die_after_step_1=True)
    with pytest.raises(Killed):
        run_next(runner(first, lease=5))
    assert jobs.get(job_id).status == "running"
    second = Steps()
    later = clock.now() + 6  # the dead worker's lease has run out
    assert run_next(runner(second, lease=5), now=later) == 1
    assert second.seen_states == [{"step": 1}]  # resumed, not started again
    assert tags_recorded() == ["step1", "step2"]
    view = jobs.get(job_id)
    assert view.status == SUCCEEDED and view.attempts == 2  # the lost lease counted


class Flaky:
    kind = "flaky"

    def __init__(self, error: Exception):
        self.error = error
        self.failed_reasons: list[str] = []

    def run(self, ctx):
        raise self.error

    def failed(self, ctx, reason):
        self.failed_reasons.append(reason)
        return [event("gave-up")]

    def stopped(self, ctx):
        return []


def test_transient_failures_are_retried_then_reported_once(store):
    handler = Flaky(Retry("registry answered 503"))
    job_runner = runner(handler)
    job_id = jobs.enqueue("flaky", {}, max_attempts=2)
    run_next(job_runner)
    view = jobs.get(job_id)
    assert (view.status, view.attempts, view.last_error) == (
        PENDING, 1, "registry answered 503")
    assert run_next(job_runner) == 0  # backing off
    time.sleep(0.15)
    run_next(job_runner)
    view = jobs.get(job_id, with_log=True)
    assert (view.status, view.attempts) == (FAILED, 2)
    assert handler.failed_reasons == ["registry answered 503"]
    assert tags_recorded() == ["gave-up"]
    assert view.log.count("registry answered 503") == 2


def test_a_handler_bug_is_retried_with_its_reason(store):
    job_runner = runner(Flaky(ValueError("bad report")))
    job_id = jobs.enqueue("flaky", {}, max_attempts=1)
    run_next(job_runner)
    view = jobs.get(job_id)
    assert view.status == FAILED and view.last_error == "ValueError: bad report"


def test_a_job_whose_attempts_ran_out_in_lost_leases_says_why(store):
    handler = Flaky(Retry("unused"))
    job_id = jobs.enqueue("flaky", {}, max_attempts=1)
    jobs.claim(jobs.queue_for(["flaky"]), 1, 5)  # a worker claims it and dies
    run_next(runner(handler), now=clock.now() + 6)
    view = jobs.get(job_id)
    assert view.status == FAILED and "lease expired" in view.last_error
    assert handler.failed_reasons == [view.last_error]
    assert tags_recorded() == ["gave-up"]


def test_stopping_a_waiting_job_fires_its_stopped_events(store):
    job_id = jobs.enqueue("steps", {}, run_at=clock.now() + 3600)
    jobs.request_stop(job_id)
    run_next(runner(Steps()))
    view = jobs.get(job_id)
    assert view.status == STOPPED and view.attempts == 0
    assert tags_recorded() == ["stopped"]


class Patient:
    kind = "patient"

    def __init__(self):
        self.started = threading.Event()

    def run(self, ctx):
        self.started.set()
        while True:
            ctx.check_stop()
            time.sleep(0.05)

    def failed(self, ctx, reason):
        return []

    def stopped(self, ctx):
        return [event("stopped")]


def test_stopping_a_running_job_ends_it_at_its_next_check(store):
    handler = Patient()
    job_runner = runner(handler)
    lane = Lane("jobs", claim=job_runner.claim, run=job_runner.run,
                release=job_runner.release, concurrency=1, idle_poll=0.05)
    job_id = jobs.enqueue("patient", {})
    lane.start()
    try:
        assert handler.started.wait(10)
        jobs.request_stop(job_id)
        deadline = time.monotonic() + 10
        while jobs.get(job_id).status != STOPPED:
            assert time.monotonic() < deadline, jobs.get(job_id)
            time.sleep(0.05)
    finally:
        lane.stop(grace=2)
    assert tags_recorded() == ["stopped"]


def test_a_worker_that_lost_its_claim_records_nothing(store):
    class Slow(Steps):
        def run(self, ctx):
            # another worker took the job over while this one was stuck
            jobs.claim(jobs.queue_for(["steps"]), 1, 5, now=clock.now() + 3600)
            return super().run(ctx)

    job_id = jobs.enqueue("steps", {})
    run_next(runner(Slow(), lease=5))
    assert tags_recorded() == []
    assert jobs.get(job_id).status == "running"  # the successor's, untouched
