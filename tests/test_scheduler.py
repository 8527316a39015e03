"""Scheduled jobs: each fire time of a Harbor cron schedule makes exactly one job, however many
workers and sidecars look at it, caught up a little after a restart, never twice."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime

import pytest

from sidecar.jobs.scheduler import Schedule
from sidecar.jobs.scheduler import Scheduler
from sidecar.jobs.scheduler import due
from sidecar.jobs.scheduler import latest_fire
from sidecar.store import db as store_db
from sidecar.store import jobs
from sidecar.store.executor import Executor


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize("spec, now, grace, expected", [
    ("0 0 3 * * *", "2026-11-29T03:00:00", 600, "2026-11-29T03:00:00"),  # the fire second
    ("0 0 3 * * *", "2026-11-29T03:09:59", 600, "2026-11-29T03:00:00"),  # caught up late
    ("0 0 3 * * *", "2026-11-29T03:10:01", 600, None),  # too late: skipped, as cron does
    ("0 0 3 * * *", "2026-11-29T02:59:59", 600, None),
    ("0 */5 * * * *", "2026-11-29T10:12:00", 600, "2026-11-29T10:10:00"),  # the latest only
    ("0 0 0 1 1 *", "2026-11-29T00:00:00", 600, None),
])
def test_latest_fire(spec, now, grace, expected):
    fire = latest_fire(spec, at(now), grace)
    assert fire == (at(expected) if expected else None)


def test_due_names_each_schedule_with_its_fire_time():
    schedules = [Schedule("retention:1", "0 0 3 * * *", "retention"),
                 Schedule("replication:2", "0 30 * * * *", "replication")]
    assert due(schedules, at("2026-11-29T03:00:05"), 600) == [
        (schedules[0], at("2026-11-29T03:00:00"))]


@pytest.fixture
def store(empty_store_url):
    url = empty_store_url
    db = store_db.bind(url)
    yield url
    db.close()


def test_one_job_per_fire_time_across_schedulers(store):
    schedule = Schedule("retention:7", "0 0 3 * * *", "retention", {"policy": 7},
                        project="library", title="retention of library")
    woken: list[int] = []
    schedulers = [Scheduler(Executor(), [lambda: [schedule]], queued=woken.append)
                  for _ in range(3)]  # three workers, or three sidecars on one database
    now = at("2026-11-29T03:00:02")
    assert [s.run_once(now) for s in schedulers] == [1, 0, 0]
    assert schedulers[0].run_once(now + 60) == 0  # the same fire time, looked at again
    assert schedulers[1].run_once(at("2026-11-30T03:00:01")) == 1  # the next day's
    total, listed = jobs.listing(kinds=["retention"], newest_first=False)
    assert total == 2 and woken == [1, 1]
    first = listed[0]
    assert first.payload == {"policy": 7, "scheduled_at": int(at("2026-11-29T03:00:00"))}
    assert (first.project, first.title, first.key) == (
        "library", "retention of library", f"retention:7@{int(at('2026-11-29T03:00:00'))}")
