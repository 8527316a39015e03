"""Which artifacts a scan of one pushed reference covers, as Harbor decides it. Pure.

Harbor scans artifacts of type IMAGE (an image config) whose manifest media type the
scanner consumes; an index is scanned through its children, each with no tag of its own.
Everything else (Helm charts, other OCI artifacts, attestations) is skipped with a reason
the log can show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sidecar.scan.spec import AdapterMetadata

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
IMAGE_CONFIGS = frozenset({"application/vnd.oci.image.config.v1+json",
                           "application/vnd.docker.container.image.v1+json"})
#: BuildKit's attestation manifests inside an index (in-toto layers, not an image to scan)
_ATTESTATION = ("vnd.docker.reference.type", "attestation-manifest")


@dataclass(frozen=True)
class ScanTarget:
    """One artifact to submit: what the ScanRequest names, and the reports to poll."""

    digest: str
    media_type: str
    tag: str
    report_types: tuple[str, ...]


@dataclass(frozen=True)
class Skipped:
    digest: str
    reason: str


def is_index(media_type: str) -> bool:
    return media_type in INDEX_TYPES


def index_children(manifest: dict[str, Any]) -> tuple[list[tuple[str, str]], list[Skipped]]:
    """An index's children to scan, as (digest, media type), and those skipped."""
    children: list[tuple[str, str]] = []
    skipped: list[Skipped] = []
    for entry in manifest.get("manifests") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
            continue
        annotations = entry.get("annotations") or {}
        if isinstance(annotations, dict) and annotations.get(_ATTESTATION[0]) == _ATTESTATION[1]:
            skipped.append(Skipped(entry["digest"], "an attestation, not an image"))
            continue
        children.append((entry["digest"], str(entry.get("mediaType") or "")))
    return children, skipped


def plan_image(metadata: AdapterMetadata, *, digest: str, tag: str, media_type: str,
               manifest: dict[str, Any]) -> ScanTarget | Skipped:
    """A single (non-index) manifest: a target, or why it is not scanned."""
    media_type = str(manifest.get("mediaType") or media_type)
    if is_index(media_type):
        raise ValueError("an index is scanned through its children (index_children)")
    config = manifest.get("config")
    config_type = config.get("mediaType") if isinstance(config, dict) else None
    if config_type not in IMAGE_CONFIGS:
        return Skipped(digest, f"not an image (config {config_type or 'missing'})")
    report_types = metadata.report_types(media_type)
    if not report_types:
        return Skipped(digest, f"scanner {metadata.name} does not scan {media_type} artifacts "
                               "into a report Harbor reads")
    return ScanTarget(digest=digest, media_type=media_type, tag=tag, report_types=report_types)
