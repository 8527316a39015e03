"""/sidecar/metrics: Prometheus exposition of every worker's counters plus the store's queue."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import current_app

from sidecar.metrics import exposition
from sidecar.store.reports import queue_numbers

bp = Blueprint("metrics", __name__, url_prefix="/sidecar")


@bp.get("/metrics")
def metrics():
    runtime = current_app.extensions["sidecar"]
    body, content_type = exposition(lambda: runtime.executor.run(queue_numbers))
    return Response(body, content_type=content_type)
