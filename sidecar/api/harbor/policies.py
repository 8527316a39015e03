"""Webhook policies of a project: list, create, read, replace, delete; supported events and
formats; last triggers."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask import request

from sidecar.api.harbor import shapes
from sidecar.api.harbor.blueprint import bp
from sidecar.api.harbor.blueprint import created
from sidecar.api.harbor.blueprint import db
from sidecar.api.harbor.blueprint import empty
from sidecar.api.harbor.blueprint import listing
from sidecar.api.harbor.blueprint import project
from sidecar.api.harbor.params import bad_request
from sidecar.api.harbor.params import json_body
from sidecar.api.harbor.params import page_from
from sidecar.api.harbor.params import parse_bool
from sidecar.api.harbor.params import parse_q
from sidecar.api.harbor.params import parse_sort
from sidecar.dispatch import formats
from sidecar.events.model import EVENT_TYPES
from sidecar.rules.policy import Policy
from sidecar.rules.policy import Problem
from sidecar.rules.policy import parse_policy
from sidecar.store import delivery_history as history
from sidecar.store import policy_catalog as catalog
from sidecar.store.views import Page


def _first_problem(problems: list[Problem]) -> str:
    """Harbor checks event types, then targets; our other checks come after."""
    order = {"event_types": 0, "targets": 1}
    ranked = sorted(problems, key=lambda p: order.get(str(p.path[0]) if p.path else "", 2))
    return ranked[0].message


def _valid_policy(raw: Any) -> Policy:
    """The one validation shared with the rules file; `enabled` omitted means false (Harbor)."""
    if not isinstance(raw, dict):
        raise bad_request("a webhook policy must be a JSON object")
    policy, problems = parse_policy({"enabled": False, **raw}, allow_unknown=True)
    if problems:
        raise bad_request(_first_problem(problems))
    return policy


def _policy_filters(q: dict[str, Any]) -> dict[str, Any]:
    """`q` as the store filters policies: `enabled` read as Go's strconv.ParseBool reads it."""
    out = dict(q)
    if isinstance(out.get("enabled"), str):
        out["enabled"] = bool(parse_bool(out["enabled"]))
    return out


@bp.get("/projects/<ref>/webhook/policies")
def list_policies(ref: str):
    found = project(ref)
    page = page_from(request.args)
    filters = _policy_filters(parse_q(request.args.get("q", "")))
    total, rows = db(catalog.list_policies, found.id, page, filters,
                     parse_sort(request.args.get("sort")))
    return listing([shapes.policy_json(p) for p in rows], total, page)


@bp.post("/projects/<ref>/webhook/policies")
def create_policy(ref: str):
    raw = json_body(request.get_data(), "policy")
    policy = _valid_policy(raw)
    found = project(ref)
    creator = raw.get("creator") if isinstance(raw.get("creator"), str) else ""
    new_id = db(catalog.create_policy, found.id, policy, creator or "admin")
    return created(request.path, new_id)


@bp.get("/projects/<ref>/webhook/policies/<int:policy_id>")
def get_policy(ref: str, policy_id: int):
    found = project(ref)
    return jsonify(shapes.policy_json(db(catalog.get_policy, found.id, policy_id)))


@bp.put("/projects/<ref>/webhook/policies/<int:policy_id>")
def update_policy(ref: str, policy_id: int):
    found = project(ref)
    db(catalog.get_policy, found.id, policy_id)
    policy = _valid_policy(json_body(request.get_data(), "policy"))
    db(catalog.update_policy, found.id, policy_id, policy)
    return empty()


@bp.delete("/projects/<ref>/webhook/policies/<int:policy_id>")
def delete_policy(ref: str, policy_id: int):
    found = project(ref)
    db(catalog.delete_policy, found.id, policy_id)
    return empty()


@bp.get("/projects/<ref>/webhook/events")
def supported_events(ref: str):
    project(ref)
    return jsonify({
        "event_type": list(EVENT_TYPES),
        "notify_type": list(formats.target_types()),
        "payload_formats": [{"notify_type": kind, "formats": list(formats.payload_formats(kind))}
                            for kind in formats.target_types() if formats.payload_formats(kind)],
    })


def _last_triggers(project_id: int) -> list:
    _, policies = catalog.list_policies(project_id, Page(1, 0))
    return history.policy_triggers(policies)


@bp.get("/projects/<ref>/webhook/lasttrigger")
def last_trigger(ref: str):
    """Harbor's rows: each policy x each event type it subscribes to."""
    rows = db(_last_triggers, project(ref).id)
    return jsonify([shapes.last_trigger_json(item.policy, trigger)
                    for item in rows for trigger in item.triggers
                    if trigger.event_type in item.policy.event_types])
