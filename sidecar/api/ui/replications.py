"""The web UI's Replications page: the rules file's policies and destinations, recent
executions with their tasks (status, bytes, errors), a button to start a manual run and one to
stop a running execution. Routes join the UI's blueprint (its login, CSRF and CSP apply);
every change goes through what the REST API calls (`replicate.manual`, `store`)."""

from __future__ import annotations

from typing import Any

from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for

from sidecar.api.runtime import runtime
from sidecar.api.ui.pages import bp
from sidecar.replicate.manual import RunRefused
from sidecar.replicate.manual import start_run
from sidecar.store import replication as store
from sidecar.store import replication_runs as runs

#: who the events name as the operator of a run started from the UI (the admin, as the API)
OPERATOR = "admin"
EXECUTIONS_SHOWN = 20
TASKS_SHOWN = 50


def _page_data() -> dict[str, Any]:
    registries = store.registries()
    names = {r.id: r for r in registries}
    _, executions = runs.executions(limit=EXECUTIONS_SHOWN)
    copied = runs.bytes_copied(v.id for v in executions)
    return {
        "registries": registries,
        "policies": [(p, names.get(p.registry_id)) for p in store.policies()],
        "executions": [(v, copied.get(v.id, 0), runs.tasks(v.id, limit=TASKS_SHOWN)[1])
                       for v in executions],
        "tasks": runs.task_outcomes(),
    }


@bp.get("/replications")
def replications():
    data = runtime().executor.run(_page_data)
    return render_template("ui/replications.html", rules_file=runtime().settings.rules,
                           **data)


@bp.post("/replications/<int:policy_id>/run")
def run_policy(policy_id: int):
    try:
        execution_id = runtime().executor.run(start_run, policy_id, operator=OPERATOR,
                                               host=request.host)
    except RunRefused as exc:
        flash(exc.message, "error")
    else:
        runtime().job_lane.wake()
        flash(f"Execution {execution_id} started.", "ok")
    return redirect(url_for("ui.replications"))


@bp.post("/replications/executions/<int:execution_id>/stop")
def stop_run(execution_id: int):
    if runtime().executor.run(runs.stop_execution, execution_id):
        runtime().job_lane.wake()
        flash(f"Execution {execution_id}: stop requested; its tasks stop at their next "
              "step.", "ok")
    else:
        flash(f"replication execution {execution_id} not found", "error")
    return redirect(url_for("ui.replications"))
