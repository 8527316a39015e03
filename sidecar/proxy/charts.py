"""The chart proxy: ChartMuseum and Harbor chart-repository routes to the chart upstream.

Like the registry proxy, a plain WSGI callable that streams both ways and reports events after
the client has its answer. What it adds:
- Harbor's legacy routes are rewritten to ChartMuseum depth-1 routes, as Harbor's core did;
- an upload's chart name and version are read from the package as it streams through;
- a download's file name is resolved against the repository's index;
- Harbor's `DELETE .../charts/<name>` (every version; ChartMuseum has no such route) is done
  here: the versions are listed first, then each is deleted upstream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from collections.abc import Iterable
from urllib.parse import quote
from urllib.parse import urlsplit

import urllib3

from sidecar.events.chartfiles import versions_from_listing
from sidecar.events.chartinfer import ChartExchange
from sidecar.events.chartinfer import infer_chart
from sidecar.events.chartroutes import CHART
from sidecar.events.chartroutes import CHARTS
from sidecar.events.chartroutes import FILE
from sidecar.events.chartroutes import ChartRoute
from sidecar.events.chartroutes import parse_chart_route
from sidecar.events.chartsniff import UploadInspector
from sidecar.neterrors import errno_reason
from sidecar.proxy.chartindex import ChartIndex
from sidecar.proxy.errors import chartmuseum_error
from sidecar.proxy.errors import registry_error
from sidecar.proxy.headers import client_scheme
from sidecar.proxy.headers import forwarded_headers
from sidecar.proxy.headers import lookup_headers
from sidecar.proxy.headers import observed
from sidecar.proxy.request import ProxyRequest
from sidecar.proxy.stream import relay
from sidecar.proxy.stream import relay_head
from sidecar.proxy.stream import request_body
from sidecar.proxy.taps import Tap
from sidecar.proxy.taps import tap_body
from sidecar.proxy.upstream import Upstream

log = logging.getLogger(__name__)

#: Default bound on how much of an upload is inspected for its Chart.yaml.
INSPECT_LIMIT = 8 * 1024 * 1024
_OBSERVED = ("authorization", "host", "x-request-id")

Sink = Callable[[list], None]


class ChartProxy:
    """WSGI: forward chart routes to `upstream`, hand chart events to `sink` (non-blocking)."""

    def __init__(self, upstream: Upstream, sink: Sink, *, depth: int = 0,
                 project: str = "library", inspect_limit: int = INSPECT_LIMIT,
                 observe: Callable[[str, int], None] | None = None):
        self.upstream = upstream
        self.sink = sink
        self.depth = depth
        self.project = project
        self.inspect_limit = inspect_limit
        self.observe = observe
        self.prefix = urlsplit(upstream.url).path.rstrip("/")  # ChartMuseum --context-path
        self.index = ChartIndex(upstream, self.prefix)

    def handles(self, path: str) -> bool:
        return parse_chart_route(path, self.depth, self.project) is not None

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        """WSGI entry (the stock gunicorn worker, tests)."""
        return self.serve(ProxyRequest.from_environ(environ), start_response)

    def serve(self, request: ProxyRequest, start_response) -> Iterable[bytes]:
        """Forward one chart request; `start_response` and the result follow WSGI's contract."""
        method = request.method.upper()
        path = request.path
        query = request.query
        route = parse_chart_route(path, self.depth, self.project)
        if route is not None and route.harbor:
            target = route.upstream_path + (f"?{query}" if query else "")
        else:  # ChartMuseum's own routes go through byte for byte
            target = request.target
        scheme = client_scheme(request)
        headers = forwarded_headers(request, self.upstream.netloc)
        if route is not None and route.harbor and route.kind == CHART and method == "DELETE":
            return self._delete_chart(route, headers, scheme, start_response)

        try:
            body, chunked = request_body(request)
        except ValueError:
            return chartmuseum_error(start_response, "400 Bad Request", "invalid Content-Length")

        resolved = None
        if route is not None and route.kind == FILE and method == "GET" \
                and route.filename.endswith(".tgz"):
            resolved = self._resolve_soon(route, headers)
        inspector = None
        if route is not None and route.kind == CHARTS and method == "POST" and body is not None:
            inspector = UploadInspector(headers.get("Content-Type", ""), self.inspect_limit)
            body = tap_body(body, Tap(inspector.feed, f"chart upload to {path}"))

        try:
            response = self.upstream.request(method, self.prefix + target, headers, body=body,
                                             chunked=chunked)
        except urllib3.exceptions.HTTPError as exc:
            log.warning("chart upstream %s unavailable for %s %s: %s", self.upstream.url,
                        method, path, exc)
            self._observe(method, 502)
            return _unavailable(start_response, exc)

        status = response.status
        self._observe(method, status)
        response_length = response.headers.get("Content-Length")

        def done() -> None:
            if route is None:
                return
            try:
                self._report(route, method, status, headers, scheme, inspector, resolved,
                             response_length, path)
            except Exception:  # bookkeeping never fails the client's request
                log.exception("reporting chart %s %s failed", method, path)

        return relay(response, method, start_response, done)

    # -- events ----------------------------------------------------------------------------
    def _resolve_soon(self, route: ChartRoute, headers: dict[str, str]
                      ) -> Callable[[], tuple[str, str] | None]:
        """Start resolving a download's file name while the file streams (index as it is now).

        A cached index answers at once; otherwise a greenlet reads the index alongside the
        download, so the event is ready when the client has its file.
        """
        known = self.index.cached(route.index_path, route.filename)
        if known is not None:
            return lambda: known
        from gevent import spawn  # the proxy runs in a gevent worker

        lookup = dict(headers)
        job = spawn(self.index.resolve, route.index_path, route.filename, lookup)
        return lambda: job.get(timeout=60)

    def _report(self, route: ChartRoute, method: str, status: int, headers: dict[str, str],
                scheme: str, inspector: UploadInspector | None,
                resolved: Callable[[], tuple[str, str] | None] | None,
                response_length: str | None, path: str) -> None:
        chart, size = None, None
        if inspector is not None:
            inspector.finish()
            chart, size = inspector.chart, inspector.size
            if status == 201 and chart is None:
                log.warning("chart upload %s: %s; proxied unchanged, no UPLOAD_CHART event",
                            path, inspector.problem)
        elif resolved is not None and status == 200:
            chart = resolved()
            if chart is None:
                log.warning("chart download %s: %s is not in the index and does not split as "
                            "<name>-<semver>.tgz; no DOWNLOAD_CHART event", path, route.filename)
            size = int(response_length) if (response_length or "").isdigit() else None
        self._emit(route, method, status, headers, scheme, chart=chart, size=size)
        if (method == "POST" and status == 201) or (method == "DELETE" and status == 200):
            self.index.forget(route.index_path)

    def _emit(self, route: ChartRoute, method: str, status: int, headers: dict[str, str],
              scheme: str, **found) -> None:
        exchange = ChartExchange(
            route=route,
            method=method,
            status=status,
            request_headers=observed(headers, _OBSERVED),
            occur_at=int(time.time()),
            scheme=scheme,
            **found,
        )
        events = infer_chart(exchange)
        if events:
            self.sink(events)

    # -- Harbor: delete every version of a chart ---------------------------------------------
    def _delete_chart(self, route: ChartRoute, headers: dict[str, str], scheme: str,
                      start_response) -> Iterable[bytes]:
        """Harbor's DeleteChart: list the versions, delete each; one event for all deleted."""
        listing = route.versions_path(route.name)
        lookup = lookup_headers(headers, "x-forwarded-for", "x-forwarded-proto", "x-request-id")
        try:
            listed = self.upstream.request("GET", self.prefix + listing, lookup, preload=True)
        except urllib3.exceptions.HTTPError as exc:
            self._observe("DELETE", 502)
            return _unavailable(start_response, exc)
        if listed.status != 200:  # no such chart, no access: the upstream's answer, as is
            self._observe("DELETE", listed.status)
            relay_head(listed, start_response)
            return [listed.data]
        versions = versions_from_listing(listed.data)
        deleted: list[str] = []
        failures: list[str] = []
        for version in versions:
            target = f"{self.prefix}{listing}/{quote(version, safe='+')}"
            try:
                answer = self.upstream.request("DELETE", target, lookup, preload=True)
            except urllib3.exceptions.HTTPError as exc:
                failures.append(f"{version}: {errno_reason(exc, 200)}")
                continue
            if answer.status == 200:
                deleted.append(version)
            else:
                text = answer.data[:200].decode("utf-8", "replace")
                failures.append(f"{version}: {answer.status} {text}")
        if deleted:
            self._emit(route, "DELETE", 200, headers, scheme, versions=tuple(deleted))
            self.index.forget(route.index_path)
        if failures:
            log.warning("deleting chart %s/%s: %d of %d versions failed: %s", route.tenant,
                        route.name, len(failures), len(versions), "; ".join(failures))
            self._observe("DELETE", 500)
            message = f"failed to delete chart {route.name}: {'; '.join(failures)}"
            return registry_error(start_response, "500 Internal Server Error",
                                  "INTERNAL_SERVER_ERROR", message)
        self._observe("DELETE", 200)
        start_response("200 OK", [("Content-Length", "0")])
        return []

    def _observe(self, method: str, status: int) -> None:
        if self.observe is not None:
            self.observe(method, status)


def _unavailable(start_response, exc: Exception) -> list[bytes]:
    return chartmuseum_error(start_response, "502 Bad Gateway",
                             f"chart upstream unavailable: {errno_reason(exc, 200)}")
