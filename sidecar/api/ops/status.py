"""/sidecar/healthz and /sidecar/status: is it working, what was sent, what failed and why.

/sidecar/status answers JSON to programs and an HTML page to browsers (Accept: text/html, or
?format=html), to the admin only unless `sidecar.public_status` (api.ops.access). It is a
summary of bounded size whatever the number of policies: counts, the worst endpoints, recent
failures, rules state, upstream health, and one page of policies; `?project=` / `?policy=`
(NAME or PROJECT/NAME) with Harbor's `page`/`page_size` page through the policies' detail, with
Harbor's X-Total-Count and Link headers. Both come from `store.status_report` shaped by
`api.ops.report`, which shows no secret: targets appear without auth headers, and addresses
without userinfo or query values (tokens often live there: Flux and VelaUX put them in the path
or query).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import render_template
from flask import request

from sidecar import timefmt
from sidecar.api.harbor.params import HarborError
from sidecar.api.harbor.params import error_response
from sidecar.api.harbor.params import links
from sidecar.api.harbor.params import page_from
from sidecar.api.ops import probes
from sidecar.api.ops.access import admin_refusal
from sidecar.api.ops.report import job_sections
from sidecar.api.ops.report import status_json
from sidecar.redact import redact_address
from sidecar.registry.features import credential_report
from sidecar.store.status_report import POLICY_PAGE_SIZE
from sidecar.store.status_report import PolicyQuery
from sidecar.store.status_report import status_report
from sidecar.store.views import Page

bp = Blueprint("status", __name__, url_prefix="/sidecar")
bp.add_app_template_filter(timefmt.when, "when")
bp.add_app_template_filter(timefmt.ago, "ago")


def collect_status(limit: int = 20, policies: PolicyQuery | None = None) -> dict[str, Any]:
    """Everything /sidecar/status reports from the store (runs on a database thread)."""
    return status_json(status_report(limit, policies))




def policy_query(args) -> PolicyQuery:
    """?project=, ?policy= and Harbor's page/page_size (20 a page unless asked)."""
    if args.get("page_size") in (None, ""):
        page = Page(page_from(args).page, POLICY_PAGE_SIZE)
    else:
        page = page_from(args)
        if page.page_size == 0:  # Harbor's "everything": not here, a page stays bounded
            page = Page(page.page, POLICY_PAGE_SIZE)
    return PolicyQuery(project=args.get("project", "").strip(),
                       policy=args.get("policy", "").strip(), page=page)


def wants_html() -> bool:
    chosen = request.args.get("format", "")
    if chosen:
        return chosen == "html"
    accept = request.accept_mimetypes
    return accept["text/html"] > accept["application/json"]


@bp.get("/healthz")
def healthz():
    # a worker answers GET/HEAD without Flask (app.SidecarApp, api.ops.probes); this route,
    # the same function, serves Flask's own callers (the test client)
    body, code = probes.healthz(current_app.extensions["sidecar"])
    return Response(body, code, content_type=probes.JSON)


@bp.get("/status")
def status():
    runtime = current_app.extensions["sidecar"]
    if not runtime.settings.public_status:
        refused = admin_refusal(allow_session=True, browser=wants_html())
        if refused is not None:
            return refused
    try:
        query = policy_query(request.args)
    except HarborError as exc:
        return error_response(exc)
    body = runtime.executor.run(collect_status, 20, query)
    body["upstream"] = {"url": redact_address(runtime.upstream.url),
                        "healthy": runtime.upstream.healthy()}
    body["rules"] = runtime.rules_state()
    body["recorder"] = {"buffered": runtime.recorder.backlog, "dropped": runtime.recorder.dropped}
    body["notification_enable"] = runtime.executor.run(runtime.notifications_enabled)
    body["registry_credential"] = credential_report(runtime.registry.has_credential)
    body.update(runtime.executor.run(job_sections))
    if wants_html():
        response = current_app.make_response(render_template("status.html", s=body))
    else:
        response = jsonify(body)
    total = body["policies_page"]["total"]
    response.headers["X-Total-Count"] = str(total)
    link = links(request.path, request.args, total, query.page)
    if link:
        response.headers["Link"] = link
    response.headers["Vary"] = "Accept"
    response.headers["Cache-Control"] = "no-store"
    return response
