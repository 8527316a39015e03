"""What one manifest references, in the order Harbor copies them. Pure.

An index: its child manifests (each copied, with its own blobs, before the index). An image
manifest: its config, then its layers; foreign (non-distributable) layers stay behind, as
Harbor leaves them; `subject` is not followed. Schema 1 manifests: their fsLayers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

INDEX_TYPES = frozenset({
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
})
SCHEMA1_TYPES = frozenset({
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
})
#: layers a registry may not serve (Windows base layers): never copied
FOREIGN_LAYERS = frozenset({
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
})


class BadManifest(ValueError):
    """The source's manifest cannot be read: nothing of it can be copied."""


@dataclass(frozen=True)
class Ref:
    """A descriptor: what to copy, and how large the source says it is (None: unknown)."""

    digest: str
    media_type: str = ""
    size: int | None = None


@dataclass(frozen=True)
class Content:
    """A manifest's references: child manifests (an index) and blobs (an image)."""

    media_type: str
    children: tuple[Ref, ...] = ()
    blobs: tuple[Ref, ...] = ()

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


def read_manifest(data: bytes, header_type: str = "") -> Content:
    """The references of manifest bytes; BadManifest when they are not a manifest."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise BadManifest("the manifest is not JSON") from None
    if not isinstance(body, dict):
        raise BadManifest("the manifest is not a JSON object")
    media_type = str(body.get("mediaType") or header_type or "")
    if "manifests" in body and media_type not in SCHEMA1_TYPES:
        children = tuple(_ref(item, "manifests") for item in _list(body, "manifests"))
        return Content(media_type or "application/vnd.oci.image.index.v1+json",
                       children=children)
    if body.get("schemaVersion") == 1 or media_type in SCHEMA1_TYPES:
        layers = [_ref({"digest": item.get("blobSum")}, "fsLayers")
                  for item in _list(body, "fsLayers")]
        unique = tuple(dict.fromkeys(layers))
        return Content(media_type or "application/vnd.docker.distribution.manifest.v1+json",
                       blobs=unique)
    blobs: list[Ref] = []
    if "config" in body:
        blobs.append(_ref(body["config"], "config"))
    for item in _list(body, "layers"):
        ref = _ref(item, "layers")
        if ref.media_type not in FOREIGN_LAYERS:
            blobs.append(ref)
    if not blobs:
        raise BadManifest("the manifest names neither manifests, a config nor layers")
    return Content(media_type, blobs=tuple(dict.fromkeys(blobs)))


def _list(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = body.get(key) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise BadManifest(f"the manifest's {key} is not a list of descriptors")
    return items


def _ref(item: Any, key: str) -> Ref:
    if not isinstance(item, dict):
        raise BadManifest(f"the manifest's {key} is not a descriptor")
    digest = item.get("digest")
    if not isinstance(digest, str) or ":" not in digest:
        raise BadManifest(f"a descriptor in the manifest's {key} has no digest")
    size = item.get("size")
    return Ref(digest=digest, media_type=str(item.get("mediaType") or ""),
               size=size if isinstance(size, int) and not isinstance(size, bool) else None)
