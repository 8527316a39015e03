"""Harbor's scanner registrations (`/api/v2.0/scanners`) and a project's scanner, read-only.

The rules file declares the scanners (`scanners:`, a project's `scanner:`), so creating,
changing, deleting or re-defaulting one answers 403, as rules-file policies do. Harbor names a
registration by a generated uuid; ours is derived from the name (uuid5), so it is the same on
every sidecar and across restarts. As in Harbor, `access_credential` is never returned (""),
and the list is not pinged per item: `GET /scanners/{uuid}/metadata` asks the adapter, its answer
kept 30 s as Harbor keeps it.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from flask import jsonify
from flask import request

from sidecar.api.harbor.blueprint import bp
from sidecar.api.harbor.blueprint import db
from sidecar.api.harbor.blueprint import listing
from sidecar.api.harbor.blueprint import project
from sidecar.api.harbor.params import HarborError
from sidecar.api.harbor.params import page_from
from sidecar.api.harbor.params import parse_q
from sidecar.rules.scanners import Scanner
from sidecar.scan.client import AdapterClient
from sidecar.scan.client import AdapterError
from sidecar.scan.spec import AdapterMetadata
from sidecar.store import scans as store
from sidecar.timefmt import strfmt_time

READ_ONLY = ("scanners are declared in the rules file (scanners:, and a project's scanner:) "
             "and read-only through the API: edit the file instead")
_NAMESPACE = uuid.UUID("5b0f6f3e-8d0c-4d43-9a53-2d5f8e4c1a77")
_clients: dict[str, tuple[Scanner, AdapterClient]] = {}
_clients_lock = threading.Lock()
_AUTH_NAMES = {"X-ScannerAdapter-API-Key": "APIKey"}  # Harbor's API spells it APIKey


def scanner_uuid(name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, name))


def registration_json(registration: store.Registration) -> dict[str, Any]:
    scanner = registration.scanner
    return {
        "uuid": scanner_uuid(scanner.name),
        "name": scanner.name,
        "description": "",
        "url": scanner.url,
        "disabled": False,
        "is_default": scanner.default,
        "auth": _AUTH_NAMES.get(scanner.auth, scanner.auth),
        "access_credential": "",
        "skip_certVerify": scanner.skip_cert_verify,
        "use_internal_addr": False,
        "create_time": strfmt_time(registration.created_at),
        "update_time": strfmt_time(registration.updated_at),
    }


def metadata_json(metadata: AdapterMetadata) -> dict[str, Any]:
    return {
        "scanner": {"name": metadata.name, "vendor": metadata.vendor,
                    "version": metadata.version},
        "capabilities": [{"type": c.type or "vulnerability",
                          "consumes_mime_types": list(c.consumes),
                          "produces_mime_types": list(c.produces)}
                         for c in metadata.capabilities],
        "properties": dict(metadata.properties),
    }


def _filtered(items: list[store.Registration]) -> list[store.Registration]:
    """Harbor's fuzzy `name`/`description`/`url`, exact `ex_name`/`ex_url`, and `q`."""
    args = request.args
    fields = {"name": lambda r: r.scanner.name, "url": lambda r: r.scanner.url,
              "description": lambda r: ""}
    for key, value_of in fields.items():
        if args.get(key):
            items = [r for r in items if args[key] in value_of(r)]
        if key != "description" and args.get(f"ex_{key}"):
            items = [r for r in items if value_of(r) == args[f"ex_{key}"]]
    for key, wanted in parse_q(args.get("q", "")).items():
        value_of = fields.get(key)
        if value_of is None:
            continue
        if isinstance(wanted, tuple) and wanted and wanted[0] == "~":
            items = [r for r in items if wanted[1] in value_of(r)]
        elif isinstance(wanted, str):
            items = [r for r in items if value_of(r) == wanted]
    return items


def _listing():
    page = page_from(request.args)
    items = _filtered(list(db(store.registrations)))
    shown = items
    if page.page_size > 0:
        start = (page.page - 1) * page.page_size
        shown = items[start:start + page.page_size]
    return listing([registration_json(r) for r in shown], len(items), page)


def _find(raw_uuid: str) -> store.Registration:
    for registration in db(store.registrations):
        if scanner_uuid(registration.scanner.name) == raw_uuid:
            return registration
    raise HarborError(404, "NOT_FOUND", f"scanner {raw_uuid} not found")


def _client(scanner: Scanner) -> AdapterClient:
    with _clients_lock:
        known = _clients.get(scanner.name)
        if known is not None and known[0] == scanner:
            return known[1]
        if known is not None:
            known[1].close()
        client = AdapterClient(scanner)  # its Limits keep metadata 30 s, as Harbor
        _clients[scanner.name] = (scanner, client)
        return client


@bp.get("/scanners")
def list_scanners():
    return _listing()


@bp.get("/scanners/<raw_uuid>")
def get_scanner(raw_uuid: str):
    return jsonify(registration_json(_find(raw_uuid)))


@bp.get("/scanners/<raw_uuid>/metadata")
def get_scanner_metadata(raw_uuid: str):
    registration = _find(raw_uuid)
    try:
        metadata = _client(registration.scanner).metadata()
    except AdapterError as exc:  # Harbor: a plain error, so 500
        raise HarborError(500, "UNKNOWN", str(exc)) from None
    return jsonify(metadata_json(metadata))


@bp.post("/scanners")
@bp.post("/scanners/ping")
@bp.put("/scanners/<raw_uuid>")
@bp.patch("/scanners/<raw_uuid>")
@bp.delete("/scanners/<raw_uuid>")
def change_scanner(raw_uuid: str = ""):
    raise HarborError(403, "FORBIDDEN", READ_ONLY)


@bp.get("/projects/<ref>/scanner")
def get_project_scanner(ref: str):
    found = project(ref)
    chosen = db(store.project_scanner, found.name)
    if chosen is None:  # Harbor: 200 with an empty body when there is no scanner at all
        return "", 200
    for registration in db(store.registrations):
        if registration.scanner.name == chosen.name:
            return jsonify(registration_json(registration))
    return "", 200


@bp.get("/projects/<ref>/scanner/candidates")
def project_scanner_candidates(ref: str):
    project(ref)
    return _listing()


@bp.put("/projects/<ref>/scanner")
def set_project_scanner(ref: str):
    project(ref)
    raise HarborError(403, "FORBIDDEN", READ_ONLY)
