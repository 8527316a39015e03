"""Bodies through the proxy, both ways, without holding them: the client's request body on to
the upstream, and the upstream's answer back to the client (with a callback once it has it)."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from typing import Any

from sidecar.proxy.headers import response_headers
from sidecar.proxy.taps import Tap
from sidecar.proxy.upstream import READ_CHUNK as RESPONSE_CHUNK
from sidecar.proxy.upstream import SEND_CHUNK
from sidecar.proxy.upstream import Response

CHUNK = 64 * 1024


class ClientGone(ConnectionAbortedError):
    """The client disconnected before sending the whole request body."""


class _Body:
    """A file-like view of wsgi.input limited to Content-Length, read in big chunks."""

    def __init__(self, stream, length: int):
        self._stream = stream
        self._left = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = CHUNK if size is None or size < 0 else min(size, SEND_CHUNK)
        data = self._stream.read(min(size, self._left))
        if not data:
            # The client left mid-body. Ending quietly would leave the registry waiting for
            # the rest and this request stuck until the read timeout; abort the upstream send.
            raise ClientGone(f"client closed with {self._left} body bytes unsent")
        self._left -= len(data)
        return data


def _chunks(stream) -> Iterator[bytes]:
    while True:
        try:
            data = stream.read(CHUNK)
        except OSError as exc:  # gunicorn's NoMoreData: the client left mid-body
            raise ClientGone(f"chunked body cut short: {exc!r}") from exc
        if not data:
            return
        yield data


def request_body(request) -> tuple[Any, bool]:
    """The client's request body to send on, and whether it goes chunked.

    `request` is a proxy.request.ProxyRequest. A body of known length streams from a bounded
    view of it; one without (podman's chunked PATCH) is re-chunked as it arrives. Raises
    ValueError for a non-numeric Content-Length.
    """
    if request.content_length:
        size = int(request.content_length)
        if size < 0:
            raise ValueError(f"negative Content-Length {size}")
        return (_Body(request.body, size) if size > 0 else b""), False
    if request.chunked:
        return _chunks(request.body), True
    return None, False


def client_gone(exc: BaseException) -> bool:
    """Whether the upstream client's error wraps our ClientGone (as an argument or context)."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, ClientGone) or any(isinstance(a, ClientGone) for a in exc.args):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


class Streamed:
    """Response body iterator; calls `done` once the client has it, frees the connection."""

    def __init__(self, response: Response, done: Callable[[], None], tap: Tap | None = None):
        self._response = response
        self._done = done
        self._complete = False
        self._tap = tap

    def __iter__(self) -> Iterator[bytes]:
        if self._tap is None:
            yield from self._response.stream(RESPONSE_CHUNK, decode_content=False)
        else:
            for chunk in self._response.stream(RESPONSE_CHUNK, decode_content=False):
                self._tap.see(chunk)
                yield chunk
        self._complete = True

    def close(self) -> None:
        try:
            if not self._complete:
                self._response.close()  # unread body: never reuse this connection
            self._response.release_conn()
        finally:
            self._done()


def relay_head(response: Response, start_response) -> None:
    """Start the client's answer with the upstream's status and end-to-end headers."""
    start_response(f"{response.status} {response.reason or ''}".rstrip(),
                   response_headers(response.headers))


def relay(response: Response, method: str, start_response, done: Callable[[], None],
          tap: Tap | None = None) -> Iterable[bytes]:
    """The upstream's answer as the client's; `done` runs once the client has all of it."""
    relay_head(response, start_response)
    if method == "HEAD":
        response.release_conn()
        done()
        return []
    return Streamed(response, done, tap)
