"""/sidecar/healthz and /sidecar/metrics without Flask: what probes and scrapers hit.

Liveness and readiness probes (deploy/kubernetes, deploy/compose.yaml, the Containerfile's
HEALTHCHECK) ask every few seconds and Prometheus scrapes every worker. A worker that served
them through Flask had to import Flask, Jinja2, Werkzeug, click and every API blueprint (about
8 MB of each worker, issue 13) just to answer them; `app.SidecarApp` serves both here as plain
WSGI and builds Flask only for the admin plane. The Flask routes (api.ops.status, api.ops.metrics)
answer through the same functions, so both paths send the same status, Content-Type and body.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

from sidecar.metrics import exposition
from sidecar.redact import redact_address

HEALTHZ = "/sidecar/healthz"
METRICS = "/sidecar/metrics"
#: The JSON body's type: what Flask's jsonify sends (no charset: JSON is UTF-8)
JSON = "application/json"
#: Werkzeug's status lines (upper-case reason), so the answer is the Flask route's byte for byte
STATUS_LINES = {200: "200 OK", 503: "503 SERVICE UNAVAILABLE"}


def healthz(runtime: Any) -> tuple[bytes, int]:
    """The body and status of /sidecar/healthz: 200 when the upstream answers, else 503.

    The body is what Flask's `jsonify` made of it (compact separators, ASCII, keys in order, a
    final newline), so the answer did not change when Flask stopped serving it.
    """
    up = runtime.upstream.healthy()
    body = {"status": "ok" if up else "upstream unavailable",
            "upstream": redact_address(runtime.upstream.url)}
    return json.dumps(body, separators=(",", ":")).encode() + b"\n", 200 if up else 503


def metrics(runtime: Any) -> tuple[bytes, str]:
    """The scrape body and its content type: every worker's counters plus the store's numbers
    (read on a database thread)."""
    return exposition(lambda: runtime.executor.run(_numbers))


def _numbers() -> dict[str, Any]:
    # imported at the first scrape: the status report's queries are the admin plane's
    from sidecar.store.quota_limits import all_usage
    from sidecar.store.scans import counts as scan_counts
    from sidecar.store.status_report import queue_numbers

    numbers = queue_numbers()
    return {"deliveries": numbers.by_status, "depth": numbers.depth, "due_now": numbers.due_now,
            "scans": scan_counts(),
            "quotas": [(usage.project, usage.used, usage.hard) for usage in all_usage()]}


def serves(path: str, method: str, runtime: Any) -> bool:
    """Whether `serve` answers this request without Flask: GET or HEAD of /sidecar/healthz, or
    of /sidecar/metrics while it needs no admin login (`sidecar.metrics_auth` off). Anything
    else (another method, a trailing slash, the admin check) is Flask's, as it was."""
    if method not in ("GET", "HEAD"):
        return False
    return path == HEALTHZ or (path == METRICS and not runtime.settings.metrics_auth)


def serve(path: str, method: str, runtime: Any,
          start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer a request `serves` took, as a WSGI application would (HEAD: the same head,
    no body, as Werkzeug answers it)."""
    if path == HEALTHZ:
        body, code = healthz(runtime)
        content_type = JSON
    else:
        body, content_type = metrics(runtime)
        code = 200
    start_response(STATUS_LINES[code], [("Content-Type", content_type),
                                        ("Content-Length", str(len(body)))])
    return [] if method == "HEAD" else [body]
