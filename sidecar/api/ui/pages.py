"""The web UI under /sidecar/ui/: a project's Webhooks page, as Harbor's portal has it.

Server-rendered, no script at all (a Content-Security-Policy forbids any), readable with
scripts off. Every change goes through the code the REST API uses: `rules.policy.parse_policy`
validates (Harbor's messages, shown next to the field they are about), `store.policy_catalog`
saves, `store.delivery_history.replay` re-queues, `dispatch.probe` tests an endpoint,
`store.policies` holds the global switch. All database work runs through the runtime's executor.

Every POST carries the session's CSRF token; enable, disable and delete ask for confirmation
on a page of their own (a GET that changes nothing, then a POST).
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint
from flask import current_app
from flask import flash
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for

from sidecar import timefmt
from sidecar.api import guard
from sidecar.api.harbor.params import HarborError
from sidecar.api.harbor.params import parse_q
from sidecar.api.ops.report import quota_json
from sidecar.api.runtime import on_db
from sidecar.api.runtime import runtime as current_runtime
from sidecar.api.switches import NOTIFICATION_ENABLE
from sidecar.api.switches import set_notifications
from sidecar.api.ui import cards
from sidecar.api.ui import session as ui_auth
from sidecar.api.ui.forms import GENERAL
from sidecar.api.ui.forms import PolicyForm
from sidecar.api.ui.forms import field_errors
from sidecar.api.ui.forms import raw_policy
from sidecar.api.ui.forms import target_problems
from sidecar.dispatch import formats
from sidecar.dispatch.probe import probe
from sidecar.dispatch.probe import sample_event
from sidecar.events.model import EVENT_TYPES
from sidecar.redact import unmask_targets
from sidecar.rules.policy import parse_policy
from sidecar.store import delivery_history as history
from sidecar.store import policies as policy_store
from sidecar.store import policy_catalog as store
from sidecar.store import retention_runs
from sidecar.store import target_health
from sidecar.store.models import FAILED
from sidecar.store.quota_limits import all_usage
from sidecar.store.scans import status_section as scan_status
from sidecar.store.views import Conflict
from sidecar.store.views import NotFound
from sidecar.store.views import Page
from sidecar.store.views import PolicyView
from sidecar.store.views import ProjectView
from sidecar.store.views import ReadOnly
from sidecar.store.views import StoreError

bp = Blueprint("ui", __name__, url_prefix=ui_auth.UI_PREFIX)
bp.record_once(lambda state: ui_auth.configure(state.app))
bp.add_app_template_filter(timefmt.when, "when")
bp.add_app_template_filter(timefmt.ago, "ago")

DELIVERIES_PER_PAGE = 20
#: Projects per page of the project list and policies per page of a project's Webhooks page:
#: a page costs the same with 10 or 1,000 projects (issue 17).
PROJECTS_PER_PAGE = 25
POLICIES_PER_PAGE = 10
OPEN_ENDPOINTS = ("ui.login",)
#: Harbor's names for the event types, as its form lists them.
EVENT_LABELS = {
    "PUSH_ARTIFACT": "Artifact pushed", "PULL_ARTIFACT": "Artifact pulled",
    "DELETE_ARTIFACT": "Artifact deleted", "QUOTA_EXCEED": "Quota exceeded",
    "QUOTA_WARNING": "Quota near threshold", "SCANNING_FAILED": "Scanning failed",
    "SCANNING_STOPPED": "Scanning stopped", "SCANNING_COMPLETED": "Scanning finished",
    "REPLICATION": "Replication status changed", "TAG_RETENTION": "Tag retention finished",
    "UPLOAD_CHART": "Chart uploaded", "DOWNLOAD_CHART": "Chart downloaded",
    "DELETE_CHART": "Chart deleted",
}
CONFIRM = {
    "enable": ("Enable", "Deliveries start again with the next matching event."),
    "disable": ("Disable", "Events are no longer delivered to this webhook until it is enabled "
                "again. Deliveries already queued are still sent."),
    "delete": ("Delete", "The policy is removed. Its delivery history stays; deliveries still "
               "waiting are dropped."),
}


class UIError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# -- plumbing ------------------------------------------------------------------------------

def _refused(exc: StoreError) -> Exception:
    """A missing object becomes a 404 page; the pages handle the other refusals."""
    return UIError(404, exc.message) if isinstance(exc, NotFound) else exc


def _db(fn, *args: Any, **kwargs: Any) -> Any:
    return on_db(fn, *args, refused=_refused, **kwargs)


@bp.before_request
def _guard():
    g.csp_nonce = secrets.token_urlsafe(16)
    refusal = guard.default_password_refusal()
    if refusal:
        raise UIError(403, refusal)
    if request.endpoint not in OPEN_ENDPOINTS:
        g.user = ui_auth.current_user()
        if g.user is None:
            if request.method in ui_auth.SAFE_METHODS:
                return redirect(url_for("ui.login", next=request.full_path.rstrip("?")))
            raise UIError(401, "Log in first.")
    if not ui_auth.csrf_ok():
        raise UIError(400, "This form did not come from this page, or the session expired "
                      "(missing or wrong CSRF token). Reload the page and try again.")
    return None


@bp.after_request
def _headers(response):
    nonce = getattr(g, "csp_nonce", "")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(UIError)
def _ui_error(error: UIError):
    return render_template("ui/error.html", status=error.status, message=error.message), \
        error.status


@bp.errorhandler(guard.Throttled)
def _throttled(error: guard.Throttled):
    response = current_app.make_response((render_template(
        "ui/error.html", status=429, message=str(error)), 429))
    response.headers["Retry-After"] = error.login.retry_header
    return response


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    return {"csrf_token": ui_auth.csrf_token, "csrf_field": ui_auth.CSRF_FIELD,
            "csp_nonce": getattr(g, "csp_nonce", ""), "user": getattr(g, "user", None),
            "event_labels": EVENT_LABELS}


def _local_path(target: str | None) -> str:
    """Where to go after login: only a path inside the UI (no open redirect)."""
    default = url_for("ui.projects")
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not (parts.path.startswith(f"{ui_auth.UI_PREFIX}/")
                                            or parts.path == "/sidecar/status"):
        return default
    return target


# -- login ---------------------------------------------------------------------------------

@bp.route("/login", methods=["GET", "POST"])
def login():
    next_path = _local_path(request.values.get("next"))
    if request.method == "GET":
        return render_template("ui/login.html", next=next_path, error="")
    login = ui_auth.log_in(request.form.get("username", ""), request.form.get("password", ""))
    if login.retry_after:
        raise guard.Throttled(login)
    if login.ok:
        return redirect(next_path)
    return render_template("ui/login.html", next=next_path,
                           error="Invalid user name or password."), 401


@bp.post("/logout")
def logout():
    ui_auth.log_out()
    return redirect(url_for("ui.login"))


@bp.get("/")
def index():
    return redirect(url_for("ui.projects"))


# -- projects and their webhooks -----------------------------------------------------------

def _name_query() -> tuple[str, dict[str, Any]]:
    """The search box: Harbor's `q` (`name=~part`, `name=exact`) or plain text (a part of the
    name). Returns (what the box shows, the store's name filter: {"name": value})."""
    text = request.args.get("q", "").strip()
    if not text:
        return "", {}
    if "=" not in text:
        return text, {"name": ("~", text)}
    try:
        query = parse_q(text)
    except HarborError as exc:
        raise UIError(400, f"Search: {exc.message}") from None
    unknown = sorted(set(query) - {"name"})
    if unknown:
        raise UIError(400, f"Search: only name can be searched, not {', '.join(unknown)}.")
    value = query["name"]
    if isinstance(value, tuple) and value[0] != "~":
        raise UIError(400, "Search: name=~part or name=exact.")
    return text, {"name": value}


def _pages(total: int, per_page: int) -> int:
    return max((total + per_page - 1) // per_page, 1)


def _pager(number: int, total: int, per_page: int) -> dict[str, Any]:
    return {"page": number, "pages": _pages(total, per_page), "total": total}


def _projects_data(number: int, name: Any) -> tuple[int, int, list[ProjectView],
                                                   dict[str, dict[str, Any]]]:
    fuzzy = name[1] if isinstance(name, tuple) else ""
    exact = name if isinstance(name, str) else ""
    total, rows = store.list_projects(Page(number, PROJECTS_PER_PAGE), fuzzy,
                                      exact_name=exact)
    if not rows and total and number > 1:  # past the end: the last page
        number = _pages(total, PROJECTS_PER_PAGE)
        total, rows = store.list_projects(Page(number, PROJECTS_PER_PAGE), fuzzy,
                                          exact_name=exact)
    usages = all_usage(row.name for row in rows)
    return number, total, rows, {usage.project: quota_json(usage) for usage in usages}


@bp.get("/projects")
def projects():
    search, filters = _name_query()
    number, total, rows, quotas = _db(_projects_data, max(_int_arg("page", 1), 1),
                                      filters.get("name"))
    return render_template("ui/projects.html", projects=rows, quotas=quotas, search=search,
                           pager=_pager(number, total, PROJECTS_PER_PAGE))


def _project(project_id: int) -> ProjectView:
    return _db(store.find_project, str(project_id))


def _webhooks_data(project_id: int, number: int, filters: dict[str, Any]
                   ) -> tuple[ProjectView, int, int, list[dict[str, Any]]]:
    project = store.find_project(str(project_id))
    total, policies = store.list_policies(project.id, Page(number, POLICIES_PER_PAGE), filters)
    if not policies and total and number > 1:  # past the end: the last page
        number = _pages(total, POLICIES_PER_PAGE)
        total, policies = store.list_policies(project.id, Page(number, POLICIES_PER_PAGE),
                                              filters)
    return project, number, total, [cards.policy_card(item)
                                    for item in history.policy_triggers(policies)]


@bp.get("/projects/<int:project_id>/webhooks")
def webhooks(project_id: int):
    search, filters = _name_query()
    project, number, total, policy_cards = _db(_webhooks_data, project_id,
                                               max(_int_arg("page", 1), 1), filters)
    runtime = current_runtime()
    return render_template(
        "ui/webhooks.html", project=project, policies=policy_cards, search=search,
        pager=_pager(number, total, POLICIES_PER_PAGE),
        notifications_enabled=_db(runtime.notifications_enabled),
        rules_file=runtime.settings.rules or "",
        scans=_db(scan_status, 10, project.name),
        retention=_db(retention_runs.project_section, project.name),
    )


def _policy(project_id: int, policy_id: int) -> tuple[ProjectView, PolicyView]:
    return _db(lambda: (store.find_project(str(project_id)),
                        store.get_policy(project_id, policy_id)))


@bp.get("/projects/<int:project_id>/webhooks/<int:policy_id>")
def policy(project_id: int, policy_id: int):
    project, stored = _policy(project_id, policy_id)
    show = request.args.get("show", "all")
    page = max(_int_arg("page", 1), 1)
    filters = {"status": [FAILED]} if show == "failed" else {}
    total, rows = _db(history.list_executions, stored.id, Page(page, DELIVERIES_PER_PAGE),
                      filters)
    [triggers] = _db(history.policy_triggers, [stored])
    return render_template(
        "ui/policy.html", project=project, policy=cards.policy_card(triggers),
        health=[t for t in _db(target_health.health_of, stored.id) if t["disabled"]],
        deliveries=[cards.delivery_row(d) for d in rows], total=total, page=page,
        pages=max((total + DELIVERIES_PER_PAGE - 1) // DELIVERIES_PER_PAGE, 1), show=show,
    )


def _int_arg(name: str, default: int) -> int:
    try:
        return int(request.args.get(name, default))
    except ValueError:
        return default


# -- add / edit ----------------------------------------------------------------------------

def _render_form(project: ProjectView, form: PolicyForm, stored: PolicyView | None,
                 errors: dict[str, list[str]] | None = None, test: Any = None,
                 status: int = 200):
    return render_template(
        "ui/policy_form.html", project=project, form=form, stored=stored,
        errors=errors or {}, general=(errors or {}).get(GENERAL, []), test=test,
        event_types=EVENT_TYPES, notify_types=formats.target_types(),
        payload_formats=formats.payload_formats(),
        read_only=bool(stored and stored.source == policy_store.RULES),
        rules_file=current_runtime().settings.rules or "",
    ), status


@bp.route("/projects/<int:project_id>/webhooks/new", methods=["GET", "POST"])
def new_policy(project_id: int):
    project = _project(project_id)
    if request.method == "GET":
        return _render_form(project, PolicyForm(), None)
    return _submit(project, PolicyForm.from_post(request.form), None)


@bp.route("/projects/<int:project_id>/webhooks/<int:policy_id>/edit", methods=["GET", "POST"])
def edit_policy(project_id: int, policy_id: int):
    project, stored = _policy(project_id, policy_id)
    if request.method == "GET":
        return _render_form(project, PolicyForm.from_policy(stored), stored)
    form = PolicyForm.from_post(request.form)
    form.kept = PolicyForm.from_policy(stored).kept
    return _submit(project, form, stored)


def _submit(project: ProjectView, form: PolicyForm, stored: PolicyView | None):
    raw = form.to_raw(stored)
    if request.form.get("action") == "test":
        return _test_endpoint(project, form, raw, stored)
    policy, problems = parse_policy(raw, allow_unknown=True)  # the API's validation
    if problems:
        return _render_form(project, form, stored, field_errors(problems), status=400)
    try:
        if stored is None:
            policy_id = _db(store.create_policy, project.id, policy, ui_auth.ADMIN_USER)
            flash(f"Webhook {policy.name} added.", "ok")
        else:
            _db(store.update_policy, project.id, stored.id, policy)
            policy_id = stored.id
            flash(f"Webhook {policy.name} saved.", "ok")
    except Conflict as exc:
        return _render_form(project, form, stored, {"name": [exc.message]}, status=409)
    except ReadOnly as exc:
        return _render_form(project, form, stored, {GENERAL: [exc.message]}, status=403)
    return redirect(url_for("ui.webhooks", project_id=project.id, _anchor=f"policy-{policy_id}"))


def _test_endpoint(project: ProjectView, form: PolicyForm, raw: dict[str, Any],
                   stored: PolicyView | None):
    """The API's safe test (dispatch.probe) for the form's target: only targets matter."""
    candidate = {**raw, "name": raw["name"] or "test", "event_types": ["PUSH_ARTIFACT"]}
    policy, problems = parse_policy(candidate, allow_unknown=True)
    if problems:
        shown = target_problems(problems) or problems
        return _render_form(project, form, stored, field_errors(shown), status=400)
    target = policy.targets[0]
    if stored is not None:  # a masked auth header stands for the stored one
        [target] = unmask_targets([target], stored.targets)
    settings = current_runtime().settings
    payload = sample_event(project.name, settings.hostname or request.host)
    outcome = probe(target, payload,
                    settings.webhook_job_http_client_timeout, project_id=project.id,
                    addresses=current_runtime().addresses)
    return _render_form(project, form, stored, test=outcome)


# -- enable / disable / delete, replay -----------------------------------------------------

@bp.route("/projects/<int:project_id>/webhooks/<int:policy_id>/"
          "<any(enable, disable, delete):action>", methods=["GET", "POST"])
def confirm(project_id: int, policy_id: int, action: str):
    project, stored = _policy(project_id, policy_id)
    back = url_for("ui.webhooks", project_id=project.id, _anchor=f"policy-{stored.id}")
    if request.method == "GET":
        verb, explanation = CONFIRM[action]
        return render_template(
            "ui/confirm.html", project=project, policy=stored, action=action, verb=verb,
            explanation=explanation, back=back,
            read_only=stored.source == policy_store.RULES,
            rules_file=current_runtime().settings.rules or "")
    try:
        if action == "delete":
            _db(store.delete_policy, project.id, stored.id)
            flash(f"Webhook {stored.name} deleted.", "ok")
            return redirect(url_for("ui.webhooks", project_id=project.id))
        # Harbor's UI sends the whole policy back with the switch flipped; so do we
        policy, problems = parse_policy(raw_policy(stored, enabled=action == "enable"),
                                        allow_unknown=True)
        if problems:
            flash("; ".join(p.message for p in problems), "error")
            return redirect(back)
        _db(store.update_policy, project.id, stored.id, policy)
        flash(f"Webhook {stored.name} {action}d.", "ok")
    except ReadOnly as exc:
        flash(exc.message, "error")
    return redirect(back)


def _replay_one(project_id: int, policy_id: int, delivery_id: int) -> history.Replayed:
    store.get_policy(project_id, policy_id)
    history.get_execution(policy_id, delivery_id)  # 404 unless it is this policy's
    return history.replay([delivery_id])


@bp.post("/projects/<int:project_id>/webhooks/<int:policy_id>/deliveries/<int:delivery_id>"
         "/replay")
def replay(project_id: int, policy_id: int, delivery_id: int):
    result = _db(_replay_one, project_id, policy_id, delivery_id)
    if result.requeued:
        current_runtime().dispatcher.wake()
        flash(f"Delivery {delivery_id} queued again; its earlier attempts stay in the list.",
              "ok")
    for skipped in result.skipped:
        flash(f"Delivery {skipped.id} not replayed: {skipped.reason}.", "error")
    return redirect(url_for("ui.policy", project_id=project_id, policy_id=policy_id))


def _reenable(project_id: int, policy_id: int) -> tuple[int, int]:
    store.get_policy(project_id, policy_id)  # 404 unless it is this project's
    return target_health.reenable_and_replay(policy_id, True)


@bp.post("/projects/<int:project_id>/webhooks/<int:policy_id>/reenable")
def reenable(project_id: int, policy_id: int):
    """Re-enable the targets disabled after failing too long, and send what was skipped."""
    reenabled, replayed = _db(_reenable, project_id, policy_id)
    if replayed:
        current_runtime().dispatcher.wake()
    flash(f"{reenabled} endpoint(s) re-enabled; {replayed} skipped deliveries queued again.",
          "ok")
    return redirect(url_for("ui.policy", project_id=project_id, policy_id=policy_id))


# -- system settings -----------------------------------------------------------------------

@bp.route("/settings", methods=["GET", "POST"])
def settings():
    runtime = current_runtime()
    if request.method == "POST":
        enabled = request.form.get(NOTIFICATION_ENABLE) == "on"
        _db(set_notifications, enabled)
        flash(f"Webhooks {'enabled' if enabled else 'disabled'} for the whole system.", "ok")
        return redirect(url_for("ui.settings"))
    return render_template(
        "ui/settings.html", notifications_enabled=_db(runtime.notifications_enabled),
        rules=runtime.rules_state(), field=NOTIFICATION_ENABLE,
    )
