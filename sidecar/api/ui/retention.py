"""The Retention section of a project's page: "Dry run" and "Run now" buttons. Routes join the
UI's blueprint (its login, CSRF and CSP apply); a run is started as the REST API starts it
(`store.retention_runs.start_execution`), operator `admin`. The section itself is rendered
with the project's page (pages.webhooks, ui/_retention.html)."""

from __future__ import annotations

from flask import flash
from flask import redirect
from flask import request
from flask import url_for

from sidecar.api.runtime import runtime
from sidecar.api.ui.pages import bp
from sidecar.store import policy_catalog
from sidecar.store import retention_runs as runs
from sidecar.store import tag_retention
from sidecar.store.views import NotFound

OPERATOR = "admin"


def _start(project_id: int, dry_run: bool) -> tuple[str, int | None]:
    project = policy_catalog.find_project(str(project_id))
    policy = tag_retention.policy_for_project(project.name)
    if policy is None:
        return project.name, None
    return project.name, runs.start_execution(policy, runs.TRIGGER_MANUAL, dry_run=dry_run,
                                              operator=OPERATOR)


@bp.post("/projects/<int:project_id>/retention/run")
def run_retention(project_id: int):
    dry_run = request.form.get("dry_run") == "true"
    try:
        name, execution_id = runtime().executor.run(_start, project_id, dry_run)
    except NotFound:
        flash(f"project {project_id} not found", "error")
        return redirect(url_for("ui.projects"))
    if execution_id is None:
        flash(f"{name} has no retention policy: add `retention:` to it in the rules file.",
              "error")
    else:
        runtime().job_lane.wake()
        what = "Dry run" if dry_run else "Retention run"
        flash(f"{what} {execution_id} of {name} started.", "ok")
    return redirect(url_for("ui.webhooks", project_id=project_id) + "#retention")
