"""Harbor's configurations, of which the sidecar has one: the global notification switch;
and the unauthenticated ping."""

from __future__ import annotations

from flask import Response
from flask import jsonify
from flask import request

from sidecar.api.harbor.blueprint import bp
from sidecar.api.harbor.blueprint import db
from sidecar.api.harbor.blueprint import empty
from sidecar.api.harbor.blueprint import runtime
from sidecar.api.harbor.params import bad_request
from sidecar.api.harbor.params import json_body
from sidecar.api.harbor.params import parse_bool
from sidecar.api.switches import NOTIFICATION_ENABLE
from sidecar.api.switches import set_notifications


def _notifications_enabled() -> bool:
    return bool(runtime().executor.run(runtime().notifications_enabled))


@bp.get("/configurations")
def get_configurations():
    return jsonify({NOTIFICATION_ENABLE: {"value": _notifications_enabled(), "editable": True}})


@bp.put("/configurations")
def put_configurations():
    raw = json_body(request.get_data(), "configurations")
    if not isinstance(raw, dict):
        raise bad_request("configurations must be a JSON object")
    for key in raw:
        if key != NOTIFICATION_ENABLE:
            raise bad_request(f"invalid config, item not supported by the sidecar, {key} "
                              f"(only {NOTIFICATION_ENABLE})")
    if NOTIFICATION_ENABLE in raw:
        value = parse_bool(raw[NOTIFICATION_ENABLE])
        if value is None:
            raise bad_request(f"item name {NOTIFICATION_ENABLE}: invalid bool value "
                              f"{raw[NOTIFICATION_ENABLE]!r}")
        db(set_notifications, value)
    return empty()


@bp.get("/ping")
def ping():
    return Response("Pong", content_type="text/plain")
