"""Beyond Harbor: a policy's target health. Targets whose every delivery failed for
`sidecar.delivery.auto_disable_after` are disabled (store.target_health); their deliveries are
recorded as skipped meanwhile.

- GET  .../webhook/policies/{id}/health: each target that failed or was disabled, since when,
  why, and how many deliveries were skipped.
- POST .../webhook/policies/{id}/health/reenable[?replay=false]: re-enable them and (unless
  replay=false) queue the skipped deliveries again.
"""

from __future__ import annotations

from flask import jsonify
from flask import request

from sidecar.api.harbor.blueprint import bp
from sidecar.api.harbor.blueprint import db
from sidecar.api.harbor.blueprint import project
from sidecar.api.harbor.params import bad_request
from sidecar.api.harbor.params import parse_bool
from sidecar.store import policy_catalog as catalog
from sidecar.store import target_health

BASE = "/projects/<ref>/webhook/policies/<int:policy_id>/health"


@bp.get(BASE)
def policy_health(ref: str, policy_id: int):
    found = project(ref)
    db(catalog.get_policy, found.id, policy_id)
    return jsonify({"policy_id": policy_id, "targets": db(target_health.health_of, policy_id)})


@bp.post(f"{BASE}/reenable")
def reenable(ref: str, policy_id: int):
    found = project(ref)
    db(catalog.get_policy, found.id, policy_id)
    replay = parse_bool(request.args.get("replay", "true"))
    if replay is None:
        raise bad_request("replay must be true or false")
    reenabled, replayed = db(target_health.reenable_and_replay, policy_id, bool(replay))
    return jsonify({"reenabled": reenabled, "replayed": replayed})
