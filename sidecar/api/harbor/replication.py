"""Harbor's replication API: policies (read-only: the rules file declares them), manual runs,
executions, tasks and their logs, stop (`src/server/v2.0/handler/replication.go`).

Same paths, shapes, status codes and messages as Harbor. Deviations: creating, changing or
deleting a policy answers 403; a task's `job_id` is the task's own id and its log ends with
what the task came to (status, bytes sent, the error).
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask import jsonify
from flask import request

from sidecar.api.harbor import replication_shapes as shapes
from sidecar.api.harbor.blueprint import PREFIX
from sidecar.api.harbor.blueprint import bp
from sidecar.api.harbor.blueprint import db
from sidecar.api.harbor.blueprint import empty
from sidecar.api.harbor.blueprint import listing
from sidecar.api.harbor.params import HarborError
from sidecar.api.harbor.params import json_body
from sidecar.api.harbor.params import page_from
from sidecar.api.harbor.params import unprocessable
from sidecar.api.harbor.registries import READ_ONLY
from sidecar.api.harbor.registries import named
from sidecar.api.harbor.registries import one_page
from sidecar.api.harbor.registries import path_id
from sidecar.api.harbor.registries import status_of
from sidecar.api.runtime import runtime
from sidecar.events.payload import split_hostname
from sidecar.replicate.manual import RunRefused
from sidecar.replicate.manual import start_run
from sidecar.store import replication as store
from sidecar.store import replication_runs as runs
from sidecar.store.views import Page

#: who Harbor's API names as the operator of a run started through it
OPERATOR = "admin"
_POLICY_SORT = {"name": "name", "creation_time": "created_at", "update_time": "updated_at",
                "id": "id"}


def _local() -> dict[str, Any]:
    scheme, host = split_hostname(runtime().settings.hostname or request.host)
    return shapes.local_registry_json(f"{scheme or request.scheme}://{host}")


def _policy_json(policy: store.PolicyView, registries: dict[int, Any],
                 local: dict[str, Any]) -> dict[str, Any]:
    registry = registries.get(policy.registry_id)
    destination = shapes.registry_json(registry, status_of(registry)) if registry else None
    return shapes.policy_json(policy, destination, local)


@bp.get("/replication/policies")
def list_replication_policies():
    page = page_from(request.args)
    policies = named(db(store.policies), lambda p: p.name)
    policies.sort(key=lambda p: (p.created_at, p.id), reverse=True)  # creation_time desc
    sort = request.args.get("sort", "")
    key = _POLICY_SORT.get(sort.lstrip("-"))
    if key:
        policies.sort(key=lambda p: getattr(p, key), reverse=sort.startswith("-"))
    registries = {r.id: r for r in db(store.registries)}
    local = _local()
    return listing([_policy_json(p, registries, local) for p in one_page(policies, page)],
                   len(policies), page)


@bp.get("/replication/policies/<raw_id>")
def get_replication_policy(raw_id: str):
    policy = db(store.policy, path_id(raw_id))
    if policy is None:
        raise HarborError(404, "NOT_FOUND", f"replication policy {raw_id} not found")
    registries = {r.id: r for r in db(store.registries)}
    return jsonify(_policy_json(policy, registries, _local()))


@bp.post("/replication/policies")
@bp.put("/replication/policies/<raw_id>")
@bp.delete("/replication/policies/<raw_id>")
def change_replication_policy(raw_id: str = ""):
    raise HarborError(403, "FORBIDDEN", READ_ONLY.format(what="replication policies"))


# -- executions ----------------------------------------------------------------------------

def _window(page: Page) -> dict[str, int]:
    if page.page_size <= 0:
        return {"offset": 0, "limit": 1_000_000}
    return {"offset": (page.page - 1) * page.page_size, "limit": page.page_size}


@bp.post("/replication/executions")
def start_replication():
    body = json_body(request.get_data(), "execution")
    policy_id = body.get("policy_id") if isinstance(body, dict) else None
    if isinstance(policy_id, bool) or not isinstance(policy_id, int):
        raise unprocessable("execution.policy_id in body must be of type int64")
    try:
        execution_id = db(start_run, policy_id, operator=OPERATOR, host=request.host)
    except RunRefused as exc:
        raise HarborError(exc.status, exc.code, exc.message) from None
    runtime().job_lane.wake()
    return empty(201, f"{PREFIX}/replication/executions/{execution_id}")


@bp.get("/replication/executions")
def list_replication_executions():
    page = page_from(request.args)
    policy_id = request.args.get("policy_id")
    status = request.args.get("status")
    trigger = request.args.get("trigger")
    total, views = db(
        runs.executions,
        policy_id=path_id(policy_id, "policy_id") if policy_id else None,
        status=shapes.EXECUTION_STATUS_FILTER.get(status, status) if status else None,
        trigger=shapes.TRIGGER_FILTER.get(trigger, trigger) if trigger else None,
        **_window(page))
    return listing([shapes.execution_json(v) for v in views], total, page)


def _execution(raw_id: str) -> runs.ExecutionView:
    view = db(runs.execution, path_id(raw_id))
    if view is None:
        raise HarborError(404, "NOT_FOUND", f"replication execution {raw_id} not found")
    return view


@bp.get("/replication/executions/<raw_id>")
def get_replication_execution(raw_id: str):
    return jsonify(shapes.execution_json(_execution(raw_id)))


@bp.put("/replication/executions/<raw_id>")
def stop_replication(raw_id: str):
    view = _execution(raw_id)
    db(runs.stop_execution, view.id)
    runtime().job_lane.wake()  # a waiting task is claimed now and says it stopped
    return empty()


@bp.get("/replication/executions/<raw_id>/tasks")
def list_replication_tasks(raw_id: str):
    view = _execution(raw_id)
    page = page_from(request.args)
    status = request.args.get("status")
    statuses = shapes.TASK_STATUS_FILTER.get(status, (status,)) if status else ()
    total, tasks = db(runs.tasks, view.id, statuses=statuses, **_window(page))
    resource_type = request.args.get("resource_type")
    if resource_type:
        tasks = [t for t in tasks if t.resource_type == resource_type]
    return listing([shapes.task_json(t) for t in tasks], total, page)


@bp.get("/replication/executions/<raw_id>/tasks/<raw_task>/log")
def replication_task_log(raw_id: str, raw_task: str):
    view = _execution(raw_id)
    task = db(runs.task, view.id, path_id(raw_task, "task_id"))
    if task is None:
        raise HarborError(404, "NOT_FOUND",
                          f"execution {raw_id} contains no task with ID {raw_task}")
    return Response(shapes.task_log(task), mimetype="text/plain")
