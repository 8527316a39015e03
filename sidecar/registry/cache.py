"""Bearer tokens kept per scope until shortly before they expire.

Pure (the clock is injected). A token is reused while more than a safety margin of its life is
left, so a request never leaves with a token that expires on the way: 10% of its lifetime, at
most 30 s (a 300 s token is renewed after 270 s, a 60 s one after 54 s, a 2 s one after 1.8 s).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Hashable
from dataclasses import dataclass
from dataclasses import field

MAX_MARGIN = 30.0
MARGIN_SHARE = 0.1


def usable_for(lifetime: float) -> float:
    """Seconds a token that lives `lifetime` seconds is reused."""
    return max(0.0, lifetime - min(MAX_MARGIN, lifetime * MARGIN_SHARE))


@dataclass
class _Entry:
    token: str = field(repr=False)
    renew_at: float


class TokenCache:
    """key (realm, service, scopes) -> token; bounded, the least recently stored goes first."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, capacity: int = 1000):
        self._clock = clock
        self._capacity = capacity
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()

    def get(self, key: Hashable) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() >= entry.renew_at:
            self._entries.pop(key, None)
            return None
        return entry.token

    def put(self, key: Hashable, token: str, lifetime: float) -> None:
        self._entries[key] = _Entry(token, self._clock() + usable_for(lifetime))
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def drop(self, key: Hashable, token: str | None = None) -> None:
        """Forget `key` (only if it still holds `token`, when given: a newer one stays)."""
        entry = self._entries.get(key)
        if entry is not None and (token is None or entry.token == token):
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
