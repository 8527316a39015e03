"""Endpoint health in the store: Slack's pace shared by every worker and sidecar, execution
history kept to the newest N per policy, and targets disabled after failing too long."""

from __future__ import annotations

import pytest

from sidecar.dispatch.ratelimit import IntervalLimiter
from sidecar.store import db as store_db
from sidecar.store import pacing

URL = "https://hooks.slack.example/services/T0/B0/secret"


@pytest.fixture
def store(tmp_path):
    store_db.bind(f"sqlite:///{tmp_path / 'health.db'}")


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
