"""Harbor's 6-field cron (seconds first), as Harbor reads and evaluates it.

Harbor parses with robfig/cron v3.0.1 built for Second | Minute | Hour | Dom | Month | Dow
(goharbor/harbor `src/common/utils/utils.go` `CronParser`, `ValidateCronString`) and its
periodic enqueuer computes fire times in UTC (`src/jobservice/period/enqueuer.go`
`scheduleNextJobs`). Every expected value below was produced by robfig/cron v3.0.1 itself
(`parser.go`, `spec.go`: `Parse` and `SpecSchedule.Next`, from a UTC time), error text
included; a differential run of 100,000 random specs found no disagreement (see the report of
the commit that added this file).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from datetime import timezone

import pytest

from sidecar.rules.cron import CronError
from sidecar.rules.cron import parse_cron
from sidecar.rules.cron import validate_cron


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# (spec, from, robfig's next fire time) -- Harbor's own examples first (harbor-jobs.md §5,
# the portal's presets), then the corners of robfig's grammar and day matching.
NEXT = [
    ("0 0 3 * * *", "2026-08-21T02:59:59", "2026-08-21T03:00:00"),
    ("0 0 3 * * *", "2026-08-21T03:00:00", "2026-08-22T03:00:00"),  # strictly after
    ("0 0 0 * * *", "2026-08-21T03:00:00", "2026-08-22T00:00:00"),  # daily
    ("0 0 * * * *", "2026-08-21T03:00:00", "2026-08-21T04:00:00"),  # hourly
    ("0 0 0 * * 0", "2026-08-21T03:00:00", "2026-08-23T00:00:00"),  # weekly, Sunday
    ("0 30 2 * * 1-5", "2026-08-21T03:00:00", "2026-08-24T02:30:00"),
    ("0 0 0 * * *", "2026-08-21T23:59:59", "2026-08-22T00:00:00"),
    ("0 0 0 1 1 *", "2026-12-31T23:59:59", "2027-01-01T00:00:00"),  # year wraps
    # day of month and day of week: either one when both are restricted, both when one is a
    # star; `?` and `*/1` are stars, `*/2` and `1-31` are not
    ("0 0 0 * * 1", "2026-08-21T03:00:00", "2026-08-24T00:00:00"),
    ("0 0 0 ? * 1", "2026-08-21T03:00:00", "2026-08-24T00:00:00"),
    ("0 0 0 */1 * 1", "2026-08-21T03:00:00", "2026-08-24T00:00:00"),
    ("0 0 0 */2 * 1", "2026-08-21T03:00:00", "2026-08-23T00:00:00"),
    ("0 0 0 1-31 * 1", "2026-08-21T03:00:00", "2026-08-22T00:00:00"),
    ("0 0 0 1 * sun", "2026-08-21T03:00:00", "2026-08-23T00:00:00"),
    ("0 0 0 15 * 5", "2026-08-21T03:00:00", "2026-08-28T00:00:00"),
    # months and days that do not always exist
    ("0 0 0 29 2 *", "2026-08-21T03:00:00", "2028-02-29T00:00:00"),
    ("0 0 0 31 * *", "2026-08-31T00:00:00", "2026-10-31T00:00:00"),
    ("0 0 0 * FEB *", "2026-08-21T03:00:00", "2027-02-01T00:00:00"),
    ("0 0 12 * jan-mar mon", "2026-08-21T03:00:00", "2027-01-04T12:00:00"),
    # steps, ranges and lists
    ("0 */15 9-17 * * mon-fri", "2026-08-21T17:45:00", "2026-08-24T09:00:00"),
    ("0 5/20 * * * *", "2026-08-21T03:05:00", "2026-08-21T03:25:00"),  # n/step = n-max/step
    ("0 *-5 * * * *", "2026-08-21T03:00:00", "2026-08-21T03:01:00"),  # robfig reads `*-5` as `*`
    ("0 0 1,,2 * * *", "2026-08-21T03:00:00", "2026-08-22T01:00:00"),  # empty list items
]


@pytest.mark.parametrize(("spec", "start", "expected"), NEXT)
def test_next_fire_time_is_robfigs(spec, start, expected):
    assert parse_cron(spec).next_after(at(start)) == at(expected)


def test_a_schedule_that_never_fires_has_no_next_time():
    """robfig returns its zero time when nothing matches within five years."""
    assert parse_cron("0 0 0 30 2 *").next_after(at("2026-08-21T03:00:00")) is None


def test_times_are_utc_whatever_zone_the_caller_uses():
    paris = timezone(timedelta(hours=2))
    start = datetime(2026, 8, 21, 5, 0, 0, tzinfo=paris)  # 03:00 UTC
    assert parse_cron("0 0 3 * * *").next_after(start) == at("2026-08-22T03:00:00")
    naive = datetime(2026, 8, 21, 2, 59, 59)  # naive means UTC
    assert parse_cron("0 0 3 * * *").next_after(naive) == at("2026-08-21T03:00:00")


def test_fractions_of_a_second_count_as_the_second_they_are_in():
    start = at("2026-08-21T02:59:59") + timedelta(microseconds=999_999)
    assert parse_cron("0 0 3 * * *").next_after(start) == at("2026-08-21T03:00:00")


# (spec, robfig's error) -- Harbor shows it after "invalid cron string for ...: <spec>, error: "
ERRORS = [
    ("0 0 0 * *", "expected exactly 6 fields, found 5: [0 0 0 * *]"),
    ("0 0 0 * * * *", "expected exactly 6 fields, found 7: [0 0 0 * * * *]"),
    ("@daily", "parser does not accept descriptors: @daily"),
    ("0 0 0 L * *", 'failed to parse int from L: strconv.Atoi: parsing "L": invalid syntax'),
    ("0 0 0 * * MON#1",
     'failed to parse int from MON#1: strconv.Atoi: parsing "MON#1": invalid syntax'),
    ("0 0 0 * * 7", "end of range (7) above maximum (6): 7"),
    ("0 0 24 * * *", "end of range (24) above maximum (23): 24"),
    ("0 0 0 0 * *", "beginning of range (0) below minimum (1): 0"),
    ("0 0 0 * 0 *", "beginning of range (0) below minimum (1): 0"),
    ("0 0 5-1 * * *", "beginning of range (5) beyond end of range (1): 5-1"),
    ("0 0 */0 * * *", "step of range should be a positive number: */0"),
    ("0 0 1/2/3 * * *", "too many slashes: 1/2/3"),
    ("0 0 1-2-3 * * *", "too many hyphens: 1-2-3"),
    ("0 0 x * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
    ("0 0 -1 * * *", 'failed to parse int from : strconv.Atoi: parsing "": invalid syntax'),
    ("0 0 99999999999999999999 * * *", "failed to parse int from 99999999999999999999: "
     'strconv.Atoi: parsing "99999999999999999999": value out of range'),
]


@pytest.mark.parametrize(("spec", "message"), ERRORS)
def test_refused_with_robfigs_message(spec, message):
    with pytest.raises(CronError) as caught:
        parse_cron(spec)
    assert str(caught.value) == message


@pytest.mark.parametrize("spec", ["*/10 * * * * *", "30 0 3 * * *", "00 0 3 * * *",
                                  "* 0 3 * * *", "0/30 0 3 * * *"])
def test_harbor_wants_second_zero(spec):
    """utils.ValidateCronString: nothing may run more than once a minute."""
    parse_cron(spec)  # robfig reads it...
    with pytest.raises(CronError, match=r"^the 1st field \(indicating Seconds of time\) of "
                       r"the cron setting must be 0$"):
        validate_cron(spec)  # ...Harbor refuses it


def test_a_doubled_space_does_not_slip_past_the_seconds_check():
    """Harbor splits on single spaces, so `*/10  * ...` passed its check; not here."""
    with pytest.raises(CronError, match="must be 0"):
        validate_cron("*/10  * * * * *")


def test_empty_cron_is_harbors_message():
    with pytest.raises(CronError, match="^empty cron string is invalid$"):
        validate_cron("")


def test_time_zone_prefixes_are_refused_with_the_reason():
    """robfig accepts TZ=...; Harbor's screens never write one, and runs here are UTC."""
    with pytest.raises(CronError, match="time zone prefixes are not supported"):
        parse_cron("TZ=Europe/Paris 0 0 3 * * *")


def test_names_are_case_insensitive_and_equal_numbers():
    named = parse_cron("0 0 0 * JAN,feb MON-fri")
    assert replace(named, spec="") == replace(parse_cron("0 0 0 * 1,2 1-5"), spec="")
