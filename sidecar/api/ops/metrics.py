"""/sidecar/metrics: Prometheus exposition of every worker's counters plus the store's queue.

With `sidecar.metrics_auth` off a worker answers it without Flask (api.ops.probes); this route
checks the admin login when it is on, and serves the test client.
"""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import current_app

from sidecar.api.ops import probes
from sidecar.api.ops.access import admin_refusal

bp = Blueprint("metrics", __name__, url_prefix="/sidecar")


@bp.get("/metrics")
def metrics():
    runtime = current_app.extensions["sidecar"]
    if runtime.settings.metrics_auth:
        refused = admin_refusal(allow_session=False)
        if refused is not None:
            return refused
    body, content_type = probes.metrics(runtime)
    return Response(body, content_type=content_type)
