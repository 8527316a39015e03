"""A policy's `speed` (KB/s per task, as Harbor's): bytes paced through a token bucket.

Pieces are cut small (a quarter of a second's worth, at most 1 MiB) so the pace is even, and
the bucket holds at most one second's worth, so a pause between blobs buys no burst beyond it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator

MAX_PIECE = 1024 * 1024
MIN_PIECE = 1024


class Throttle:
    """Paces bytes at `kilobytes_per_second` x 1024 B/s; 0 or less: no limit."""

    def __init__(self, kilobytes_per_second: int, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.rate = max(0, kilobytes_per_second) * 1024
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.rate)
        self._last = clock()

    @property
    def limited(self) -> bool:
        return self.rate > 0

    def piece_size(self) -> int:
        if not self.rate:
            return MAX_PIECE
        return max(MIN_PIECE, min(MAX_PIECE, self.rate // 4))

    def pace(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """`chunks` again, cut to piece_size() and delayed to stay within the rate."""
        if not self.rate:
            yield from chunks
            return
        size = self.piece_size()
        for chunk in chunks:
            view = memoryview(chunk)
            for start in range(0, len(view), size):
                piece = bytes(view[start:start + size])
                self._take(len(piece))
                yield piece

    def _take(self, amount: int) -> None:
        now = self._clock()
        self._tokens = min(float(self.rate), self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < amount:
            wait = (amount - self._tokens) / self.rate
            self._sleep(wait)
            self._last = self._clock()
            self._tokens = 0.0
        else:
            self._tokens -= amount
