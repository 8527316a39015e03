"""Endpoint health in the store: Slack's pace shared by every worker and sidecar, execution
history kept to the newest N per policy, and targets disabled after failing too long."""

from __future__ import annotations

import pytest

from sidecar.dispatch.ratelimit import IntervalLimiter
from sidecar.store import db as store_db
from sidecar.store import pacing

URL = "https://hooks.slack.example/services/T0/B0/secret"


@pytest.fixture
def store(empty_store_url):
    """SQLite and PostgreSQL: the upserts and row locks differ between them."""
    url = empty_store_url
    db = store_db.bind(url)
    db.connect(reuse_if_open=True)
    yield
    db.close()


def _process() -> IntervalLimiter:
    """What one worker process builds: its own limiter, slots from the shared store."""
    return IntervalLimiter(interval=1.0, max_wait=1.0,
                           schedule=lambda key, now: pacing.reserve(key, 1.0, now),
                           push=pacing.defer)


def test_two_workers_share_one_pace_per_url(store):
    first, second = _process(), _process()
    a = first.reserve(URL, "a", 100.0)
    b = second.reserve(URL, "b", 100.0)  # another process: the next slot, not its own
    c = first.reserve(URL, "c", 100.0)
    assert (a.at, b.at, c.at) == (100.0, 101.0, 102.0)
    assert c.postpone and not b.postpone
    assert second.reserve("https://hooks.slack.example/other", "d", 100.0).at == 100.0
    # a 429 seen by one process pauses the URL for the other
    first.defer(URL, 130.0)
    assert second.reserve(URL, "e", 103.0).at == 130.0


def test_the_url_is_not_stored_in_clear(store):
    from sidecar.store.health_models import PaceSlot

    pacing.reserve(URL, 1.0, 100.0)
    assert [row.key for row in PaceSlot.select()] == [pacing.key_of(URL)]
    assert "secret" not in pacing.key_of(URL)
    assert pacing.forget_idle(200.0) == 1


def test_a_target_is_disabled_after_failing_long_enough_and_its_deliveries_skipped(store):
    from sidecar.store import delivery_history
    from sidecar.store import delivery_queue as queue
    from sidecar.store import target_health
    from sidecar.store.models import Delivery
    from sidecar.store.models import Policy
    from sidecar.store.models import Project
    from sidecar.store.target_health import Observed

    project = Project.create(name="proj", created_at=0)
    policy = Policy.create(project=project, name="ci", created_at=0, updated_at=0)
    target = {"type": "http", "address": "http://ci.example/hook?token=hush"}

    def record() -> None:
        queue.record_events([queue.NewEvent(
            type="PUSH_ARTIFACT", occur_at=1, operator="", project="proj", repository="proj/a",
            request_id="r", payload={}, deliveries=(queue.NewDelivery(policy.id, "ci", target),))],
            max_attempts=1)

    fail = Observed(policy.id, target, False, "abnormal response code: 500 hush")
    assert target_health.observe([fail], after=100, now=1000.0) == []
    assert target_health.observe([fail], after=100, now=1099.0) == []
    # a success in between starts the streak again
    target_health.observe([Observed(policy.id, target, True)], after=100, now=1100.0)
    assert target_health.observe([fail], after=100, now=1150.0) == []
    assert target_health.observe([fail], after=100, now=1250.0) == [
        "http://ci.example/hook?token=***"]
    [disabled] = target_health.disabled_targets()
    assert (disabled.policy, disabled.since) == ("ci", 1250.0)
    assert "hush" not in disabled.reason and "500" in disabled.reason
    record()
    [row] = Delivery.select()
    assert row.status == "skipped" and "disabled" in row.last_error
    assert target_health.disabled_targets()[0].skipped == 1
    # 0 = never
    other = {"type": "http", "address": "http://other.example/"}
    bad = Observed(policy.id, other, False, "x")
    target_health.observe([bad], after=0, now=0.0)
    assert target_health.observe([bad], after=0, now=1e9) == []
    # re-enabled: the skipped delivery queued again, new ones pending as usual
    assert target_health.reenable_and_replay(policy.id, True) == (1, 1)
    assert Delivery.get_by_id(row.id).status == "pending"
    record()
    assert Delivery.select().where(Delivery.status == "skipped").count() == 0
    assert delivery_history.replay(skipped_ones=True).requeued == ()


def test_cli_reenable_and_replay_skipped(tmp_path):
    """`sidecar reenable ID --replay` and `sidecar replay --skipped` on a store, as an operator
    runs them."""
    import json
    import subprocess

    from sidecar.store import delivery_queue as queue
    from sidecar.store import target_health
    from sidecar.store.models import Delivery
    from sidecar.store.models import Policy
    from sidecar.store.models import Project
    from sidecar.store.target_health import Observed
    from tests.support.sidecar import sidecar_command

    database = f"sqlite:///{tmp_path / 'cli.db'}"
    store_db.bind(database)
    project = Project.create(name="proj", created_at=0)
    policy = Policy.create(project=project, name="ci", created_at=0, updated_at=0)
    target = {"type": "http", "address": "http://ci.example/hook"}
    fail = Observed(policy.id, target, False, "abnormal response code: 503")
    target_health.observe([fail], after=10, now=0.0)
    target_health.observe([fail], after=10, now=20.0)

    def record() -> None:
        queue.record_events([queue.NewEvent(
            type="PUSH_ARTIFACT", occur_at=1, operator="", project="proj", repository="proj/a",
            request_id="r", payload={}, deliveries=(queue.NewDelivery(policy.id, "ci", target),))],
            max_attempts=1)

    record()
    record()

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*sidecar_command(), *args, "--database", database],
                              capture_output=True, text=True, timeout=60)

    done = cli("replay", "--skipped", "--policy-id", str(policy.id + 1), "--json")
    assert done.returncode == 1 or json.loads(done.stdout)["requeued"] == []
    done = cli("reenable", str(policy.id))
    assert done.returncode == 0 and "1 target(s) re-enabled" in done.stdout, done.stderr
    assert cli("reenable", str(policy.id)).stdout.strip() == \
        f"policy {policy.id} has no disabled target"
    done = cli("replay", "--skipped", "--json")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["requeued"]) == 2
    assert Delivery.select().where(Delivery.status == "pending").count() == 2
    assert cli("replay", "--policy-id", "3").returncode == 2  # --policy-id goes with --skipped
