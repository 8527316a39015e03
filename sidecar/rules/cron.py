"""Harbor's cron: six fields with seconds first, read and evaluated as Harbor's jobservice does.

Harbor parses schedules with robfig/cron v3 (`Second | Minute | Hour | Dom | Month | Dow`, no
descriptors) and its periodic enqueuer evaluates them in UTC. Python's cron libraries follow
Vixie cron instead, and differ where it shows: `*/2` in the day of month counts as a star for
them (day of month AND day of week) but not for robfig (OR); they accept `7`, `L`, `W` and `#`,
which Harbor refuses. So the grammar here is robfig's, with its error messages, and `next_after`
is the earliest matching second strictly after a time, searched up to five years ahead as
robfig does. Pure: no clock, no I/O.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta

_INT = re.compile(r"[+-]?[0-9]+")
_INT64_MAX = 2**63 - 1
#: robfig gives up when no time matches within this many years (spec.go `yearLimit`).
YEAR_LIMIT = 5


@dataclass(frozen=True)
class _Bounds:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] is the value low + i (jan = 1, sun = 0)


SECONDS = _Bounds("seconds", 0, 59)
MINUTES = _Bounds("minutes", 0, 59)
HOURS = _Bounds("hours", 0, 23)
DOM = _Bounds("day of month", 1, 31)
MONTHS = _Bounds("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug",
                                  "sep", "oct", "nov", "dec"))
DOW = _Bounds("day of week", 0, 6, ("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
FIELDS = (SECONDS, MINUTES, HOURS, DOM, MONTHS, DOW)


class CronError(ValueError):
    """A cron string Harbor would refuse; the message is robfig's or Harbor's own."""


@dataclass(frozen=True)
class _Field:
    values: frozenset[int]
    star: bool  # robfig's starBit: `*` or `?` with no step above 1


@dataclass(frozen=True)
class CronSchedule:
    """A parsed schedule; `spec` is the string as written."""

    spec: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_star: bool
    weekdays_star: bool

    def day_matches(self, day: datetime) -> bool:
        """robfig's dayMatches: when either day field is a star both must match, else either."""
        in_month = day.day in self.days
        in_week = (day.weekday() + 1) % 7 in self.weekdays
        if self.days_star or self.weekdays_star:
            return in_month and in_week
        return in_month or in_week

    def next_after(self, when: datetime) -> datetime | None:
        """The first fire time strictly after `when` (naive means UTC), in UTC; None when the
        schedule does not fire within five years (robfig returns its zero time then)."""
        if when.tzinfo is not None:
            when = when.astimezone(UTC).replace(tzinfo=None)
        start = when.replace(microsecond=0) + timedelta(seconds=1)
        for year in range(start.year, start.year + YEAR_LIMIT + 1):
            for month in sorted(self.months):
                if (year, month) < (start.year, start.month):
                    continue
                this_month = (year, month) == (start.year, start.month)
                for day in range(start.day if this_month else 1,
                                 calendar.monthrange(year, month)[1] + 1):
                    found = self._first_time_on(datetime(year, month, day), start)
                    if found is not None:
                        return found.replace(tzinfo=UTC)
        return None

    def _first_time_on(self, day: datetime, start: datetime) -> datetime | None:
        if not self.day_matches(day):
            return None
        floor = start if day.date() == start.date() else day
        for hour in sorted(self.hours):
            if hour < floor.hour:
                continue
            for minute in sorted(self.minutes):
                if (hour, minute) < (floor.hour, floor.minute):
                    continue
                for second in sorted(self.seconds):
                    candidate = day.replace(hour=hour, minute=minute, second=second)
                    if candidate >= floor:
                        return candidate
        return None


def parse_cron(spec: str) -> CronSchedule:
    """Read a 6-field cron string the way Harbor's `utils.CronParser()` does.

    Time zone prefixes (`TZ=...`, `CRON_TZ=...`) are refused: robfig would accept them, but
    Harbor's own screens never write one and schedules here run in UTC as Harbor's do.
    """
    if not spec:
        raise CronError("empty spec string")
    if spec.startswith(("TZ=", "CRON_TZ=")):
        raise CronError("time zone prefixes are not supported: schedules run in UTC, "
                        "as Harbor's jobservice runs them")
    if spec.startswith("@"):
        raise CronError(f"parser does not accept descriptors: {spec}")
    fields = spec.split()
    if len(fields) != len(FIELDS):
        raise CronError(f"expected exactly {len(FIELDS)} fields, found {len(fields)}: "
                        f"[{' '.join(fields)}]")
    parsed = [_parse_field(text, bounds) for text, bounds in zip(fields, FIELDS, strict=True)]
    seconds, minutes, hours, days, months, weekdays = parsed
    return CronSchedule(spec=spec, seconds=seconds.values, minutes=minutes.values,
                        hours=hours.values, days=days.values, months=months.values,
                        weekdays=weekdays.values, days_star=days.star,
                        weekdays_star=weekdays.star)


def validate_cron(spec: str) -> CronSchedule:
    """Harbor's `utils.ValidateCronString` (retention, scan-all, GC): it must parse and fire at
    second 0, so nothing runs more than once a minute.

    Harbor checks the first of the parts split on single spaces, which a doubled space slips
    past; here the first field is checked however the fields are spaced.
    """
    if not spec:
        raise CronError("empty cron string is invalid")
    schedule = parse_cron(spec)
    if spec.split()[0] != "0":
        raise CronError("the 1st field (indicating Seconds of time) of the cron setting "
                        "must be 0")
    return schedule


def _parse_field(text: str, bounds: _Bounds) -> _Field:
    values: set[int] = set()
    star = False
    for expr in (part for part in text.split(",") if part):  # Go's FieldsFunc drops empties
        more, expr_star = _parse_range(expr, bounds)
        values |= more
        star = star or expr_star
    return _Field(frozenset(values), star)


def _parse_range(expr: str, bounds: _Bounds) -> tuple[set[int], bool]:
    """robfig's getRange: `*`, `?`, `n`, `a-b`, each optionally `/step` (`n/step` = n-max)."""
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    single = len(low_and_high) == 1
    star = False
    if low_and_high[0] in ("*", "?"):
        # robfig does not look past the star: `*-5` is `*`
        start, end, star = bounds.low, bounds.high, True
    else:
        start = _int_or_name(low_and_high[0], bounds)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _int_or_name(low_and_high[1], bounds)
        else:
            raise CronError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _int(range_and_step[1])
        if single:
            end = bounds.high
        if step > 1:
            star = False
    else:
        raise CronError(f"too many slashes: {expr}")
    if start < bounds.low:
        raise CronError(f"beginning of range ({start}) below minimum ({bounds.low}): {expr}")
    if end > bounds.high:
        raise CronError(f"end of range ({end}) above maximum ({bounds.high}): {expr}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise CronError(f"step of range should be a positive number: {expr}")
    return set(range(start, end + 1, step)), star


def _int_or_name(text: str, bounds: _Bounds) -> int:
    lowered = text.lower()
    if lowered in bounds.names:
        return bounds.low + bounds.names.index(lowered)
    return _int(text)


def _int(text: str) -> int:
    """Go's strconv.Atoi, error text included (ASCII digits, an optional sign, int64)."""
    if not _INT.fullmatch(text):
        raise CronError(f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": '
                        "invalid syntax")
    value = int(text)
    if abs(value) > _INT64_MAX:
        raise CronError(f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": '
                        "value out of range")
    if value < 0:  # unreachable through getRange (`-` splits first), kept as robfig has it
        raise CronError(f"negative number ({value}) not allowed: {text}")
    return value


def next_fire(spec: str, after: float) -> float | None:
    """The first fire time of `spec` after the Unix time `after` (None: never, or no spec);
    what pages and Harbor's `next_scheduled_time` show."""
    if not spec:
        return None
    fire = parse_cron(spec).next_after(datetime.fromtimestamp(after, UTC))
    return fire.timestamp() if fire is not None else None
