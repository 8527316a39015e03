"""Watch bytes on their way through the proxy without holding them back.

A tap sees each chunk of a streamed body as it passes. Observers must be cheap and bounded;
an observer that raises is detached (logged once) so bookkeeping never breaks a transfer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator

log = logging.getLogger(__name__)

Observer = Callable[[bytes], None]


class Tap:
    """Calls `observer` with every chunk; detaches it if it fails."""

    def __init__(self, observer: Observer, what: str = "body"):
        self._observer: Observer | None = observer
        self._what = what

    def see(self, data: bytes) -> None:
        if self._observer is None or not data:
            return
        try:
            self._observer(data)
        except Exception:
            log.exception("watching %s failed; it passes on unwatched", self._what)
            self._observer = None


class TappedReader:
    """A file-like body (read()) whose chunks a Tap sees as the upstream reads them."""

    def __init__(self, body, tap: Tap):
        self._body = body
        self._tap = tap

    def read(self, size: int = -1) -> bytes:
        data = self._body.read(size)
        self._tap.see(data)
        return data


def tapped_chunks(chunks: Iterable[bytes], tap: Tap) -> Iterator[bytes]:
    for data in chunks:
        tap.see(data)
        yield data


def tap_body(body, tap: Tap):
    """Wrap a request body (bytes, file-like or iterable of chunks) so `tap` sees it."""
    if body is None:
        return None
    if isinstance(body, bytes | bytearray):
        tap.see(bytes(body))
        return body
    if hasattr(body, "read"):
        return TappedReader(body, tap)
    return tapped_chunks(body, tap)


class Prefix:
    """Keeps the first `limit` bytes; `complete` is False once more than that went by."""

    def __init__(self, limit: int):
        self.limit = limit
        self._parts: list[bytes] = []
        self._kept = 0
        self.seen = 0

    def __call__(self, data: bytes) -> None:
        self.seen += len(data)
        if self._kept < self.limit:
            piece = data[: self.limit - self._kept]
            self._parts.append(piece)
            self._kept += len(piece)

    @property
    def complete(self) -> bool:
        return self.seen <= self.limit

    def data(self) -> bytes:
        return b"".join(self._parts)
