"""The retry schedule: attempts are Harbor's total, backoff grows with bounded jitter, and a
receiver's Retry-After is honoured within limits."""

from __future__ import annotations

import pytest

from sidecar.dispatch.retry import DELIVERED
from sidecar.dispatch.retry import FAILED
from sidecar.dispatch.retry import MAX_RETRY_AFTER
from sidecar.dispatch.retry import RETRY
from sidecar.dispatch.retry import RetryPolicy
from sidecar.dispatch.retry import decide
from sidecar.dispatch.retry import parse_retry_after

NOW = 1_755_763_200.0


def low() -> float:
    return 0.0


def high() -> float:
    return 0.999999


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_delivered_on_any_attempt(status):
    for attempt in (1, 3, 99):
        decision = decide(RetryPolicy(max_attempts=3), attempt, status, "", None, NOW)
        assert decision.status == DELIVERED
        assert decision.retry_at is None
        assert decision.reason == ""


@pytest.mark.parametrize("status", [100, 199, 300, 301, 304, 400, 401, 403, 404, 408, 413, 429,
                                    500, 502, 503, 504])
def test_every_other_status_is_retried_until_attempts_run_out(status):
    policy = RetryPolicy(max_attempts=3, backoff=10, backoff_max=1000)
    first = decide(policy, 1, status, "", None, NOW, rng=low)
    assert first.status == RETRY
    assert first.reason == f"abnormal response code: {status}"
    assert first.retry_at == NOW + 5.0
    assert decide(policy, 2, status, "", None, NOW).status == RETRY
    last = decide(policy, 3, status, "", None, NOW)
    assert last.status == FAILED
    assert last.retry_at is None
    assert last.reason == f"abnormal response code: {status} (gave up after 3 attempts)"


@pytest.mark.parametrize("max_attempts", [1, 2, 3, 4, 10])
def test_max_attempts_is_the_total_number_of_attempts(max_attempts):
    policy = RetryPolicy(max_attempts=max_attempts)
    outcomes = [decide(policy, n, 500, "", None, NOW).status for n in range(1, max_attempts + 1)]
    assert outcomes == [RETRY] * (max_attempts - 1) + [FAILED]


def test_410_gone_ends_at_once():
    decision = decide(RetryPolicy(max_attempts=10), 1, 410, "", 30.0, NOW)
    assert decision.status == FAILED
    assert decision.retry_at is None
    assert decision.reason == "abnormal response code: 410 (endpoint gone, not retried)"


@pytest.mark.parametrize("error", ["connection refused", "timed out after 3s",
                                   "TLS: certificate verify failed", ""])
def test_transport_errors_are_retried_with_their_reason(error):
    policy = RetryPolicy(max_attempts=2, backoff=4, backoff_max=100)
    decision = decide(policy, 1, None, error, None, NOW, rng=high)
    assert decision.status == RETRY
    assert decision.reason == (error or "no response")
    assert NOW + 2 <= decision.retry_at <= NOW + 4
    final = decide(policy, 2, None, error, None, NOW)
    assert final.status == FAILED
    assert final.reason == f"{error or 'no response'} (gave up after 2 attempts)"


def test_backoff_doubles_per_attempt_with_equal_jitter():
    policy = RetryPolicy(max_attempts=10, backoff=15, backoff_max=10_000)
    bases = [15, 30, 60, 120, 240]
    for attempt, base in enumerate(bases, 1):
        assert policy.delay(attempt, rng=low) == base / 2
        assert policy.delay(attempt, rng=lambda: 0.5) == base * 0.75
        assert base * 0.9999 <= policy.delay(attempt, rng=high) <= base


def test_jitter_stays_within_bounds_with_the_real_random_source():
    policy = RetryPolicy(backoff=8, backoff_max=100)
    delays = [policy.delay(2) for _ in range(500)]
    assert all(8 <= d <= 16 for d in delays)
    assert len(set(delays)) > 1  # jitter spreads retries of many deliveries


def test_delay_is_capped_at_backoff_max():
    policy = RetryPolicy(backoff=15, backoff_max=100)
    assert policy.delay(3, rng=high) <= 60
    for attempt in (4, 5, 10, 50):
        assert 50 <= policy.delay(attempt, rng=low) <= policy.delay(attempt, rng=high) <= 100


def test_huge_attempt_numbers_do_not_overflow():
    policy = RetryPolicy(max_attempts=100_000, backoff=15, backoff_max=900)
    assert policy.delay(5000, rng=high) <= 900
    assert decide(policy, 5000, 500, "", None, NOW, rng=low).retry_at == NOW + 450


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempt_numbers_below_one_use_the_first_delay(attempt):
    assert RetryPolicy(backoff=10).delay(attempt, rng=low) == 5


def test_zero_backoff_retries_at_once():
    decision = decide(RetryPolicy(backoff=0, backoff_max=0), 1, 503, "", None, NOW)
    assert decision.retry_at == NOW


def test_retry_after_replaces_the_backoff():
    policy = RetryPolicy(max_attempts=3, backoff=15, backoff_max=900)
    assert decide(policy, 1, 429, "", 120.0, NOW).retry_at == NOW + 120
    assert decide(policy, 1, 503, "", 0.0, NOW).retry_at == NOW
    # but never beyond the last attempt
    assert decide(policy, 3, 503, "", 120.0, NOW).status == FAILED


# --- Retry-After header ---------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "seconds"), [
    ("120", 120.0),
    ("0", 0.0),
    (" 7 ", 7.0),
    ("3600", 3600.0),
    ("3601", MAX_RETRY_AFTER),
    ("99999999999999999999999", MAX_RETRY_AFTER),
    # HTTP-dates (RFC 9110): preferred, obsolete RFC 850 and asctime forms
    ("Thu, 21 Aug 2025 08:02:00 GMT", 120.0),
    ("Thursday, 21-Aug-25 08:02:00 GMT", 120.0),
    ("Thu Aug 21 08:02:00 2025", 120.0),
    ("Thu, 21 Aug 2025 08:02:00 -0000", 120.0),
    ("Thu, 21 Aug 2025 10:02:00 +0200", 120.0),
    ("Thu, 21 Aug 2025 07:00:00 GMT", 0.0),        # in the past: now
    ("Fri, 22 Aug 2025 08:00:00 GMT", MAX_RETRY_AFTER),
])
def test_parse_retry_after(value, seconds):
    assert parse_retry_after(value, NOW) == seconds


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "-5", "1.5", "1e3", "0x10",
                                   "\u00b2", "\u0661\u0662", "Thu, 99 Aug 2025 08:02:00 GMT",
                                   "120 seconds"])
def test_garbage_retry_after_is_ignored(value):
    assert parse_retry_after(value, NOW) is None


def test_http_dates_do_not_depend_on_the_local_time_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_retry_after("Thu, 21 Aug 2025 08:02:00 -0000", NOW) == 120.0
        assert parse_retry_after("Thu Aug 21 08:02:00 2025", NOW) == 120.0
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_final_answer_fails_at_once_without_a_retry():
    """A target the address policy refused: the next attempt would be refused the same way."""
    decision = decide(RetryPolicy(max_attempts=3), 1, None,
                      "refused: 127.0.0.1 is a loopback address (...)", None, NOW, final=True)
    assert decision.status == FAILED and decision.retry_at is None
    assert decision.reason == "refused: 127.0.0.1 is a loopback address (...) (not retried)"
