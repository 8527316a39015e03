"""Projects: list (name, public), existence check, create, read, change, delete; a project's
`storage_limit` is its quota (quotas.py)."""

from __future__ import annotations

from flask import Response
from flask import jsonify
from flask import request

from sidecar.api.harbor import quotas
from sidecar.api.harbor import shapes
from sidecar.api.harbor.blueprint import PREFIX
from sidecar.api.harbor.blueprint import bp
from sidecar.api.harbor.blueprint import created
from sidecar.api.harbor.blueprint import db
from sidecar.api.harbor.blueprint import empty
from sidecar.api.harbor.blueprint import listing
from sidecar.api.harbor.blueprint import project
from sidecar.api.harbor.params import bad_request
from sidecar.api.harbor.params import json_body
from sidecar.api.harbor.params import page_from
from sidecar.api.harbor.params import parse_bool
from sidecar.api.harbor.params import query_bool
from sidecar.api.harbor.params import unprocessable
from sidecar.rules.policy import PROJECT_NAME
from sidecar.store import policy_catalog as catalog
from sidecar.store import quota_catalog
from sidecar.store import tag_retention


@bp.get("/projects")
def list_projects():
    if request.method == "HEAD":  # Harbor's "does this project name exist?"
        return _head_project()
    page = page_from(request.args)
    public = query_bool("public")
    query_bool("with_detail", True)  # every answer here is the detailed one
    total, rows = db(catalog.list_projects, page, request.args.get("name", ""), public)
    retention = db(tag_retention.policy_ids)
    return listing([shapes.project_json(p, retention.get(p.name)) for p in rows], total, page)


def _head_project() -> Response:
    name = request.args.get("project_name", "")
    if not name:
        raise unprocessable("project_name in query is required")
    db(catalog.find_project, name, True)
    return empty()


@bp.post("/projects")
def create_project():
    raw = json_body(request.get_data(), "project")
    if not isinstance(raw, dict):
        raise bad_request("a project must be a JSON object")
    name = raw.get("project_name")
    if not isinstance(name, str) or not name:
        raise unprocessable("project_name in body is required")
    if len(name) > 255 or not PROJECT_NAME.match(name):
        raise bad_request("project name is not in lower case or contains illegal characters!")
    metadata = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    public = parse_bool(metadata.get("public", raw.get("public", False))) or False
    limit = quotas.project_limit(raw)
    new_id = db(catalog.create_project, name, public)
    quotas.apply_project_limit(name, limit)  # every API project has a quota, as in Harbor
    return created(f"{PREFIX}/projects", new_id, name)


@bp.get("/projects/<ref>")
def get_project(ref: str):
    found = project(ref)
    return jsonify(shapes.project_json(found, db(tag_retention.policy_ids).get(found.name)))


@bp.put("/projects/<ref>")
def update_project(ref: str):
    """Harbor's ProjectReq: `metadata.public`, and (unlike Harbor, which ignores it here)
    `storage_limit`. Rules-file projects are read-only."""
    found = project(ref)
    raw = json_body(request.get_data(), "project")
    if not isinstance(raw, dict):
        raise bad_request("a project must be a JSON object")
    metadata = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    public = parse_bool(metadata["public"]) if "public" in metadata else None
    limit = quotas.project_limit(raw) if raw.get("storage_limit") is not None else None
    db(catalog.update_project, found.id, public)
    if limit is not None:
        quotas.apply_project_limit(found.name, limit)
    return empty()


@bp.delete("/projects/<ref>")
def delete_project(ref: str):
    found = project(ref)
    db(catalog.delete_project, found.id)
    db(quota_catalog.drop_project_quota, found.name)  # its quota goes with it
    quotas.refresh_quotas()
    return empty()

