"""Who may read the operators' pages: /sidecar/status needs the admin unless
`sidecar.public_status`, /sidecar/metrics only with `sidecar.metrics_auth`; /sidecar/healthz is
always open (probes carry no credentials, and it tells nothing but up or down).

The admin is HTTP Basic (throttled as everywhere, api.guard) or, for the status page, the web
UI's login session. A browser without either is sent to the UI's login form.
"""

from __future__ import annotations

from urllib.parse import quote

from flask import Response
from flask import jsonify
from flask import redirect
from flask import request
from flask import session

from sidecar.api import guard
from sidecar.api.auth import ADMIN_USER

REALM = 'Basic realm="registry-webhook-sidecar", charset="UTF-8"'
LOGIN_PATH = "/sidecar/ui/login"


def admin_refusal(allow_session: bool, browser: bool = False) -> Response | None:
    """None when the admin asks; else the answer to send (403, 429 or 401)."""
    refusal = guard.default_password_refusal()
    if refusal:
        return _answer(403, refusal)
    if allow_session and session.get("user") == ADMIN_USER:
        return None
    login = guard.basic_login()
    if login is not None and login.retry_after:
        response = _answer(429, f"too many failed logins from this address; try again in "
                                f"{login.retry_header} seconds")
        response.headers["Retry-After"] = login.retry_header
        return response
    if login is not None and login.ok:
        return None
    if browser and login is None and allow_session:
        return redirect(f"{LOGIN_PATH}?next={quote(request.full_path.rstrip('?'), safe='')}")
    response = _answer(401, "log in as the admin: HTTP Basic (admin and harbor_admin_password)"
                            + (", or the web UI's session (/sidecar/ui/login)"
                               if allow_session else ""))
    response.headers["WWW-Authenticate"] = REALM
    return response


def _answer(status: int, message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response
