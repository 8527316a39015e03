"""Every way the sidecar writes a time. Pure.

Harbor's API writes two formats: go-openapi's strfmt.DateTime (milliseconds) for policies and
last triggers, Go's time.RFC3339 (seconds) for executions and tasks; zero times as Go's zero
value. People read times as UTC with how long ago: the pages with one decimal beyond an hour,
the terminal in whole units, as a date beyond two days.
"""

from __future__ import annotations

import math
import time
from datetime import UTC
from datetime import datetime

ZERO_STRFMT = "0001-01-01T00:00:00.000Z"
ZERO_RFC3339 = "0001-01-01T00:00:00Z"

#: (below this many seconds, divide by, unit, decimals)
PAGE_SCALE = ((60, 1, "s", 0), (3600, 60, "m", 0), (86400, 3600, "h", 1),
              (math.inf, 86400, "d", 1))
TERMINAL_SCALE = ((120, 1, "s", 0), (7200, 60, "m", 0), (172800, 3600, "h", 0))


def strfmt_time(when: float | None) -> str:
    if not when:
        return ZERO_STRFMT
    moment = datetime.fromtimestamp(when, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def rfc3339_time(when: float | None) -> str:
    if not when:
        return ZERO_RFC3339
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ago(stamp: float | None, now: float | None = None, scale=PAGE_SCALE) -> str:
    """`5m ago`, `in 3s`; a date once beyond the scale's last step; `never` for no time."""
    if not stamp:
        return "never"
    now = time.time() if now is None else now
    delta = now - stamp
    for limit, divisor, unit, decimals in scale:
        if abs(delta) < limit:
            text = f"{abs(delta) / divisor:.{decimals}f}{unit}"
            return f"{text} ago" if delta >= 0 else f"in {text}"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def when(stamp: float | None, now: float | None = None) -> str:
    """For pages: the UTC time with how long ago."""
    if not stamp:
        return "never"
    text = datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{text} ({ago(stamp, now)})"


def terminal_when(stamp: float | None, now: float | None = None) -> str:
    """For the terminal: how long ago in whole units, a date beyond two days."""
    return ago(stamp, now, TERMINAL_SCALE)
