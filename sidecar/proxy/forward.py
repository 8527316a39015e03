"""The proxy WSGI application: forward anything, stream both ways, report what happened.

A plain WSGI callable, not a Flask view: on the proxy path Flask's per-request machinery costs
more than the forwarding (reference/performance-anchors). Flask serves only /sidecar/ and the API.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from collections.abc import Iterable

import urllib3

from sidecar.events.chartinfer import oci_chart_events
from sidecar.events.infer import Exchange
from sidecar.events.infer import infer
from sidecar.events.infer import is_digest
from sidecar.events.infer import manifest_route
from sidecar.events.model import ArtifactEvent
from sidecar.neterrors import errno_reason
from sidecar.proxy.errors import registry_error
from sidecar.proxy.headers import forwarded_headers
from sidecar.proxy.headers import observed
from sidecar.proxy.quota_gate import QuotaGate
from sidecar.proxy.request import ProxyRequest
from sidecar.proxy.stream import client_gone
from sidecar.proxy.stream import relay
from sidecar.proxy.stream import request_body
from sidecar.proxy.tags import Describer
from sidecar.proxy.tags import TagIndex
from sidecar.proxy.taps import Prefix
from sidecar.proxy.taps import Tap
from sidecar.proxy.taps import tap_body
from sidecar.proxy.upstream import Upstream
from sidecar.registry import RegistryClient

log = logging.getLogger(__name__)

#: Manifest bytes kept to tell a Helm chart (distribution's own manifest limit is 4 MiB).
MANIFEST_LIMIT = 4 * 1024 * 1024
#: Request headers inference needs; copied into the Exchange (lower-case).
OBSERVED_REQUEST = ("authorization", "content-type", "user-agent", "x-request-id", "host")
OBSERVED_RESPONSE = ("docker-content-digest", "content-type", "content-length")
#: GET /v2/<name>/blobs/<digest> (not .../blobs/uploads/...)
_BLOB_GET = re.compile(r"^/v2/.+/blobs/[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+\Z")

Sink = Callable[[list[ArtifactEvent]], None]


class ProxyApp:
    """WSGI: forward to `upstream`, hand inferred events to `sink` (which must not block)."""

    def __init__(self, upstream: Upstream, sink: Sink, index: TagIndex | None = None,
                 observe: Callable[[str, int], None] | None = None,
                 registry: RegistryClient | None = None, blob_redirect: str = "",
                 quota: QuotaGate | None = None):
        self.upstream = upstream
        #: registry root clients can reach: blob GETs are sent there (307), never proxied
        self.blob_redirect = blob_redirect.rstrip("/")
        self.sink = sink
        self.index = index or TagIndex()
        # the sidecar's own client for pre-delete lookups (anonymous when none is given)
        self.describer = Describer(registry or RegistryClient(upstream.url), self.index)
        self.observe = observe
        self.quota = quota  # storage quotas (issue 10): refuses or holds pushes

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        """WSGI entry (the stock gunicorn worker, tests)."""
        return self.serve(ProxyRequest.from_environ(environ), start_response)

    def serve(self, request: ProxyRequest, start_response) -> Iterable[bytes]:
        """Forward one request; `start_response` and the result follow WSGI's contract."""
        method = request.method
        path = request.path
        target = request.target
        if self.blob_redirect and method == "GET" and _BLOB_GET.match(path):
            self._observe(method, 307)
            start_response("307 Temporary Redirect", [
                ("Location", self.blob_redirect + target), ("Content-Length", "0"),
                ("Docker-Distribution-Api-Version", "registry/2.0")])
            return []
        headers = forwarded_headers(request)  # HTTP/1.0 without Host: the address we serve

        try:
            body, chunked = request_body(request)
        except ValueError:
            return _bad_request(start_response, "invalid Content-Length")

        # -- quota gate (issue 10): refuse a push past its project's limit, hold what it adds
        ticket = None if self.quota is None else self.quota.admit(
            method, path, request.query, headers, body, chunked)
        if ticket is not None:
            if ticket.denied is not None:
                self._observe(method, 403)
                return ticket.refuse(start_response)
            body, chunked = ticket.body, ticket.chunked
        # -- end of the quota gate

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
            if ticket is not None:
                ticket.answered(None)  # quota gate: no answer, nothing added
            if client_gone(exc):
                log.info("%s %s abandoned by the client mid-body", method, path)
                return _bad_request(start_response, "request body incomplete")
            log.warning("upstream %s unavailable for %s %s: %s", self.upstream.url, method,
                        path, exc)
            self._observe(method, 502)
            return registry_error(start_response, "502 Bad Gateway", "UNAVAILABLE",
                                  f"upstream registry unavailable: {errno_reason(exc, 200)}")

        status = response.status
        self._observe(method, status)

        def done() -> None:
            if ticket is not None:
                ticket.answered(status, response.headers)  # quota gate: settle the hold
            if route is not None:
                self._report(route, method, status, headers, response.headers,
                             prior_tags, prior_size, path,
                             manifest.data() if manifest and manifest.complete else b"")

        tap = Tap(manifest, "manifest") if manifest and method == "GET" and status == 200 else None
        return relay(response, method, start_response, done, tap)

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
            request_headers=observed(headers, OBSERVED_REQUEST),
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


def _bad_request(start_response, message: str) -> list[bytes]:
    return registry_error(start_response, "400 Bad Request", "UNSUPPORTED", message)
