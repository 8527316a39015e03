"""podman, oras-py and skopeo push and pull through `sidecar serve` as they do against the registry.

Each client has its own upload shape: skopeo PATCHes with Content-Length, podman PATCHes chunked
(size unknown, layers recompressed on the fly), oras PUTs the whole blob after the POST.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import uuid

import pytest

from tests.support import clients
from tests.support import recorded
from tests.support.recorded import resource

pytestmark = pytest.mark.e2e

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_CONFIG = "application/vnd.example.sbom.config.v1+json"
ARTIFACT_LAYER = "application/vnd.example.sbom.v1+json"


def _repo(prefix: str) -> str:
    return f"proj/{prefix}-{uuid.uuid4().hex[:8]}"


def _layout(path) -> tuple[str, dict]:
    """(manifest digest, manifest) of the single image in an OCI layout."""
    [entry] = json.loads((path / "index.json").read_text())["manifests"]
    digest = entry["digest"]
    manifest = json.loads((path / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())
    return digest, manifest


def _sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def test_large_image_round_trips_byte_for_byte(sidecar_factory, registry, image, tmp_path):
    sidecar = sidecar_factory()
    layout, digest = image("v1", layers=1, layer_size=50 * 1024 * 1024)
    _, source = _layout(layout)
    repo = _repo("big")
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1")

    via_sidecar = clients.inspect(f"{sidecar.netloc}/{repo}:v1")
    direct = clients.inspect(f"{registry.netloc}/{repo}:v1")
    assert via_sidecar["Digest"] == direct["Digest"] == digest
    assert via_sidecar["Layers"] == direct["Layers"] == [x["digest"] for x in source["layers"]]

    out = tmp_path / "pulled"
    clients.pull(f"{sidecar.netloc}/{repo}:v1", out)
    pulled_digest, pulled = _layout(out)
    assert pulled_digest == digest
    assert pulled == source
    for blob in [pulled["config"], *pulled["layers"]]:
        path = out / "blobs" / "sha256" / blob["digest"].split(":")[1]
        assert os.path.getsize(path) == blob["size"]
        assert _sha256_file(path) == blob["digest"]

    events = recorded.until_barrier(sidecar, repo, "v1")
    assert [e["type"] for e in events] == ["PUSH_ARTIFACT", "PULL_ARTIFACT", "PULL_ARTIFACT"]


@pytest.fixture
def podman(tmp_path):
    client = clients.Podman(tmp_path / "podman")
    yield client
    client.close()


def test_podman_chunked_push_and_pull(sidecar_factory, registry, image, podman):
    sidecar = sidecar_factory()
    layout, _ = image("v1", layers=2, layer_size=512 * 1024)
    image_id = podman.load_layout(layout, "v1")
    repo = _repo("podman")
    podman.push(image_id, f"{sidecar.netloc}/{repo}:v1")

    # podman recompresses layers: the digest to expect is what the registry now holds
    direct = clients.inspect(f"{registry.netloc}/{repo}:v1")
    [push] = recorded.wait_events(sidecar, 1)
    assert push["type"] == "PUSH_ARTIFACT"
    assert resource(push) == {"digest": direct["Digest"], "tag": "v1",
                              "resource_url": f"{sidecar.netloc}/{repo}:v1"}

    podman.remove_all()
    assert podman.pull(f"{sidecar.netloc}/{repo}:v1") == image_id  # same config, same image
    events = recorded.until_barrier(sidecar, repo, "v1")
    assert [e["type"] for e in events] == ["PUSH_ARTIFACT", "PULL_ARTIFACT"]


def test_chunked_patch_without_content_length(sidecar_factory, registry):
    """podman's upload shape, on the wire: PATCH with Transfer-Encoding: chunked."""
    sidecar = sidecar_factory()
    repo = _repo("chunked")
    data = os.urandom(3 * 1024 * 1024 + 17)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", sidecar.port, timeout=30)
    try:
        conn.request("POST", f"/v2/{repo}/blobs/uploads/")
        started = conn.getresponse()
        started.read()
        assert started.status == 202
        location = started.getheader("Location").split(sidecar.netloc, 1)[1]

        def pieces():
            for start in range(0, len(data), 100_000):
                yield data[start:start + 100_000]

        conn.request("PATCH", location, body=pieces(), encode_chunked=True,
                     headers={"Content-Type": "application/octet-stream",
                              "Transfer-Encoding": "chunked"})
        patched = conn.getresponse()
        patched.read()
        assert patched.status == 202
        assert patched.getheader("Range") == f"0-{len(data) - 1}"
        location = patched.getheader("Location").split(sidecar.netloc, 1)[1]
        conn.request("PUT", f"{location}&digest={digest}", body=b"")
        finished = conn.getresponse()
        finished.read()
        assert finished.status == 201
    finally:
        conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=30)
    try:
        conn.request("GET", f"/v2/{repo}/blobs/{digest}")
        assert conn.getresponse().read() == data
    finally:
        conn.close()


def test_oras_push_and_pull_of_an_artifact(sidecar_factory, registry, tmp_path):
    sidecar = sidecar_factory()
    repo = _repo("sboms/app")
    content = os.urandom(4096)
    response = clients.oras_push(
        f"{sidecar.netloc}/{repo}:0.1.0", {"sbom.json": (content, ARTIFACT_LAYER)},
        tmp_path / "src", config=(b'{"name":"app"}', ARTIFACT_CONFIG))
    assert response.status_code == 201
    assert response.headers["Location"].startswith(f"http://{sidecar.netloc}/")
    digest = response.headers["Docker-Content-Digest"]

    events = recorded.until_barrier(sidecar, repo, "0.1.0")
    [push] = events
    assert push["type"] == "PUSH_ARTIFACT"
    assert resource(push) == {"digest": digest, "tag": "0.1.0",
                              "resource_url": f"{sidecar.netloc}/{repo}:0.1.0"}

    files = clients.oras_client().pull(target=f"{sidecar.netloc}/{repo}:0.1.0",
                                       outdir=str(tmp_path / "out"))
    assert [open(f, "rb").read() for f in files] == [content]
    manifest = clients.inspect_raw(f"{registry.netloc}/{repo}:0.1.0")
    assert manifest["config"]["mediaType"] == ARTIFACT_CONFIG


def test_cross_repo_mount_passes_through(sidecar_factory, image):
    sidecar = sidecar_factory()
    layout, _ = image("v1", layers=1)
    _, manifest = _layout(layout)
    source, target = _repo("src"), _repo("dst")
    clients.push(layout, "v1", f"{sidecar.netloc}/{source}:v1")
    layer = manifest["layers"][0]["digest"]

    conn = http.client.HTTPConnection("127.0.0.1", sidecar.port, timeout=30)
    try:
        conn.request("POST", f"/v2/{target}/blobs/uploads/?mount={layer}&from={source}")
        mounted = conn.getresponse()
        mounted.read()
        assert mounted.status == 201
        assert mounted.getheader("Docker-Content-Digest") == layer
        assert mounted.getheader("Location") == f"http://{sidecar.netloc}/v2/{target}/blobs/{layer}"
        conn.request("HEAD", f"/v2/{target}/blobs/{layer}")
        head = conn.getresponse()
        head.read()
        assert head.status == 200
    finally:
        conn.close()

    # a mount is blob traffic, not an artifact event
    assert [e["type"] for e in recorded.until_barrier(sidecar, source, "v1")] == [
        "PUSH_ARTIFACT"]
