"""Scans someone asks for (Harbor's scan / stop API, `sidecar scan`), and what an artifact
reference names in the registry.

Harbor's checks and words: 404 for an artifact the registry does not have, 412 when the
project has no scanner, 400 for an artifact that is not an image, 409 while a scan of it is
waiting or running; stop answers 400 when nothing of it is being scanned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from sidecar.registry import NotFound
from sidecar.registry import RegistryClient
from sidecar.registry import RegistryError
from sidecar.registry import Unauthorized
from sidecar.scan import overview
from sidecar.scan import plan
from sidecar.store import jobs as job_store
from sidecar.store import scans as scan_store
from sidecar.store.executor import Executor
from sidecar.store.jobs import JobView
from sidecar.store.scans import MANUAL
from sidecar.store.scans import ScanOrder

#: Harbor's report status words for a job still waiting or running (409's message)
_WAITING = {"pending": "Pending", "running": "Running"}


class ScanRefused(Exception):
    """Harbor's answer to a scan or stop that cannot be done: status, code, message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Artifact:
    """What the registry says of one reference: enough for Harbor's Artifact and a scan."""

    repository: str
    digest: str
    manifest_media_type: str
    media_type: str  # the config's (an index: its own), as Harbor's `media_type`
    type: str  # IMAGE, CHART, UNKNOWN
    size: int
    children: tuple[str, ...] = field(default=())


def artifact_type(manifest: dict[str, Any], media_type: str) -> str:
    if plan.is_index(media_type):
        return "IMAGE"
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    config_type = config.get("mediaType", "")
    if config_type in plan.IMAGE_CONFIGS:
        return "IMAGE"
    if config_type == "application/vnd.cncf.helm.config.v1+json":
        return "CHART"
    return "UNKNOWN"


def lookup(registry: RegistryClient, repository: str, reference: str) -> Artifact:
    """The artifact `reference` (a tag or a digest) names; ScanRefused(404) if none."""
    where = f"{repository}{'@' if reference.startswith('sha256:') else ':'}{reference}"
    try:
        manifest = registry.get_manifest(repository, reference)
    except NotFound:
        raise ScanRefused(404, "NOT_FOUND", f"artifact {where} not found") from None
    except Unauthorized as exc:
        raise ScanRefused(403, "FORBIDDEN", f"the registry refused to show {where} to the "
                          f"sidecar: {exc}") from None
    except RegistryError as exc:
        raise ScanRefused(502, "BAD_GATEWAY", f"reading {where}: {exc}") from None
    try:
        body = json.loads(manifest.data)
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    media_type = str(body.get("mediaType") or manifest.media_type)
    kind = artifact_type(body, media_type)
    config = body.get("config") if isinstance(body.get("config"), dict) else {}
    descriptors = [d for d in [config, *(body.get("layers") or []),
                               *(body.get("manifests") or [])] if isinstance(d, dict)]
    size = len(manifest.data) + sum(d["size"] for d in descriptors
                                    if isinstance(d.get("size"), int))
    children = tuple(digest for digest, _ in plan.index_children(body)[0]) \
        if plan.is_index(media_type) else ()
    return Artifact(repository=repository, digest=manifest.digest,
                    manifest_media_type=media_type,
                    media_type=config.get("mediaType", media_type) if config else media_type,
                    type=kind, size=size, children=children)


def request_scan(executor: Executor, registry: RegistryClient, repository: str,
                 reference: str, *, operator: str, host: str = "") -> tuple[Artifact, JobView]:
    """Queue a scan of `reference` with the project's scanner; the artifact and its job."""
    project = repository.partition("/")[0]
    if executor.run(scan_store.find_project, project, True) is None:
        raise ScanRefused(404, "NOT_FOUND", f"project {project} not found")
    scanner = executor.run(scan_store.project_scanner, project)
    if scanner is None:
        raise ScanRefused(412, "PRECONDITION", f"no available scanner for project: {project}")
    artifact = lookup(registry, repository, reference)
    if artifact.type != "IMAGE":
        raise ScanRefused(400, "BAD_REQUEST", f"the configured scanner {scanner.name} does "
                          f"not support scanning artifact with mime type "
                          f"{artifact.manifest_media_type}")
    tag = "" if reference.startswith("sha256:") else reference
    order = ScanOrder(scanner=scanner.name, repository=repository, digest=artifact.digest,
                      tag=tag, operator=operator, trigger=MANUAL, host=host)
    queued = executor.run(scan_store.enqueue, order)
    if queued.job_id is None:
        status = _WAITING.get(queued.existing.status, queued.existing.status) \
            if queued.existing else "Pending"
        raise ScanRefused(409, "CONFLICT", f"a previous scan process is {status}")
    return artifact, executor.run(job_store.get, queued.job_id)


def request_stop(executor: Executor, registry: RegistryClient, repository: str,
                 reference: str) -> list[JobView]:
    """Ask every waiting or running scan of the artifact (its children, for an index) to
    stop; ScanRefused(400) when there is none."""
    artifact = lookup(registry, repository, reference)
    stopping: list[JobView] = []
    for digest in (artifact.digest, *artifact.children):
        for job in executor.run(scan_store.running_for, digest):
            view = executor.run(job_store.request_stop, job.id)
            if view is not None:
                stopping.append(view)
    if not stopping:
        raise ScanRefused(400, "BAD_REQUEST", f"no scan job for artifact "
                          f"digest={artifact.digest}")
    return stopping


def _job_overview(job: JobView, now: float) -> dict[str, dict[str, Any]]:
    return overview.scan_overview(job.id, job.status, job.state, job.result,
                                  start_time=job.started_at or job.created_at,
                                  end_time=job.finished_at or now)


def artifact_overview(executor: Executor, artifact: Artifact, accept: list[str],
                      now: float) -> dict[str, dict[str, Any]] | None:
    """The artifact's scan_overview as Harbor's artifact API answers it: the first report
    type of `accept` that has a summary, keyed by it; None if it was never scanned (an index:
    its children's summaries merged)."""
    scanner = executor.run(scan_store.project_scanner, artifact.repository.partition("/")[0])
    if scanner is None:
        return None
    digests = artifact.children or (artifact.digest,)
    found: list[dict[str, dict[str, Any]]] = []
    for digest in digests:
        job = executor.run(scan_store.latest, digest, scanner.name)
        if job is not None:
            found.append(_job_overview(job, now))
    for mime in accept:
        summaries = [item[mime] for item in found if mime in item]
        if not summaries:
            continue
        if not artifact.children:
            return {mime: summaries[0]}
        return {mime: overview.merge(summaries, overview.report_id(0, artifact.digest + mime))}
    return None
