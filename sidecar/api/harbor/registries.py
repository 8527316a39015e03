"""Harbor's registry endpoints (`/api/v2.0/registries`): the rules file's destinations.

As Harbor answers them (`src/server/v2.0/handler/registry.go`): the secret is `*****`, the
`name` filter is fuzzy and `q=name=...` exact. Deviations: creating, changing or deleting one
answers 403 (the rules file declares them), and `status` is a `GET /v2/` with the registry's
credential made when asked and kept a minute, not Harbor's 5-minute sweep.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from flask import jsonify
from flask import request

from sidecar.api.harbor import replication_shapes as shapes
from sidecar.api.harbor.blueprint import bp
from sidecar.api.harbor.blueprint import db
from sidecar.api.harbor.blueprint import listing
from sidecar.api.harbor.params import HarborError
from sidecar.api.harbor.params import page_from
from sidecar.api.harbor.params import parse_q
from sidecar.api.harbor.params import unprocessable
from sidecar.replicate.destinations import health
from sidecar.store import replication as store
from sidecar.store.views import Page

READ_ONLY = ("{what} are declared in the rules file (registries: and replication:) and "
             "read-only through the API: edit the file instead")
HEALTH_TTL = 60.0
_health: dict[int, tuple[float, Any, str]] = {}
_health_lock = threading.Lock()


def status_of(registry: store.RegistryView) -> str:
    """`healthy` / `unhealthy`, from a ping kept for a minute."""
    now = time.monotonic()
    with _health_lock:
        known = _health.get(registry.id)
    if known is not None and known[1] == registry and now - known[0] < HEALTH_TTL:
        return known[2]
    status = health(registry)
    with _health_lock:
        _health[registry.id] = (now, registry, status)
    return status


def path_id(raw: str, name: str = "id") -> int:
    try:
        return int(raw)
    except ValueError:
        raise unprocessable(f'{name} in path must be of type int64: "{raw}"') from None


def one_page(items: list, page: Page) -> list:
    if page.page_size <= 0:
        return items
    start = (page.page - 1) * page.page_size
    return items[start:start + page.page_size]


def named(items: list, name_of) -> list:
    """Harbor's `name` (fuzzy) and `q=name=...` (exact, or `~` fuzzy) filters."""
    fuzzy = request.args.get("name")
    if fuzzy:
        items = [i for i in items if fuzzy in name_of(i)]
    wanted = parse_q(request.args.get("q", "")).get("name")
    if isinstance(wanted, tuple) and wanted and wanted[0] == "~":
        items = [i for i in items if wanted[1] in name_of(i)]
    elif isinstance(wanted, str):
        items = [i for i in items if name_of(i) == wanted]
    return items


@bp.get("/registries")
def list_registries():
    page = page_from(request.args)
    registries = named(db(store.registries), lambda r: r.name)
    return listing([shapes.registry_json(r, status_of(r)) for r in one_page(registries, page)],
                   len(registries), page)


@bp.get("/registries/<raw_id>")
def get_registry(raw_id: str):
    registry = db(store.registry, path_id(raw_id))
    if registry is None:
        raise HarborError(404, "NOT_FOUND", f"registry {raw_id} not found")
    return jsonify(shapes.registry_json(registry, status_of(registry)))


@bp.post("/registries")
@bp.put("/registries/<raw_id>")
@bp.delete("/registries/<raw_id>")
def change_registry(raw_id: str = ""):
    raise HarborError(403, "FORBIDDEN", READ_ONLY.format(what="registries"))
