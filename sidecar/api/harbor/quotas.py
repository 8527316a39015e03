"""Quotas: Harbor's list, read and change of per-project storage limits (and projects'
`storage_limit`, see projects.py). Rules-file quotas are read-only here: 403, saying the rules
file manages them."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask import request

from sidecar.api.harbor import shapes
from sidecar.api.harbor.blueprint import bp
from sidecar.api.harbor.blueprint import db
from sidecar.api.harbor.blueprint import empty
from sidecar.api.harbor.blueprint import listing
from sidecar.api.harbor.blueprint import runtime
from sidecar.api.harbor.params import bad_request
from sidecar.api.harbor.params import json_body
from sidecar.api.harbor.params import page_from
from sidecar.api.harbor.params import parse_sort
from sidecar.api.harbor.params import unprocessable
from sidecar.rules.quota import UNLIMITED
from sidecar.rules.quota import harbor_limit
from sidecar.store import quota_catalog


@bp.get("/quotas")
def list_quotas():
    page = page_from(request.args)
    total, rows = db(quota_catalog.list_quotas, page, request.args.get("reference", ""),
                     request.args.get("reference_id", ""),
                     parse_sort(request.args.get("sort")))
    return listing([shapes.quota_json(q) for q in rows], total, page)


@bp.get("/quotas/<int:quota_id>")
def get_quota(quota_id: int):
    return jsonify(shapes.quota_json(db(quota_catalog.get_quota, quota_id), single=True))


@bp.put("/quotas/<int:quota_id>")
def put_quota(quota_id: int):
    raw = json_body(request.get_data(), "hard")
    hard = raw.get("hard") if isinstance(raw, dict) else None
    if not isinstance(hard, dict) or not hard:
        raise bad_request("hard required in body")
    for resource in hard:
        if resource != "storage":
            raise bad_request(f"resource {resource} not support")
    db(quota_catalog.set_hard, quota_id, storage_limit(hard["storage"], "hard.storage"))
    return empty()


def storage_limit(value: Any, name: str, default: int | None = None) -> int:
    """A limit from a request body, checked as Harbor checks it (400 in its words); 0 or
    null take `default` where Harbor takes its `storage_per_project` (-1)."""
    if value is None or (default is not None and value == 0 and not isinstance(value, bool)):
        if default is None:
            raise bad_request("resource storage not found")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise unprocessable(f'{name} in body must be of type int64: "{value}"')
    try:
        return harbor_limit(value)
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def project_limit(body: dict[str, Any]) -> int:
    """A project body's `storage_limit`, checked before anything is written; absent, null
    or 0 is Harbor's default `storage_per_project`: unlimited (usage still counted)."""
    return storage_limit(body.get("storage_limit"), "storage_limit", default=UNLIMITED)


def apply_project_limit(project: str, hard: int) -> None:
    db(quota_catalog.set_project_limit, project, hard)
    refresh_quotas()


def refresh_quotas() -> None:
    """This worker enforces a new quota at once (the others at their next refresh)."""
    book = getattr(runtime(), "quota", None)
    if book is not None:
        book.refresh()
