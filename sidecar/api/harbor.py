"""Harbor's v2.0 REST API for webhook policies, their history, projects and the global switch.

Same paths, bodies, status codes, headers and messages as Harbor, so scripts and the Terraform
provider work unchanged. Deviations, each on purpose:
- auth_header (and any signing secret) is answered masked as "***"; sent back unchanged in a
  PUT, the stored secret is kept.
- Policies from the rules file are read-only here: 403 FORBIDDEN, saying the rules file
  manages them (RBAC-style, as Harbor answers what a user may not change).
- One task per execution (one delivery per event x policy x target); task id = execution id.
- The test endpoint Harbor removed is back, made safe (see dispatch/probe.py).
All database work runs through the runtime's executor, never on the event loop.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import request
from werkzeug.exceptions import HTTPException

from sidecar.api import harbor_shapes as shapes
from sidecar.api.auth import is_admin
from sidecar.api.harbor_params import HarborError
from sidecar.api.harbor_params import bad_request
from sidecar.api.harbor_params import error_response
from sidecar.api.harbor_params import json_body
from sidecar.api.harbor_params import links
from sidecar.api.harbor_params import page_from
from sidecar.api.harbor_params import parse_bool
from sidecar.api.harbor_params import parse_q
from sidecar.api.harbor_params import parse_sort
from sidecar.api.status import redact_address
from sidecar.dispatch.probe import probe
from sidecar.dispatch.probe import sample_event
from sidecar.dispatch.render import Context
from sidecar.dispatch.render import render
from sidecar.events.model import EVENT_TYPES
from sidecar.rules.policy import PAYLOAD_FORMATS
from sidecar.rules.policy import PROJECT_NAME
from sidecar.rules.policy import TARGET_TYPES
from sidecar.rules.policy import Policy
from sidecar.rules.policy import Problem
from sidecar.rules.policy import parse_policy
from sidecar.store import policies as policy_store
from sidecar.store import webhooks as store
from sidecar.store.webhooks import DeliveryView
from sidecar.store.webhooks import Page

PREFIX = "/api/v2.0"
bp = Blueprint("harbor", __name__, url_prefix=PREFIX)

NOTIFICATION_ENABLE = "notification_enable"
_STORE_ERRORS = {
    store.NotFound: (404, "NOT_FOUND"),
    store.Conflict: (409, "CONFLICT"),
    store.ReadOnly: (403, "FORBIDDEN"),
}


# -- plumbing ------------------------------------------------------------------------------

def _runtime():
    return current_app.extensions["sidecar"]


def _db(fn, *args: Any, **kwargs: Any) -> Any:
    """Run a store call on a database thread; store refusals become Harbor errors."""
    try:
        return _runtime().executor.run(fn, *args, **kwargs)
    except store.StoreError as exc:
        status, code = _STORE_ERRORS[type(exc)]
        raise HarborError(status, code, exc.message) from None


@bp.before_request
def _authenticate():
    if request.path == f"{PREFIX}/ping":
        return None
    if not is_admin(request.headers.get("Authorization"), _runtime().settings.admin_password):
        return error_response(HarborError(401, "UNAUTHORIZED", "unauthorized"))
    return None


@bp.after_request
def _request_id(response: Response) -> Response:
    """Harbor answers every API call with the client's X-Request-Id, or one it made up."""
    response.headers["X-Request-Id"] = request.headers.get("X-Request-Id") or str(uuid.uuid4())
    return response


@bp.errorhandler(HarborError)
def _harbor_error(error: HarborError):
    return error_response(error)


@bp.app_errorhandler(404)
@bp.app_errorhandler(405)
def _routing_error(error: HTTPException):
    """Unknown paths and methods under the API answer in Harbor's error shape."""
    if not request.path.startswith(f"{PREFIX}/"):
        return error
    if error.code == 405:
        allowed = ", ".join(sorted(getattr(error, "valid_methods", None) or []))
        return error_response(HarborError(
            405, "METHOD_NOT_ALLOWED",
            f"method {request.method} is not allowed, but [{allowed}] are"))
    return error_response(HarborError(404, "NOT_FOUND", f"path {request.path} was not found"))


def _project(ref: str) -> store.ProjectView:
    is_name = request.headers.get("X-Is-Resource-Name", "").lower() == "true"
    return _db(store.find_project, ref, is_name)


def _listing(items: list, total: int, page: Page) -> Response:
    response = jsonify(items)
    response.headers["X-Total-Count"] = str(total)
    link = links(request.path, request.args, total, page)
    if link:
        response.headers["Link"] = link
    return response


def _empty(status: int = 200, location: str | None = None) -> Response:
    response = Response(status=status)
    if location:
        response.headers["Location"] = location
    return response


# -- policies ------------------------------------------------------------------------------

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


@bp.get("/projects/<ref>/webhook/policies")
def list_policies(ref: str):
    project = _project(ref)
    page = page_from(request.args)
    filters = parse_q(request.args.get("q", ""))
    total, rows = _db(store.list_policies, project.id, page, filters,
                      parse_sort(request.args.get("sort")))
    return _listing([shapes.policy_json(p) for p in rows], total, page)


@bp.post("/projects/<ref>/webhook/policies")
def create_policy(ref: str):
    raw = json_body(request.get_data(), "policy")
    policy = _valid_policy(raw)
    project = _project(ref)
    creator = raw.get("creator") if isinstance(raw.get("creator"), str) else ""
    new_id = _db(store.create_policy, project.id, policy, creator or "admin")
    return _empty(201, f"{request.path.rstrip('/')}/{new_id}")


@bp.get("/projects/<ref>/webhook/policies/<int:policy_id>")
def get_policy(ref: str, policy_id: int):
    project = _project(ref)
    return jsonify(shapes.policy_json(_db(store.get_policy, project.id, policy_id)))


@bp.put("/projects/<ref>/webhook/policies/<int:policy_id>")
def update_policy(ref: str, policy_id: int):
    project = _project(ref)
    _db(store.get_policy, project.id, policy_id)
    policy = _valid_policy(json_body(request.get_data(), "policy"))
    _db(store.update_policy, project.id, policy_id, policy)
    return _empty()


@bp.delete("/projects/<ref>/webhook/policies/<int:policy_id>")
def delete_policy(ref: str, policy_id: int):
    project = _project(ref)
    _db(store.delete_policy, project.id, policy_id)
    return _empty()


@bp.get("/projects/<ref>/webhook/events")
def supported_events(ref: str):
    _project(ref)
    return jsonify({
        "event_type": list(EVENT_TYPES),
        "notify_type": list(TARGET_TYPES),
        "payload_formats": [{"notify_type": "http", "formats": list(PAYLOAD_FORMATS)}],
    })


@bp.get("/projects/<ref>/webhook/lasttrigger")
def last_trigger(ref: str):
    project = _project(ref)
    rows = _db(store.last_triggers, project.id)
    return jsonify([shapes.last_trigger_json(policy, event_type, when)
                    for policy, event_type, when in rows])


# -- executions, tasks, log ----------------------------------------------------------------

def _body_of(delivery: DeliveryView, project_id: int) -> str:
    """The request body this delivery sends, rendered as the dispatcher renders it."""
    context = Context(delivery_uid=delivery.uid, now=delivery.created_at,
                      policy_id=delivery.policy_id, project_id=project_id,
                      request_id=delivery.request_id)
    try:
        rendered = render(delivery.payload, delivery.target, context)
    except Exception as exc:  # a target the renderer refuses: say so, do not fail the listing
        return f"<cannot render: {exc}>"
    return rendered.body.decode("utf-8", "replace")


def _execution_filters(q: dict[str, Any]) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    status = q.get("status")
    if isinstance(status, str):
        filters["status"] = [shapes.OUR_STATUS.get(status, status)]
    elif isinstance(status, tuple) and status[0] == "{}":
        filters["status"] = [shapes.OUR_STATUS.get(s, s) for s in status[1]]
    if isinstance(q.get("event_type"), str):
        filters["event_type"] = q["event_type"]
    return filters


@bp.get("/projects/<ref>/webhook/policies/<int:policy_id>/executions")
def list_executions(ref: str, policy_id: int):
    project = _project(ref)
    _db(store.get_policy, project.id, policy_id)
    page = page_from(request.args)
    filters = _execution_filters(parse_q(request.args.get("q", "")))
    total, rows = _db(store.list_executions, policy_id, page, filters,
                      parse_sort(request.args.get("sort")))
    return _listing([shapes.execution_json(d, _body_of(d, project.id)) for d in rows], total, page)


@bp.get("/projects/<ref>/webhook/policies/<int:policy_id>/executions/<int:execution_id>/tasks")
def list_tasks(ref: str, policy_id: int, execution_id: int):
    project = _project(ref)
    _db(store.get_policy, project.id, policy_id)
    page = page_from(request.args)
    parse_q(request.args.get("q", ""))
    delivery = _db(store.get_execution, policy_id, execution_id)
    rows = [shapes.task_json(delivery)] if page.page <= 1 or page.page_size <= 0 else []
    return _listing(rows, 1, page)


@bp.get("/projects/<ref>/webhook/policies/<int:policy_id>/executions/<int:execution_id>"
        "/tasks/<int:task_id>/log")
def task_log(ref: str, policy_id: int, execution_id: int, task_id: int):
    project = _project(ref)
    _db(store.get_policy, project.id, policy_id)
    delivery = _db(store.get_task, policy_id, execution_id, task_id)
    return Response(shapes.task_log(delivery, _body_of(delivery, project.id)),
                    content_type="text/plain; charset=utf-8")


# -- test endpoint -------------------------------------------------------------------------

def _test_targets(raw: Any) -> tuple[str, list[dict[str, Any]]]:
    """Only targets matter; they are validated exactly as for create."""
    if not isinstance(raw, dict):
        raise bad_request("a webhook policy must be a JSON object")
    name = raw.get("name") if isinstance(raw.get("name"), str) else ""
    candidate = {"name": name or "test", "event_types": ["PUSH_ARTIFACT"],
                 "targets": raw.get("targets")}
    policy, problems = parse_policy(candidate, allow_unknown=True)
    if problems:  # repeat with the real name, for Harbor's "... with policy <name>" wording
        _, named = parse_policy({**candidate, "name": name}, allow_unknown=True)
        messages = [p for p in named if p.path and p.path[0] == "targets"] or problems
        raise bad_request(messages[0].message)
    return name, [target.as_dict() for target in policy.targets]


@bp.post("/projects/<ref>/webhook/policies/test")
def test_policy(ref: str):
    name, targets = _test_targets(json_body(request.get_data(), "policy"))
    project = _project(ref)
    settings = _runtime().settings
    payload = sample_event(project.name, settings.hostname or request.host)
    results = []
    for target in targets:
        outcome = probe(target, payload, settings.webhook_job_http_client_timeout,
                        project_id=project.id, addresses=_runtime().addresses)
        results.append({
            "type": target.get("type", "http"),
            "address": redact_address(target["address"]),
            "payload_format": target.get("payload_format", ""),
            "ok": outcome.ok,
            "status_code": outcome.status_code,
            "latency_ms": outcome.latency_ms,
            "error": outcome.error,
        })
    if all(r["ok"] for r in results):
        return jsonify({"results": results})
    raise HarborError(400, "BAD_REQUEST", f"notification policy {name} test failed",
                      extra={"results": results})


# -- projects ------------------------------------------------------------------------------

@bp.get("/projects")
def list_projects():
    if request.method == "HEAD":  # Harbor's "does this project name exist?"
        return _head_project()
    page = page_from(request.args)
    total, rows = _db(store.list_projects, page, request.args.get("name", ""))
    return _listing([shapes.project_json(p) for p in rows], total, page)


def _head_project() -> Response:
    name = request.args.get("project_name", "")
    if not name:
        raise HarborError(422, "UNPROCESSABLE_ENTITY",
                          "validation failure list:\nproject_name in query is required")
    _db(store.find_project, name, True)
    return _empty()


@bp.post("/projects")
def create_project():
    raw = json_body(request.get_data(), "project")
    if not isinstance(raw, dict):
        raise bad_request("a project must be a JSON object")
    name = raw.get("project_name")
    if not isinstance(name, str) or not name:
        raise HarborError(422, "UNPROCESSABLE_ENTITY",
                          "validation failure list:\nproject_name in body is required")
    if len(name) > 255 or not PROJECT_NAME.match(name):
        raise bad_request("project name is not in lower case or contains illegal characters!")
    metadata = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    public = parse_bool(metadata.get("public", raw.get("public", False))) or False
    new_id = _db(store.create_project, name, public)
    return _empty(201, f"{PREFIX}/projects/{new_id}")


@bp.get("/projects/<ref>")
def get_project(ref: str):
    return jsonify(shapes.project_json(_project(ref)))


@bp.delete("/projects/<ref>")
def delete_project(ref: str):
    project = _project(ref)
    _db(store.delete_project, project.id)
    return _empty()


# -- configurations (the global switch) ----------------------------------------------------

def _notifications_enabled() -> bool:
    return bool(_runtime().executor.run(_runtime().notifications_enabled))


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
        _db(policy_store.set_setting, NOTIFICATION_ENABLE, "true" if value else "false")
    return _empty()


@bp.get("/ping")
def ping():
    return Response("Pong", content_type="text/plain")
