"""The proxy WSGI application: forward anything, stream both ways, report what happened.

A plain WSGI callable, not a Flask view: on the proxy path Flask's per-request machinery costs
more than the forwarding (reference/performance-anchors). Flask serves only /sidecar/ and the API.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import urllib3

from sidecar.events.chartinfer import oci_chart_events
from sidecar.events.infer import Exchange
from sidecar.events.infer import infer
from sidecar.events.infer import is_digest
from sidecar.events.infer import manifest_route
from sidecar.events.model import ArtifactEvent
from sidecar.proxy.tags import Describer
from sidecar.proxy.tags import TagIndex
from sidecar.proxy.taps import Prefix
from sidecar.proxy.taps import Tap
from sidecar.proxy.taps import tap_body
from sidecar.proxy.upstream import READ_CHUNK as RESPONSE_CHUNK
from sidecar.proxy.upstream import SEND_CHUNK
from sidecar.proxy.upstream import Upstream

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
#: Manifest bytes kept to tell a Helm chart (distribution's own manifest limit is 4 MiB).
MANIFEST_LIMIT = 4 * 1024 * 1024
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade",
})
#: Request headers inference needs; copied into the Exchange (lower-case).
OBSERVED_REQUEST = ("authorization", "content-type", "user-agent", "x-request-id", "host")
OBSERVED_RESPONSE = ("docker-content-digest", "content-type", "content-length")
_ENVIRON_HEADERS = {"CONTENT_TYPE": "Content-Type", "CONTENT_LENGTH": "Content-Length"}

Sink = Callable[[list[ArtifactEvent]], None]


#: environ key -> (header name, lower-case name), remembered: this runs for every request.
#: Bounded, because clients choose the header names.
_NAMES: dict[str, tuple[str, str]] = {
    key: (name, name.lower()) for key, name in _ENVIRON_HEADERS.items()}


def _header_name(key: str) -> tuple[str, str]:
    known = _NAMES.get(key)
    if known is None:
        name = "-".join(part.capitalize() for part in key[5:].split("_"))
        known = (name, name.lower())
        if len(_NAMES) < 512:
            _NAMES[key] = known
    return known


def request_headers(environ: dict) -> dict[str, str]:
    """The client's headers minus hop-by-hop ones (gunicorn has already joined repeats)."""
    dropped = _hop_by_hop(environ.get("HTTP_CONNECTION", ""))
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_") or (key in _ENVIRON_HEADERS and value != ""):
            name, lower = _header_name(key)
            if lower not in dropped:
                headers[name] = value
    return headers


def _hop_by_hop(connection: str) -> frozenset[str]:
    """The fixed hop-by-hop names plus any the Connection header lists (RFC 9110 7.6.1)."""
    if not connection:
        return HOP_BY_HOP
    return HOP_BY_HOP | {t.strip().lower() for t in connection.split(",") if t.strip()}


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


def request_body(environ: dict) -> tuple[Any, bool]:
    """The client's request body to send on, and whether it goes chunked.

    A body of known length streams from a bounded view of wsgi.input; one without (podman's
    chunked PATCH) is re-chunked as it arrives. Raises ValueError for a non-numeric
    Content-Length.
    """
    length = environ.get("CONTENT_LENGTH")
    if length:
        size = int(length)
        return (_Body(environ["wsgi.input"], size) if size > 0 else b""), False
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return _chunks(environ["wsgi.input"]), True
    return None, False


class _Streamed:
    """Response body iterator; reports the exchange once the client has it, frees the conn."""

    def __init__(self, response: urllib3.BaseHTTPResponse, done: Callable[[], None],
                 tap: Tap | None = None):
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


def unavailable(start_response, message: str, status: str = "502 Bad Gateway") -> list[bytes]:
    body = json.dumps(
        {"errors": [{"code": "UNAVAILABLE", "message": message}]}
    ).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


class ProxyApp:
    """WSGI: forward to `upstream`, hand inferred events to `sink` (which must not block)."""

    def __init__(self, upstream: Upstream, sink: Sink, index: TagIndex | None = None,
                 observe: Callable[[str, int], None] | None = None):
        self.upstream = upstream
        self.sink = sink
        self.index = index or TagIndex()
        self.describer = Describer(upstream, self.index)
        self.observe = observe

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "") or "/"
        target = environ.get("RAW_URI") or quote(path) + (
            "?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else "")
        headers = request_headers(environ)
        if "Host" not in headers:  # HTTP/1.0: the registry must still build URLs back to us
            headers["Host"] = _local_netloc(environ)
        remote = environ.get("REMOTE_ADDR", "")
        if remote:
            prior = headers.get("X-Forwarded-For")
            headers["X-Forwarded-For"] = f"{prior}, {remote}" if prior else remote
        headers.setdefault("X-Forwarded-Proto", environ.get("wsgi.url_scheme", "http"))

        try:
            body, chunked = request_body(environ)
        except ValueError:
            return self._bad_request(start_response, "invalid Content-Length")

        route = manifest_route(path)
        prior_tags: tuple[str, ...] = ()
        prior_size = None
        # The manifest's bytes, read as they pass (bounded): they tell a Helm chart (OCI).
        manifest = Prefix(MANIFEST_LIMIT) if route and method in ("PUT", "GET") else None
        if manifest is not None and method == "PUT" and body is not None:
            body = tap_body(body, Tap(manifest, "manifest upload"))
        if route and method == "DELETE" and is_digest(route[1]):
            try:
                prior_tags, prior_size, prior = self.describer.describe_manifest(
                    route[0], route[1], headers)
                manifest = Prefix(MANIFEST_LIMIT)
                manifest(prior)
            except Exception:  # never let bookkeeping stop the client's request
                log.exception("looking up %s@%s before delete failed", *route)

        try:
            response = self.upstream.request(method, target, headers, body=body, chunked=chunked)
        except urllib3.exceptions.HTTPError as exc:
            if _client_gone(exc):
                log.info("%s %s abandoned by the client mid-body", method, path)
                return self._bad_request(start_response, "request body incomplete")
            log.warning("upstream %s unavailable for %s %s: %s", self.upstream.url, method,
                        path, exc)
            self._observe(method, 502)
            return unavailable(start_response, f"upstream registry unavailable: {_reason(exc)}")

        dropped = _hop_by_hop(response.headers.get("Connection", ""))
        out_headers = [
            (k, v) for k, v in response.headers.iteritems() if k.lower() not in dropped
        ]
        start_response(f"{response.status} {response.reason or ''}".rstrip(), out_headers)
        status = response.status
        self._observe(method, status)

        def done() -> None:
            if route is not None:
                self._report(route, method, status, headers, response.headers,
                             prior_tags, prior_size, path,
                             manifest.data() if manifest and manifest.complete else b"")

        if method == "HEAD":
            response.release_conn()
            done()
            return []
        tap = Tap(manifest, "manifest") if manifest and method == "GET" and status == 200 else None
        return _Streamed(response, done, tap)

    def _observe(self, method: str, status: int) -> None:
        if self.observe is not None:
            self.observe(method, status)

    def _report(self, route, method, status, headers, response_headers, prior_tags,
                prior_size, path, manifest: bytes = b"") -> None:
        repository, reference = route
        digest = response_headers.get("Docker-Content-Digest", "")
        if method in ("PUT", "GET", "HEAD") and digest and not is_digest(reference) \
                and status in (200, 201):
            self.index.remember(repository, reference, digest)
        if method == "DELETE" and status == 202:
            self.index.forget_digest(repository, reference)
        exchange = Exchange(
            method=method,
            path=path,
            status=status,
            request_headers={k.lower(): v for k, v in headers.items()
                             if k.lower() in OBSERVED_REQUEST},
            response_headers={k.lower(): response_headers.get(k, "")
                              for k in OBSERVED_RESPONSE if k in response_headers},
            occur_at=int(time.time()),
            prior_tags=prior_tags,
            prior_size=prior_size,
        )
        events = infer(exchange)
        if events and manifest:  # a Helm chart also fires its chart event
            events.extend(oci_chart_events(events, manifest))
        if events:
            self.sink(events)

    @staticmethod
    def _bad_request(start_response, message: str) -> list[bytes]:
        body = json.dumps({"errors": [{"code": "UNSUPPORTED", "message": message}]}).encode()
        start_response("400 Bad Request", [("Content-Type", "application/json"),
                                           ("Content-Length", str(len(body)))])
        return [body]


def _client_gone(exc: BaseException) -> bool:
    """Whether urllib3's error wraps our ClientGone (as an argument or as the context)."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, ClientGone) or any(isinstance(a, ClientGone) for a in exc.args):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _local_netloc(environ: dict) -> str:
    """host:port the client connected to (the bind address may be 0.0.0.0)."""
    try:
        host, port = environ["gunicorn.socket"].getsockname()[:2]
    except (KeyError, AttributeError, OSError, TypeError, ValueError):
        host, port = environ.get("SERVER_NAME", ""), environ.get("SERVER_PORT", "")
    host = str(host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "Errno" in text:
        return text[text.index("[Errno"):].split("'")[0].rstrip(")")
    return text[:200]
