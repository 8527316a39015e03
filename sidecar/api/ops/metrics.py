"""/sidecar/metrics: Prometheus exposition of every worker's counters plus the store's queue."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import Response
from flask import current_app

from sidecar.api.ops.access import admin_refusal
from sidecar.metrics import exposition
from sidecar.store.quota_limits import all_usage
from sidecar.store.scans import counts as scan_counts
from sidecar.store.status_report import queue_numbers

bp = Blueprint("metrics", __name__, url_prefix="/sidecar")


def _numbers() -> dict[str, Any]:
    numbers = queue_numbers()
    return {"deliveries": numbers.by_status, "depth": numbers.depth, "due_now": numbers.due_now,
            "scans": scan_counts(),
            "quotas": [(usage.project, usage.used, usage.hard) for usage in all_usage()]}


@bp.get("/metrics")
def metrics():
    runtime = current_app.extensions["sidecar"]
    if runtime.settings.metrics_auth:
        refused = admin_refusal(allow_session=False)
        if refused is not None:
            return refused
    body, content_type = exposition(lambda: runtime.executor.run(_numbers))
    return Response(body, content_type=content_type)
