"""The API's blueprint and what every resource module shares: authentication, the request id,
Harbor's error shape, store calls on a database thread, project lookup, list headers."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request
from werkzeug.exceptions import HTTPException

from sidecar.api import guard
from sidecar.api.harbor.params import HarborError
from sidecar.api.harbor.params import error_response
from sidecar.api.harbor.params import header_bool
from sidecar.api.harbor.params import links
from sidecar.api.runtime import on_db
from sidecar.api.runtime import runtime  # noqa: F401 - the resource modules import it here
from sidecar.store import policy_catalog as catalog
from sidecar.store.views import Conflict
from sidecar.store.views import NotFound
from sidecar.store.views import Page
from sidecar.store.views import ProjectView
from sidecar.store.views import ReadOnly
from sidecar.store.views import StoreError

PREFIX = "/api/v2.0"
bp = Blueprint("harbor", __name__, url_prefix=PREFIX)

_STORE_ERRORS = {
    NotFound: (404, "NOT_FOUND"),
    Conflict: (409, "CONFLICT"),
    ReadOnly: (403, "FORBIDDEN"),
}


def _refused(exc: StoreError) -> HarborError:
    status, code = _STORE_ERRORS[type(exc)]
    return HarborError(status, code, exc.message)


def db(fn, *args: Any, **kwargs: Any) -> Any:
    """Run a store call on a database thread; store refusals become Harbor errors."""
    return on_db(fn, *args, refused=_refused, **kwargs)


@bp.before_request
def _authenticate():
    if request.path == f"{PREFIX}/ping":
        return None
    refusal = guard.default_password_refusal()
    if refusal:
        return error_response(HarborError(403, "FORBIDDEN", refusal))
    login = guard.basic_login()
    if login is not None and login.retry_after:
        response = error_response(HarborError(
            429, "TOO_MANY_REQUESTS", f"too many failed logins from this address; try again "
            f"in {login.retry_header} seconds"))
        response.headers["Retry-After"] = login.retry_header
        return response
    if login is None or not login.ok:
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


def project(ref: str) -> ProjectView:
    """Harbor's `project_name_or_id` with its X-Is-Resource-Name header."""
    return db(catalog.find_project, ref, header_bool("X-Is-Resource-Name"))


def listing(items: list, total: int, page: Page) -> Response:
    response = jsonify(items)
    response.headers["X-Total-Count"] = str(total)
    link = links(request.path, request.args, total, page)
    if link:
        response.headers["Link"] = link
    return response


def empty(status: int = 200, location: str | None = None) -> Response:
    response = Response(status=status)
    if location:
        response.headers["Location"] = location
    return response


def created(collection: str, new_id: int, name: str | None = None) -> Response:
    """201 with Location: the new id, or its name where Harbor's swagger takes
    X-Resource-Name-In-Location (harborapi sends it on every create)."""
    named = name is not None and header_bool("X-Resource-Name-In-Location")
    return empty(201, f"{collection.rstrip('/')}/{name if named else new_id}")
