"""Harbor's tag retention API: a project's policy (read-only: the rules file declares it), runs
and dry runs, executions, tasks and their logs, stop (`src/server/v2.0/handler/retention.go`).

Same paths, shapes and status codes as Harbor. Deviations: creating, changing or deleting a
policy answers 403 (the rules file manages them); a policy id that does not exist answers 404
(Harbor: 500); a task's `job_id` is the task's own id.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask import jsonify
from flask import request

from sidecar.api.harbor.blueprint import PREFIX
from sidecar.api.harbor.blueprint import bp
from sidecar.api.harbor.blueprint import db
from sidecar.api.harbor.blueprint import empty
from sidecar.api.harbor.blueprint import listing
from sidecar.api.harbor.params import HarborError
from sidecar.api.harbor.params import bad_request
from sidecar.api.harbor.params import json_body
from sidecar.api.harbor.params import page_from
from sidecar.api.harbor.registries import path_id
from sidecar.api.runtime import runtime
from sidecar.rules.cron import next_fire
from sidecar.store import clock
from sidecar.store import jobs as job_store
from sidecar.store import retention_runs as runs
from sidecar.store import tag_retention as store
from sidecar.store.views import Page
from sidecar.timefmt import rfc3339_time
from sidecar.timefmt import strfmt_time

OPERATOR = "admin"
READ_ONLY = ("tag retention policies are declared in the sidecar's rules file "
             "(projects[].retention); change them there")

_INT_PARAM = [{"type": "int", "unit": "COUNT", "required": True}]
_DAYS_PARAM = [{"type": "int", "unit": "DAYS", "required": True}]
METADATAS = {
    "templates": [
        {"rule_template": "latestPushedK", "display_text": "the most recently pushed # artifacts",
         "action": "retain", "params": _INT_PARAM},
        {"rule_template": "latestPulledN", "display_text": "the most recently pulled # artifacts",
         "action": "retain", "params": _INT_PARAM},
        {"rule_template": "nDaysSinceLastPush", "display_text": "pushed within the last # days",
         "action": "retain", "params": _DAYS_PARAM},
        {"rule_template": "nDaysSinceLastPull", "display_text": "pulled within the last # days",
         "action": "retain", "params": _DAYS_PARAM},
        {"rule_template": "always", "display_text": "always", "action": "retain", "params": []},
    ],
    "scope_selectors": [{"display_text": "Repositories", "kind": "doublestar",
                         "decorations": ["repoMatches", "repoExcludes"]}],
    "tag_selectors": [{"display_text": "Tags", "kind": "doublestar",
                       "decorations": ["matches", "excludes"]}],
}


def policy_json(policy: store.PolicyView) -> dict[str, Any]:
    """Harbor's RetentionPolicy, with trigger.settings.next_scheduled_time as GET adds it."""
    settings: dict[str, Any] = {"cron": policy.schedule}
    following = next_fire(policy.schedule, clock.now())
    if following is not None:
        settings["next_scheduled_time"] = strfmt_time(following)
    return {
        "id": policy.id,
        "algorithm": "or",
        "rules": list(policy.rules),
        "trigger": {"kind": "Schedule", "settings": settings, "references": {}},
        "scope": {"level": "project", "ref": policy.project_id},
    }


def execution_json(view: runs.ExecutionView) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": view.id, "policy_id": view.policy_id, "start_time": rfc3339_time(view.start_time),
        "end_time": rfc3339_time(view.end_time), "status": view.status,
        "trigger": view.trigger,
    }
    if view.dry_run:
        out["dry_run"] = True
    return out


def task_json(task: runs.TaskView) -> dict[str, Any]:
    return {
        "id": task.id, "execution_id": task.execution_id, "repository": task.repository,
        "job_id": str(task.id), "status": task.status, "status_code": task.status_code,
        "start_time": rfc3339_time(task.start_time), "end_time": rfc3339_time(task.end_time),
        "total": task.total, "retained": task.retained,
    }


def _policy(raw_id: str) -> store.PolicyView:
    found = db(store.policy, path_id(raw_id))
    if found is None:
        raise HarborError(404, "NOT_FOUND", f"no such Retention policy with id {raw_id}")
    return found


def _execution(policy: store.PolicyView, raw_id: str) -> runs.ExecutionView:
    view = db(runs.execution, path_id(raw_id, "eid"))
    if view is None or view.policy_id != policy.id:
        raise HarborError(404, "NOT_FOUND",
                          f"project: {policy.project_id}, execution id {raw_id} not found")
    return view


def _window() -> tuple[Page | None, dict[str, Any]]:
    """Harbor's retention lists have no default page size: without one, every row."""
    if "page_size" not in request.args:
        return None, {}
    page = page_from(request.args)
    if page.page_size <= 0:
        return page, {}
    return page, {"offset": (page.page - 1) * page.page_size, "limit": page.page_size}


def _listing(items: list, total: int, page: Page | None) -> Response:
    if page is None:
        response = jsonify(items)
        response.headers["X-Total-Count"] = str(total)
        return response
    return listing(items, total, page)


@bp.get("/retentions/metadatas")
def retention_metadatas():
    return jsonify(METADATAS)


@bp.get("/retentions/<raw_id>")
def get_retention(raw_id: str):
    return jsonify(policy_json(_policy(raw_id)))


@bp.post("/retentions")
@bp.put("/retentions/<raw_id>")
@bp.delete("/retentions/<raw_id>")
def change_retention(raw_id: str = ""):
    raise HarborError(403, "FORBIDDEN", READ_ONLY)


@bp.post("/retentions/<raw_id>/executions")
def start_retention(raw_id: str):
    policy = _policy(raw_id)
    raw = request.get_data()
    body = json_body(raw, "body") if raw.strip() else {}
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object such as {\"dry_run\": false}")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise bad_request("dry_run must be true or false")
    execution_id = db(runs.start_execution, policy, runs.TRIGGER_MANUAL, dry_run=dry_run,
                      operator=OPERATOR)
    runtime().job_lane.wake()
    return empty(201, f"{PREFIX}/retentions/{policy.id}/executions/{execution_id}")


@bp.get("/retentions/<raw_id>/executions")
def list_retention_executions(raw_id: str):
    policy = _policy(raw_id)
    page, window = _window()
    total, views = db(runs.executions, policy_id=policy.id, **window)
    return _listing([execution_json(v) for v in views], total, page)


@bp.patch("/retentions/<raw_id>/executions/<raw_eid>")
def stop_retention(raw_id: str, raw_eid: str):
    policy = _policy(raw_id)
    view = _execution(policy, raw_eid)
    body = json_body(request.get_data(), "body")
    if not isinstance(body, dict) or body.get("action") != "stop":
        raise bad_request("action should be 'stop'")
    db(_stop, view.id)
    runtime().job_lane.wake()
    return empty()


def _stop(execution_id: int) -> None:
    job_store.request_stop(execution_id)
    _, tasks = runs.tasks(execution_id)
    for task in tasks:
        job_store.request_stop(task.id)


@bp.get("/retentions/<raw_id>/executions/<raw_eid>/tasks")
def list_retention_tasks(raw_id: str, raw_eid: str):
    view = _execution(_policy(raw_id), raw_eid)
    page, window = _window()
    total, tasks = db(runs.tasks, view.id, **window)
    return _listing([task_json(t) for t in tasks], total, page)


@bp.get("/retentions/<raw_id>/executions/<raw_eid>/tasks/<raw_tid>")
def retention_task_log(raw_id: str, raw_eid: str, raw_tid: str):
    view = _execution(_policy(raw_id), raw_eid)
    task = db(runs.task, view.id, path_id(raw_tid, "tid"))
    if task is None:
        raise HarborError(404, "NOT_FOUND",
                          f"execution {raw_eid} contains no task with ID {raw_tid}")
    return Response(task.log or "", mimetype="text/plain")
