"""A registry client per destination registry, with its own credential and TLS setting.

Clients are kept per registry (their token caches and connection pools are worth keeping) and
made again when the registry's row changes (a new secret in the rules file). A `harbor`
destination also gets Harbor's preparation: the destination path must have a project part,
and a missing project is created through Harbor's API (public when the source project is),
as Harbor's adapter does before it pushes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass
from urllib.parse import quote

from sidecar.lazy import lazy_module
from sidecar.registry import Credential
from sidecar.registry import RegistryClient
from sidecar.registry import RegistryError
from sidecar.registry import RegistryUnavailable
from sidecar.registry import Unauthorized
from sidecar.replicate.copy import MountSources
from sidecar.rules.registries import HARBOR
from sidecar.store.replication import RegistryView

requests = lazy_module("requests")  # the rare paths' library: see sidecar/lazy.py

HARBOR_PROJECTS = "/api/v2.0/projects"


@dataclass
class Destination:
    registry: RegistryView
    client: RegistryClient
    mounts: MountSources
    projects: set[str]  # Harbor projects known to exist


class Destinations:
    """Clients of the destination registries of this worker process."""

    def __init__(self, timeout: float = 60.0):
        self._timeout = timeout
        self._known: dict[int, Destination] = {}
        self._lock = threading.Lock()

    def get(self, registry: RegistryView) -> Destination:
        with self._lock:
            known = self._known.get(registry.id)
            if known is not None and known.registry == registry:
                return known
            if known is not None:
                known.client.close()
            credential = Credential(registry.access_key, registry.access_secret) \
                if registry.access_key else None
            client = RegistryClient(registry.url, credential, verify=_verify(registry),
                                    timeout=self._timeout)
            made = Destination(registry, client, MountSources(), set())
            self._known[registry.id] = made
            return made

    def close(self) -> None:
        with self._lock:
            for known in self._known.values():
                known.client.close()
            self._known.clear()


def _verify(registry: RegistryView) -> bool | str:
    """requests' `verify`: off for an insecure registry, a CA file for a PEM, else on."""
    if registry.insecure:
        return False
    if not registry.ca_certificate:
        return True
    pem = registry.ca_certificate.encode()
    path = os.path.join(tempfile.gettempdir(),
                        f"sidecar-ca-{hashlib.sha256(pem).hexdigest()[:16]}.pem")
    if not os.path.exists(path):
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path))
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        os.replace(tmp, path)
    return path


def check_path(registry: RegistryView, repository: str) -> None:
    """ValueError (Harbor's message) when `repository` cannot live in the registry: a Harbor
    needs a project part (AT_LEAST_TWO components)."""
    parts = repository.split("/")
    if registry.type == HARBOR and len(parts) < 2:
        raise ValueError(f'the destination repository "{repository}" contains {len(parts)} '
                         f"path components {parts}, but the destination registry requires "
                         "at least 2")


def prepare(destination: Destination, repository: str, public: bool) -> None:
    """Harbor's PrepareForPush for a `harbor` destination; nothing for other types.

    Raises ValueError when the path cannot live in a Harbor (Harbor's message), or a
    RegistryError when the project cannot be created.
    """
    check_path(destination.registry, repository)
    if destination.registry.type != HARBOR:
        return
    project = repository.split("/")[0]
    if project in destination.projects:
        return
    _ensure_project(destination, project, public)
    destination.projects.add(project)


def _ensure_project(destination: Destination, project: str, public: bool) -> None:
    registry = destination.registry
    session = requests.Session()
    session.trust_env = False
    session.verify = _verify(registry)
    if registry.access_key:
        session.auth = (registry.access_key, registry.access_secret)
    base = registry.url.rstrip("/") + HARBOR_PROJECTS
    what = f"Harbor project {project} at {registry.name}"
    try:
        with session:
            found = session.head(f"{base}?project_name={quote(project, safe='')}",
                                 timeout=(5, 30))
            if found.status_code == 200:
                return
            if found.status_code in (401, 403):
                raise Unauthorized(f"{what}: the registry's credential may not read projects "
                                   f"({found.status_code})", status=found.status_code)
            if found.status_code != 404:
                raise RegistryError(f"{what}: HEAD {HARBOR_PROJECTS}: {found.status_code}",
                                    status=found.status_code)
            made = session.post(base, json={"project_name": project,
                                            "metadata": {"public": str(public).lower()}},
                                timeout=(5, 30))
            if made.status_code in (201, 409):  # 409: someone made it meanwhile
                return
            if made.status_code in (401, 403):
                raise Unauthorized(f"{what}: the registry's credential may not create "
                                   f"projects ({made.status_code})", status=made.status_code)
            raise RegistryError(f"{what}: creating it answered {made.status_code}",
                                status=made.status_code)
    except requests.RequestException as exc:
        raise RegistryUnavailable(f"{what}: {type(exc).__name__}") from exc


def health(registry: RegistryView) -> str:
    """Harbor's registry status: `healthy` when `GET /v2/` lets the registry's credential
    in, `unhealthy` otherwise (unreachable, refused, not a registry)."""
    credential = Credential(registry.access_key, registry.access_secret) \
        if registry.access_key else None
    client = RegistryClient(registry.url, credential, verify=_verify(registry), timeout=5.0,
                            connect_timeout=2.0)
    try:
        client.ping()
    except (RegistryError, ValueError):
        return "unhealthy"
    finally:
        client.close()
    return "healthy"
