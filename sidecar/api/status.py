"""/sidecar/healthz and /sidecar/status: is it working, what was sent, what failed and why.

/sidecar/status answers JSON to programs and an HTML page to browsers (Accept: text/html, or
?format=html). Both come from `store.reports`, which shows no secret: targets appear without
auth headers, and addresses without userinfo or query values (tokens often live there: Flux
and VelaUX put them in the path or query).
"""

from __future__ import annotations

import time
from datetime import UTC
from datetime import datetime
from typing import Any

from flask import Blueprint
from flask import current_app
from flask import jsonify
from flask import render_template
from flask import request

from sidecar.registry.features import credential_report
from sidecar.store.reports import public_target  # noqa: F401  (re-exported for the API)
from sidecar.store.reports import redact_address
from sidecar.store.reports import status_report

bp = Blueprint("status", __name__, url_prefix="/sidecar")


def collect_status(limit: int = 20) -> dict[str, Any]:
    """Everything /sidecar/status reports from the store (runs on a database thread)."""
    return status_report(limit)


def wants_html() -> bool:
    chosen = request.args.get("format", "")
    if chosen:
        return chosen == "html"
    accept = request.accept_mimetypes
    return accept["text/html"] > accept["application/json"]


@bp.get("/healthz")
def healthz():
    runtime = current_app.extensions["sidecar"]
    up = runtime.upstream.healthy()
    body = {"status": "ok" if up else "upstream unavailable",
            "upstream": redact_address(runtime.upstream.url)}
    return jsonify(body), 200 if up else 503


@bp.get("/status")
def status():
    runtime = current_app.extensions["sidecar"]
    body = runtime.executor.run(collect_status)
    body["upstream"] = {"url": redact_address(runtime.upstream.url),
                        "healthy": runtime.upstream.healthy()}
    body["rules"] = runtime.rules_state()
    body["recorder"] = {"buffered": runtime.recorder.backlog, "dropped": runtime.recorder.dropped}
    body["notification_enable"] = runtime.executor.run(runtime.notifications_enabled)
    body["registry_credential"] = credential_report(runtime.registry.has_credential)
    if wants_html():
        response = current_app.make_response(render_template("status.html", s=body))
    else:
        response = jsonify(body)
    response.headers["Vary"] = "Accept"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_template_filter("when")
def when(value: float | None) -> str:
    """UTC time with how long ago, for people reading the page."""
    if not value:
        return "never"
    stamp = datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{stamp} ({ago(value)})"


@bp.app_template_filter("ago")
def ago(value: float | None) -> str:
    if not value:
        return "never"
    delta = time.time() - value
    future = delta < 0
    delta = abs(delta)
    if delta < 60:
        text = f"{delta:.0f}s"
    elif delta < 3600:
        text = f"{delta / 60:.0f}m"
    elif delta < 86400:
        text = f"{delta / 3600:.1f}h"
    else:
        text = f"{delta / 86400:.1f}d"
    return f"in {text}" if future else f"{text} ago"
