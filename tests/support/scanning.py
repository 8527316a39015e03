"""What the scanning tests share: rules with a scanner, images and indexes, reading the store."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.support.images import make_image

SCAN_EVENTS = ("SCANNING_COMPLETED", "SCANNING_FAILED", "SCANNING_STOPPED")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def scan_config(timeout: float = 60, **sidecar: Any) -> dict:
    """harbor.yml for scanning tests: short job lease and backoff, the scan deadline."""
    return {"sidecar": {"jobs": {"lease_seconds": 5, "backoff_seconds": 0.2,
                                 "backoff_max_seconds": 1.0},
                        "scan": {"timeout_seconds": timeout}, **sidecar}}


def scan_rules(receiver_url: str, adapter_url: str, *, project: str = "proj",
               event_types: tuple[str, ...] = SCAN_EVENTS, auto_scan: bool = True,
               **scanner: Any) -> dict:
    """One default scanner, one project scanning on push, one policy for the scan events."""
    return {
        "scanners": [{"name": "sim", "url": adapter_url, "default": True, **scanner}],
        "projects": [{
            "name": project, "public": False, "auto_scan": auto_scan,
            "webhooks": [{"name": "scans", "enabled": True, "event_types": list(event_types),
                          "targets": [{"type": "http", "address": receiver_url}]}],
        }],
    }


def layers_of(layout: Path, digest: str) -> list[str]:
    manifest = json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_text())
    return [layer["digest"] for layer in manifest["layers"]]


def make_index(layout: Path, tag: str, children: int = 2) -> tuple[str, dict[str, list[str]]]:
    """An OCI layout whose `tag` is an index of `children` images (each its own layers).

    Returns the index digest and each child's layer digests.
    """
    blobs = layout / "blobs" / "sha256"
    entries, layers = [], {}
    for number in range(children):
        part = layout.parent / f"{layout.name}-child{number}"
        digest = make_image(part, tag="c", layers=2, layer_size=4096)
        blobs.mkdir(parents=True, exist_ok=True)
        for blob in (part / "blobs" / "sha256").iterdir():
            (blobs / blob.name).write_bytes(blob.read_bytes())
        raw = (blobs / digest.split(":")[1]).read_bytes()
        entries.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": len(raw),
                        "platform": {"architecture": ["amd64", "arm64", "s390x"][number % 3],
                                     "os": "linux"}})
        layers[digest] = layers_of(layout, digest)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries},
                       sort_keys=True).encode()
    digest = "sha256:" + hashlib.sha256(index).hexdigest()
    (blobs / digest.split(":")[1]).write_bytes(index)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_INDEX, "digest": digest, "size": len(index),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return digest, layers


def scan_jobs(sidecar) -> list[dict[str, Any]]:
    """The sidecar's scan jobs, oldest first, read from its SQLite store."""
    path = sidecar.database.split(":///", 1)[1]
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM job WHERE kind = 'scan' ORDER BY id").fetchall()
    return [dict(row) for row in rows]


def event_types(sidecar) -> list[str]:
    """The types of the events the sidecar recorded, oldest first."""
    path = sidecar.database.split(":///", 1)[1]
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT type FROM event ORDER BY id")]
