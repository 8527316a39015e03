"""/sidecar/healthz and /sidecar/status: is it working, what was sent, what failed and why.

/sidecar/status answers JSON to programs and an HTML page to browsers (Accept: text/html, or
?format=html), to the admin only unless `sidecar.public_status` (api.ops.access). Both come
from `store.status_report` shaped by `api.ops.report`, which shows no
secret: targets appear without auth headers, and addresses without userinfo or query values
(tokens often live there: Flux and VelaUX put them in the path or query).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import current_app
from flask import jsonify
from flask import render_template
from flask import request

from sidecar import timefmt
from sidecar.api.ops.access import admin_refusal
from sidecar.api.ops.report import quota_json
from sidecar.api.ops.report import status_json
from sidecar.redact import redact_address
from sidecar.registry.features import credential_report
from sidecar.store import replication_runs
from sidecar.store import retention_runs
from sidecar.store import target_health
from sidecar.store.quota_limits import all_usage
from sidecar.store.scans import status_section as scans_status
from sidecar.store.status_report import status_report

bp = Blueprint("status", __name__, url_prefix="/sidecar")
bp.add_app_template_filter(timefmt.when, "when")
bp.add_app_template_filter(timefmt.ago, "ago")


def collect_status(limit: int = 20) -> dict[str, Any]:
    """Everything /sidecar/status reports from the store (runs on a database thread)."""
    return status_json(status_report(limit))


def quotas_status() -> list[dict[str, Any]]:
    """Each project's storage quota: used, limit, state (runs on a database thread)."""
    return [quota_json(usage) for usage in all_usage()]


def disabled_status() -> list[dict[str, Any]]:
    """Targets disabled after failing too long (sidecar.delivery.auto_disable_after)."""
    return [{"policy_id": t.policy_id, "project": t.project, "policy": t.policy,
             "address": t.address, "disabled_at": t.since, "reason": t.reason,
             "skipped_deliveries": t.skipped} for t in target_health.disabled_targets()]


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
    if not runtime.settings.public_status:
        refused = admin_refusal(allow_session=True, browser=wants_html())
        if refused is not None:
            return refused
    body = runtime.executor.run(collect_status)
    body["upstream"] = {"url": redact_address(runtime.upstream.url),
                        "healthy": runtime.upstream.healthy()}
    body["rules"] = runtime.rules_state()
    body["recorder"] = {"buffered": runtime.recorder.backlog, "dropped": runtime.recorder.dropped}
    body["notification_enable"] = runtime.executor.run(runtime.notifications_enabled)
    body["registry_credential"] = credential_report(runtime.registry.has_credential)
    body["scans"] = runtime.executor.run(scans_status)
    body["replication"] = runtime.executor.run(replication_runs.report)
    body["retention"] = runtime.executor.run(retention_runs.report)
    body["quotas"] = runtime.executor.run(quotas_status)
    body["disabled_targets"] = runtime.executor.run(disabled_status)
    if wants_html():
        response = current_app.make_response(render_template("status.html", s=body))
    else:
        response = jsonify(body)
    response.headers["Vary"] = "Accept"
    response.headers["Cache-Control"] = "no-store"
    return response
