"""What an OCI manifest's bytes say, read without trusting them. Pure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


def parse_manifest(body: bytes) -> dict[str, Any] | None:
    """The manifest as a mapping, or None for anything that is not a JSON object."""
    try:
        manifest = json.loads(body)
    except ValueError:
        return None
    return manifest if isinstance(manifest, dict) else None


def manifest_size(body: bytes) -> int | None:
    """Artifact size as Harbor counts it: the manifest plus what it references."""
    manifest = parse_manifest(body)
    if manifest is None:
        return None
    total = len(body)
    for key in ("layers", "manifests", "blobs"):
        for item in manifest.get(key) or []:
            if isinstance(item, dict) and isinstance(item.get("size"), int):
                total += item["size"]
    config = manifest.get("config")
    if isinstance(config, dict) and isinstance(config.get("size"), int):
        total += config["size"]
    return total


# -- Helm charts stored as OCI artifacts ---------------------------------------------------

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART_LAYERS = (
    "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
    "application/tar+gzip",  # Helm's legacy chart layer type (HIP-0017)
)
TITLE = "org.opencontainers.image.title"
VERSION = "org.opencontainers.image.version"


@dataclass(frozen=True)
class HelmManifest:
    """What an OCI manifest says about the Helm chart it carries."""

    name: str
    version: str
    size: int | None


def helm_manifest(body: bytes) -> HelmManifest | None:
    """The chart an OCI manifest carries, or None when its config is not Helm's."""
    if HELM_CONFIG.encode() not in body:
        return None  # cheap test first: most manifests are images
    manifest = parse_manifest(body)
    if manifest is None:
        return None
    config = manifest.get("config")
    if not isinstance(config, dict) or config.get("mediaType") != HELM_CONFIG:
        return None
    annotations = manifest.get("annotations")
    annotations = annotations if isinstance(annotations, dict) else {}
    size = None
    for layer in manifest.get("layers") or []:
        if isinstance(layer, dict) and layer.get("mediaType") in HELM_CHART_LAYERS \
                and isinstance(layer.get("size"), int):
            size = layer["size"]
            break
    return HelmManifest(
        name=str(annotations.get(TITLE) or ""),
        version=str(annotations.get(VERSION) or ""),
        size=size,
    )
