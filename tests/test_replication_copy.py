"""The copy, unit by unit: what a manifest references and in which order it goes, how `speed`
paces bytes, which blobs are skipped, mounted or sent, and what fails a copy.

The registries here are in-memory fakes (the end-to-end tests use real ones); they record
every write, so the order Harbor's transfer keeps (children before the index, blobs before
their manifest, the manifest last) is checked call by call.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from sidecar.registry import Descriptor
from sidecar.registry import DigestMismatch
from sidecar.registry import Manifest
from sidecar.registry import NotFound
from sidecar.registry import RegistryError
from sidecar.registry import RegistryUnavailable
from sidecar.registry import Unauthorized
from sidecar.replicate.copy import COPIED
from sidecar.replicate.copy import EXISTS
from sidecar.replicate.copy import KEPT
from sidecar.replicate.copy import Copier
from sidecar.replicate.copy import MountSources
from sidecar.replicate.plan import BadManifest
from sidecar.replicate.plan import read_manifest
from sidecar.replicate.task import transient
from sidecar.replicate.throttle import Throttle

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Blob:
    def __init__(self, data: bytes):
        self.data, self.digest, self.size = data, sha(data), len(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def __iter__(self):
        for start in range(0, len(self.data), 7):
            yield self.data[start:start + 7]


class FakeRegistry:
    """Manifests by (repo, ref) and blobs by (repo, digest); every write is logged."""

    def __init__(self, *, lie_about_manifests: bool = False):
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.writes: list[tuple[str, str]] = []
        self.lie = lie_about_manifests

    def push_image(self, repo: str, tag: str, layers: list[bytes], config: bytes = b"{}",
                   extra_layers: list[dict] | None = None) -> str:
        self.blobs[(repo, sha(config))] = config
        for layer in layers:
            self.blobs[(repo, sha(layer))] = layer
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"digest": sha(config), "size": len(config)},
                           "layers": [{"digest": sha(x), "size": len(x)} for x in layers]
                           + (extra_layers or [])}).encode()
        for ref in (tag, sha(body)):
            self.manifests[(repo, ref)] = (body, OCI_MANIFEST)
        return sha(body)

    def push_index(self, repo: str, tag: str, children: list[str]) -> str:
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": d,
             "size": len(self.manifests[(repo, d)][0])} for d in children]}).encode()
        for ref in (tag, sha(body)):
            self.manifests[(repo, ref)] = (body, OCI_INDEX)
        return sha(body)

    # -- the RegistryClient calls the copier makes --------------------------------------------
    def get_manifest(self, repo, ref):
        if (repo, ref) not in self.manifests:
            raise NotFound(f"manifest {repo}:{ref}", status=404)
        body, media_type = self.manifests[(repo, ref)]
        return Manifest(body, media_type, sha(body))

    def head_manifest(self, repo, ref):
        if (repo, ref) not in self.manifests:
            return None
        body, media_type = self.manifests[(repo, ref)]
        return Descriptor("sha256:" + "0" * 64 if self.lie else sha(body), media_type,
                          len(body))

    def put_manifest(self, repo, ref, data, media_type):
        self.writes.append(("manifest", ref))
        for key in (ref, sha(data)):
            self.manifests[(repo, key)] = (data, media_type)
        return sha(data)

    def delete_manifest(self, repo, digest):
        self.writes.append(("delete", digest))

    def head_blob(self, repo, digest):
        data = self.blobs.get((repo, digest))
        return None if data is None else len(data)

    def open_blob(self, repo, digest):
        return Blob(self.blobs[(repo, digest)])

    def mount_blob(self, repo, digest, from_repo):
        if (from_repo, digest) not in self.blobs:
            return False
        self.writes.append(("mount", digest))
        self.blobs[(repo, digest)] = self.blobs[(from_repo, digest)]
        return True

    def upload_blob(self, repo, digest, data, *, size=None, chunk_size=None, mount_from=None):
        body = b"".join(data)
        self.writes.append(("blob", digest))
        if sha(body) == digest:
            self.blobs[(repo, digest)] = body


def copier(source, dest, **options) -> Copier:
    return Copier(source, dest, **options)


def test_an_image_goes_config_then_layers_then_manifest():
    source, dest = FakeRegistry(), FakeRegistry()
    digest = source.push_image("p/app", "v1", [b"layer-1", b"layer-2"], config=b'{"c":1}')
    done = copier(source, dest).copy("p/app", "m/app", "v1", override=True)
    assert done.outcome == COPIED and done.digest == digest
    assert dest.writes == [("blob", sha(b'{"c":1}')), ("blob", sha(b"layer-1")),
                           ("blob", sha(b"layer-2")), ("manifest", "v1")]
    assert dest.manifests[("m/app", "v1")][0] == source.manifests[("p/app", "v1")][0]


def test_an_index_goes_after_its_children_each_after_its_blobs():
    source, dest = FakeRegistry(), FakeRegistry()
    amd = source.push_image("p/app", "amd", [b"amd-layer"], config=b'{"a":1}')
    arm = source.push_image("p/app", "arm", [b"arm-layer"], config=b'{"a":2}')
    index = source.push_index("p/app", "v1", [amd, arm])
    copier(source, dest).copy("p/app", "p/app", "v1", override=True)
    assert dest.writes == [
        ("blob", sha(b'{"a":1}')), ("blob", sha(b"amd-layer")), ("manifest", amd),
        ("blob", sha(b'{"a":2}')), ("blob", sha(b"arm-layer")), ("manifest", arm),
        ("manifest", "v1")]
    assert dest.head_manifest("p/app", "v1").digest == index


def test_what_the_destination_holds_is_skipped_and_foreign_layers_stay():
    source, dest = FakeRegistry(), FakeRegistry()
    source.push_image("p/app", "v1", [b"shared", b"new"], extra_layers=[
        {"mediaType": FOREIGN, "digest": sha(b"windows"), "size": 7}])
    dest.blobs[("p/app", sha(b"shared"))] = b"shared"
    dest.blobs[("p/app", sha(b"{}"))] = b"{}"
    sizes = []
    copier(source, dest, on_blob=lambda d, n: sizes.append(n)).copy(
        "p/app", "p/app", "v1", override=True)
    assert [w for w in dest.writes if w[0] == "blob"] == [("blob", sha(b"new"))]
    assert sorted(sizes) == [0, 0, 3], "skipped blobs count as done, with no bytes"


def test_a_blob_sent_once_is_mounted_into_the_next_repository():
    source, dest = FakeRegistry(), FakeRegistry()
    source.push_image("p/one", "v1", [b"base"])
    source.push_image("p/two", "v1", [b"base"])
    mounts = MountSources()
    copier(source, dest, mounts=mounts).copy("p/one", "p/one", "v1", override=True)
    dest.writes.clear()
    copier(source, dest, mounts=mounts).copy("p/two", "p/two", "v1", override=True)
    assert ("mount", sha(b"base")) in dest.writes
    assert ("blob", sha(b"base")) not in dest.writes


def test_the_same_digest_is_nothing_to_do_and_override_false_keeps_theirs():
    source, dest = FakeRegistry(), FakeRegistry()
    ours = source.push_image("p/app", "v1", [b"ours"])
    dest.push_image("p/app", "v1", [b"ours"])
    assert copier(source, dest).copy("p/app", "p/app", "v1", True).outcome == EXISTS
    dest = FakeRegistry()
    theirs = dest.push_image("p/app", "v1", [b"theirs"])
    kept = copier(source, dest).copy("p/app", "p/app", "v1", override=False)
    assert (kept.outcome, kept.existing) == (KEPT, theirs)
    assert dest.writes == []
    assert copier(source, dest).copy("p/app", "p/app", "v1", override=True).digest == ours
    assert dest.head_manifest("p/app", "v1").digest == ours


def test_a_destination_naming_another_digest_after_the_upload_fails_the_copy():
    source, dest = FakeRegistry(), FakeRegistry(lie_about_manifests=True)
    source.push_image("p/app", "v1", [b"x"])
    with pytest.raises(DigestMismatch, match="after the upload the destination holds"):
        copier(source, dest).copy("p/app", "p/app", "v1", override=True)


def test_a_blob_that_does_not_arrive_intact_fails_the_copy():
    source, dest = FakeRegistry(), FakeRegistry()
    source.push_image("p/app", "v1", [b"good"])
    source.blobs[("p/app", sha(b"good"))] = b"evil"  # served bytes differ from the digest
    with pytest.raises(DigestMismatch, match="does not hold it"):
        copier(source, dest).copy("p/app", "p/app", "v1", override=True)
    assert ("manifest", "v1") not in dest.writes


def test_a_stop_request_is_seen_between_pieces_of_a_blob():
    source, dest = FakeRegistry(), FakeRegistry()
    source.push_image("p/app", "v1", [b"x" * 100])
    calls = []

    class Stop(Exception):
        pass

    def check():
        calls.append(1)
        if len(calls) > 4:
            raise Stop()

    with pytest.raises(Stop):
        copier(source, dest, check_stop=check).copy("p/app", "p/app", "v1", True)
    assert ("manifest", "v1") not in dest.writes


# -- manifests -------------------------------------------------------------------------------

def test_manifests_are_read_strictly():
    image = read_manifest(json.dumps({"mediaType": OCI_MANIFEST,
                                      "config": {"digest": "sha256:c", "size": 2},
                                      "layers": [{"digest": "sha256:l", "size": 3}]}).encode())
    assert [b.digest for b in image.blobs] == ["sha256:c", "sha256:l"] and not image.is_index
    schema1 = read_manifest(json.dumps({"schemaVersion": 1, "fsLayers": [
        {"blobSum": "sha256:a"}, {"blobSum": "sha256:a"}, {"blobSum": "sha256:b"}]}).encode())
    assert [b.digest for b in schema1.blobs] == ["sha256:a", "sha256:b"]
    for bad in (b"<html>", b"[]", b"{}", json.dumps({"layers": [{"size": 1}]}).encode()):
        with pytest.raises(BadManifest):
            read_manifest(bad)


# -- speed -------------------------------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def test_speed_paces_bytes_at_kilobytes_per_second():
    fake = FakeClock()
    throttle = Throttle(100, clock=fake.clock, sleep=fake.sleep)
    pieces = list(throttle.pace([b"x" * (1024 * 1024)]))
    assert b"".join(pieces) == b"x" * (1024 * 1024)
    assert max(len(p) for p in pieces) <= 100 * 1024 // 4
    # 1 MiB at 100 KiB/s, the first second's worth from the full bucket
    assert fake.slept == pytest.approx((1024 * 1024 - 100 * 1024) / (100 * 1024))


def test_no_speed_means_no_pacing():
    fake = FakeClock()
    chunks = [b"a" * 10, b"b" * 20]
    assert list(Throttle(0, clock=fake.clock, sleep=fake.sleep).pace(chunks)) == chunks
    assert list(Throttle(-1, clock=fake.clock, sleep=fake.sleep).pace(chunks)) == chunks
    assert fake.slept == 0


def test_mount_sources_are_bounded():
    mounts = MountSources(size=2)
    for digest in ("a", "b", "c"):
        mounts.put(digest, f"repo-{digest}")
    assert mounts.get("a") is None and mounts.get("c") == "repo-c"


@pytest.mark.parametrize("error, retried", [
    (RegistryUnavailable("connection refused"), True),
    (DigestMismatch("bad bytes"), True),
    (RegistryError("503", status=503), True),
    (RegistryError("429", status=429), True),
    (Unauthorized("401", status=401), False),
    (NotFound("404", status=404), False),
    (RegistryError("400 MANIFEST_INVALID", status=400), False),
    (RegistryError("stored another digest"), False),
])
def test_what_is_retried(error, retried):
    assert transient(error) is retried


def test_a_harbor_destination_needs_a_project_part():
    from sidecar.replicate.destinations import check_path
    from sidecar.store.replication import RegistryView

    def registry(kind: str) -> RegistryView:
        return RegistryView(id=1, name="r", type=kind, url="https://r.example", description="",
                            credential_type="", access_key="", insecure=False,
                            ca_certificate="", source="rules", created_at=0, updated_at=0)

    check_path(registry("harbor"), "library/nginx")
    check_path(registry("docker-registry"), "nginx")
    with pytest.raises(ValueError, match=r'"nginx" contains 1 path components \[\'nginx\'\], '
                                         "but the destination registry requires at least 2"):
        check_path(registry("harbor"), "nginx")
