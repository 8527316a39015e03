"""Artifacts: scan one, stop its scan, read it with its scan_overview.

    POST /projects/{p}/repositories/{r}/artifacts/{ref}/scan        202
    POST /projects/{p}/repositories/{r}/artifacts/{ref}/scan/stop   202
    GET  /projects/{p}/repositories/{r}/artifacts/{ref}?with_scan_overview=true

`{r}` is the repository inside the project, URL-encoded twice as Harbor's clients send it
(`tools%252Fapp`); once-encoded works too. The artifact is read from the registry with the
sidecar's own credential, and answered with what the sidecar knows of it (type, media types,
digest, size, project) and, when asked, its scan_overview (scan.manual has the rules).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote

from flask import Response
from flask import jsonify
from flask import request

from sidecar.api.auth import ADMIN_USER
from sidecar.api.harbor.blueprint import bp
from sidecar.api.harbor.blueprint import project
from sidecar.api.harbor.params import HarborError
from sidecar.api.harbor.params import bad_request
from sidecar.api.harbor.params import error_response
from sidecar.api.harbor.params import json_body
from sidecar.api.harbor.params import query_bool
from sidecar.api.runtime import runtime
from sidecar.scan.manual import Artifact
from sidecar.scan.manual import ScanRefused
from sidecar.scan.manual import artifact_overview
from sidecar.scan.manual import lookup
from sidecar.scan.manual import request_scan
from sidecar.scan.manual import request_stop
from sidecar.scan.spec import VULNERABILITY_REPORTS
from sidecar.scan.spec import same_media_type

ARTIFACT = "/projects/<project_ref>/repositories/<path:repository>/artifacts/<reference>"


@bp.errorhandler(ScanRefused)
def _refused(error: ScanRefused):
    return error_response(HarborError(error.status, error.code, error.message))


def _repository(project_ref: str, repository: str) -> tuple[int, str]:
    """(project id, full repository name) of Harbor's path parameters."""
    found = project(project_ref)
    name = unquote(repository)  # the router decoded once; Harbor's clients encode twice
    if not name or name.startswith("/") or "//" in name:
        raise bad_request(f"invalid repository name {name!r}")
    return found.id, f"{found.name}/{name}"


@bp.post(f"{ARTIFACT}/scan")
def scan_artifact(project_ref: str, repository: str, reference: str):
    _, full = _repository(project_ref, repository)
    raw = request.get_data()
    body = json_body(raw, "scanType") if raw.strip() else {}
    if isinstance(body, dict) and body.get("scan_type") == "sbom":
        raise bad_request("scan_type sbom is not supported: the sidecar runs vulnerability "
                          "scans")
    rt = runtime()
    request_scan(rt.executor, rt.registry, full, reference, operator=ADMIN_USER,
                 host=request.host)
    return Response(status=202)


@bp.post(f"{ARTIFACT}/scan/stop")
def stop_scan(project_ref: str, repository: str, reference: str):
    _, full = _repository(project_ref, repository)
    rt = runtime()
    request_stop(rt.executor, rt.registry, full, reference)
    return Response(status=202)


@bp.get(ARTIFACT)
def get_artifact(project_ref: str, repository: str, reference: str):
    project_id, full = _repository(project_ref, repository)
    rt = runtime()
    found = lookup(rt.registry, full, reference)
    body = _artifact_body(found, project_id)
    if query_bool("with_scan_overview", False):
        overview = artifact_overview(rt.executor, found, _accepted(), time.time())
        if overview:
            body["scan_overview"] = overview
    return jsonify(body)


def _accepted() -> list[str]:
    """X-Accept-Vulnerabilities in order (Harbor knows two report types; the default is
    both, the generic one first)."""
    raw = request.headers.get("X-Accept-Vulnerabilities", "")
    chosen = [known for value in raw.split(",") for known in VULNERABILITY_REPORTS
              if same_media_type(value, known)]
    return list(dict.fromkeys(chosen)) or list(VULNERABILITY_REPORTS)


def _artifact_body(found: Artifact, project_id: int) -> dict[str, Any]:
    """Harbor's Artifact, with the fields the sidecar can fill truthfully (no null; no
    addition_links: the sidecar keeps summaries, not whole reports)."""
    return {
        "type": found.type,
        "media_type": found.media_type,
        "manifest_media_type": found.manifest_media_type,
        "project_id": project_id,
        "digest": found.digest,
        "size": found.size,
    }
