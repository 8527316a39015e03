"""How long to wait before trying again: exponential backoff with equal jitter. Pure.

Shared by deliveries (dispatch.retry adds Harbor's rules on top) and background jobs.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff: float = 15.0
    backoff_max: float = 900.0

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Delay after failed attempt number `attempt` (1-based): exponential, equal jitter."""
        # the exponent is bounded so a large attempt number cannot overflow a float
        base = min(self.backoff_max, self.backoff * (2 ** min(max(0, attempt - 1), 64)))
        return base / 2 + rng() * base / 2
