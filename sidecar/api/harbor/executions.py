"""A policy's history: executions, their one task each, the task log, and the deprecated
webhook jobs list. All of them are our deliveries."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask import request

from sidecar.api.harbor import shapes
from sidecar.api.harbor.blueprint import bp
from sidecar.api.harbor.blueprint import db
from sidecar.api.harbor.blueprint import listing
from sidecar.api.harbor.blueprint import project
from sidecar.api.harbor.params import page_from
from sidecar.api.harbor.params import parse_q
from sidecar.api.harbor.params import parse_sort
from sidecar.api.harbor.params import unprocessable
from sidecar.dispatch.render import Context
from sidecar.dispatch.render import render
from sidecar.store import delivery_history as history
from sidecar.store import policy_catalog as catalog
from sidecar.store.views import DeliveryView


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


def _our_statuses(harbor: list[str]) -> list[str]:
    return [shapes.OUR_STATUS.get(s, s) for s in harbor]


def _execution_filters(q: dict[str, Any]) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    status = q.get("status")
    if isinstance(status, str):
        filters["status"] = _our_statuses([status])
    elif isinstance(status, tuple) and status[0] == "{}":
        filters["status"] = _our_statuses(status[1])
    if isinstance(q.get("event_type"), str):
        filters["event_type"] = q["event_type"]
    return filters


def _policy_deliveries(ref: str, policy_id: int, filters: dict[str, Any]):
    """(project, total, page, deliveries) of a policy of the project `ref`."""
    found = project(ref)
    db(catalog.get_policy, found.id, policy_id)
    page = page_from(request.args)
    total, rows = db(history.list_executions, policy_id, page, filters,
                     parse_sort(request.args.get("sort")))
    return found, total, page, rows


@bp.get("/projects/<ref>/webhook/policies/<int:policy_id>/executions")
def list_executions(ref: str, policy_id: int):
    filters = _execution_filters(parse_q(request.args.get("q", "")))
    found, total, page, rows = _policy_deliveries(ref, policy_id, filters)
    return listing([shapes.execution_json(d, _body_of(d, found.id)) for d in rows], total, page)


@bp.get("/projects/<ref>/webhook/jobs")
def list_webhook_jobs(ref: str):
    """Harbor's deprecated list (still in its swagger, called by its API clients): a job is
    an execution, so one of our deliveries. `policy_id` is required; `status` may repeat."""
    raw = request.args.get("policy_id")
    if raw is None or raw == "":
        raise unprocessable("policy_id in query is required")
    try:
        policy_id = int(raw)
    except ValueError:
        raise unprocessable(f'policy_id in query must be of type int64: "{raw}"') from None
    filters = _execution_filters(parse_q(request.args.get("q", "")))
    statuses = [s for value in request.args.getlist("status") for s in value.split(",") if s]
    if statuses:
        filters["status"] = _our_statuses(statuses)
    found, total, page, rows = _policy_deliveries(ref, policy_id, filters)
    return listing([shapes.webhook_job_json(d, _body_of(d, found.id)) for d in rows],
                   total, page)


@bp.get("/projects/<ref>/webhook/policies/<int:policy_id>/executions/<int:execution_id>/tasks")
def list_tasks(ref: str, policy_id: int, execution_id: int):
    found = project(ref)
    db(catalog.get_policy, found.id, policy_id)
    page = page_from(request.args)
    parse_q(request.args.get("q", ""))
    delivery = db(history.get_execution, policy_id, execution_id)
    rows = [shapes.task_json(delivery)] if page.page <= 1 or page.page_size <= 0 else []
    return listing(rows, 1, page)


@bp.get("/projects/<ref>/webhook/policies/<int:policy_id>/executions/<int:execution_id>"
        "/tasks/<int:task_id>/log")
def task_log(ref: str, policy_id: int, execution_id: int, task_id: int):
    found = project(ref)
    db(catalog.get_policy, found.id, policy_id)
    delivery = db(history.get_task, policy_id, execution_id, task_id)
    return Response(shapes.task_log(delivery, _body_of(delivery, found.id)),
                    content_type="text/plain; charset=utf-8")
