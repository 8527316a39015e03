"""OCI image layouts built with the standard library (no Docker): random layers, real config."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import tarfile
from pathlib import Path

CHUNK = 1 << 20


def _write_blob(blobs: Path, data_path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(data_path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    name = digest.hexdigest()
    data_path.rename(blobs / name)
    return f"sha256:{name}", size


def _write_bytes(blobs: Path, data: bytes) -> tuple[str, int]:
    name = hashlib.sha256(data).hexdigest()
    (blobs / name).write_bytes(data)
    return f"sha256:{name}", len(data)


def _layer(blobs: Path, size: int, rng: random.Random, index: int) -> tuple[str, int, str]:
    """A gzip tar holding one file of `size` random bytes; returns (digest, size, diff_id)."""
    tmp = blobs / f".layer-{index}.tmp"
    diff = hashlib.sha256()

    class _Tee(io.RawIOBase):
        def __init__(self, sink):
            self.sink = sink

        def writable(self):
            return True

        def write(self, data):
            diff.update(data)
            return self.sink.write(data)

    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1,
                                               mtime=0) as gz:
        tee = io.BufferedWriter(_Tee(gz), CHUNK)
        with tarfile.open(fileobj=tee, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(f"data-{index}.bin")
            info.size = size
            info.mtime = 0

            class _Random(io.RawIOBase):
                left = size

                def readable(self):
                    return True

                def readinto(self, buffer):
                    n = min(len(buffer), self.left)
                    buffer[:n] = rng.randbytes(n)
                    self.left -= n
                    return n

            tar.addfile(info, io.BufferedReader(_Random(), CHUNK))
        tee.flush()
    digest, length = _write_blob(blobs, tmp)
    return digest, length, f"sha256:{diff.hexdigest()}"


def make_image(directory: Path, tag: str = "v1", layers: int = 2, layer_size: int = 64 * 1024,
               seed: int | None = None) -> str:
    """Write (or add a tag to) an OCI layout at `directory`; return the manifest digest."""
    rng = random.Random(seed if seed is not None else int.from_bytes(os.urandom(8), "big"))
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    descriptors, diff_ids = [], []
    for index in range(layers):
        digest, size, diff_id = _layer(blobs, layer_size, rng, index)
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": digest, "size": size})
        diff_ids.append(diff_id)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": {"seed": str(rng.random())}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }, sort_keys=True).encode()
    config_digest, config_size = _write_bytes(blobs, config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": descriptors,
    }, sort_keys=True).encode()
    manifest_digest, manifest_size = _write_bytes(blobs, manifest)
    index_path = directory / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {
        "schemaVersion": 2, "manifests": []}
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get("org.opencontainers.image.ref.name")
                          != tag]
    index["manifests"].append({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest, "size": manifest_size,
        "annotations": {"org.opencontainers.image.ref.name": tag},
    })
    index_path.write_text(json.dumps(index))
    return manifest_digest


OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def make_index(directory: Path, tag: str = "v1", platforms: tuple[str, ...] = ("amd64", "arm64"),
               layer_size: int = 16 * 1024) -> tuple[str, list[str]]:
    """An OCI layout whose `tag` is an index of one image per platform (each its own
    layers); returns (index digest, child digests). Push it with `skopeo copy --all`."""
    blobs = directory / "blobs" / "sha256"
    entries, children = [], []
    for number, arch in enumerate(platforms):
        part = directory.parent / f"{directory.name}-{arch}-{number}"
        digest = make_image(part, tag="child", layers=2, layer_size=layer_size)
        blobs.mkdir(parents=True, exist_ok=True)
        for blob in (part / "blobs" / "sha256").iterdir():
            (blobs / blob.name).write_bytes(blob.read_bytes())
        size = (blobs / digest.split(":")[1]).stat().st_size
        entries.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": size,
                        "platform": {"architecture": arch, "os": "linux"}})
        children.append(digest)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries},
                       sort_keys=True).encode()
    digest, size = _write_bytes(blobs, index)
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_INDEX, "digest": digest, "size": size,
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return digest, children
