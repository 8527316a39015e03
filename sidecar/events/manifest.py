"""What an OCI manifest's bytes say, read without trusting them. Pure."""

from __future__ import annotations

import json
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
