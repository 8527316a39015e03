"""The retry schedule: pure functions of the attempt number and the answer received.

Harbor's meaning: `webhook_job_max_retry` is the total number of attempts. Every non-2xx and
every transport error is retried (the seed: "a code other than 2xx ... is re-sent"); 410 Gone
ends at once (Standard Webhooks: the receiver says the endpoint is gone for good), and so does
an attempt the sender marks final (a target the address policy refuses: a retry would be
refused the same way).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

from sidecar.jobs.backoff import RetryPolicy

DELIVERED = "delivered"
FAILED = "failed"
RETRY = "pending"

#: A Retry-After longer than this is capped: a delivery must end in bounded time.
MAX_RETRY_AFTER = 3600.0


__all__ = ["RetryPolicy", "Decision", "decide", "parse_retry_after"]


@dataclass(frozen=True)
class Decision:
    status: str
    retry_at: float | None
    reason: str


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit alone accepts "²"
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" or no zone: HTTP-dates are GMT, never local time
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER)


def decide(
    policy: RetryPolicy,
    attempt: int,
    status_code: int | None,
    error: str,
    retry_after: float | None,
    now: float,
    rng: Callable[[], float] = random.random,
    *,
    final: bool = False,
) -> Decision:
    """What to do after attempt number `attempt` ended with this answer."""
    if status_code is not None and 200 <= status_code < 300:
        return Decision(DELIVERED, None, "")
    if status_code is not None:
        reason = f"abnormal response code: {status_code}"
    else:
        reason = error or "no response"
    if status_code == 410:
        return Decision(FAILED, None, f"{reason} (endpoint gone, not retried)")
    if final:
        return Decision(FAILED, None, f"{reason} (not retried)")
    if attempt >= policy.max_attempts:
        return Decision(FAILED, None, f"{reason} (gave up after {attempt} attempts)")
    delay = policy.delay(attempt, rng)
    if retry_after is not None:
        delay = retry_after  # the receiver knows best when it can take more
    return Decision(RETRY, now + delay, reason)
