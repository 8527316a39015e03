"""Real clients through `sidecar serve`: which requests become Harbor events, with which fields."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support import clients
from tests.support import recorded
from tests.support.auth import basic
from tests.support.auth import bearer
from tests.support.auth import htpasswd_file
from tests.support.recorded import resource
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _repo(prefix: str = "app") -> str:
    return f"proj/{prefix}-{uuid.uuid4().hex[:8]}"


def _curl(*args: str) -> subprocess.CompletedProcess:
    return clients.run(["curl", "-sS", "--max-time", "30", *args])


def _delete_by_digest(sidecar, repo: str, digest: str) -> None:
    status = _curl("-X", "DELETE", "-o", "/dev/null", "-w", "%{http_code}",
                   f"{sidecar.url}/v2/{repo}/manifests/{digest}").stdout
    assert status == "202"


def _types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def _layout_size(layout: Path, digest: str) -> int:
    """Harbor's artifact size: manifest bytes + config + layers, from the OCI layout."""
    body = (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
    manifest = json.loads(body)
    return len(body) + manifest["config"]["size"] + sum(x["size"] for x in manifest["layers"])


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    """A second registry that wants Basic credentials (alice / s3cret-pw)."""
    workdir = tmp_path_factory.mktemp("auth-registry")
    htpasswd = htpasswd_file(workdir / "htpasswd", {"alice": "s3cret-pw"})
    reg = Registry(workdir, htpasswd=htpasswd).start()
    yield reg
    reg.stop()


def test_push_records_one_push_per_manifest_put_and_heads_record_nothing(
        sidecar_factory, image):
    sidecar = sidecar_factory()
    layout, digest = image("v1")
    repo = _repo()
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1")

    [push] = recorded.wait_events(sidecar, 1)
    assert push["type"] == "PUSH_ARTIFACT"
    assert push["operator"] == ""
    payload = push["payload"]
    assert payload["operator"] == ""
    assert resource(push) == {"digest": digest, "tag": "v1",
                              "resource_url": f"{sidecar.netloc}/{repo}:v1"}
    assert payload["event_data"]["repository"]["repo_full_name"] == repo
    assert payload["event_data"]["repository"]["namespace"] == "proj"

    # Re-push: every blob exists (HEAD 200s), then the manifest PUT again: one more push only.
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1")
    # HEADs of the manifest are existence checks, not pulls
    _curl("-I", "-H", f"Accept: {OCI_MANIFEST}", f"{sidecar.url}/v2/{repo}/manifests/v1")
    _curl("-I", "-H", f"Accept: {OCI_MANIFEST}", f"{sidecar.url}/v2/{repo}/manifests/{digest}")
    before = recorded.until_barrier(sidecar, repo, "v1")
    assert _types(before) == ["PUSH_ARTIFACT", "PUSH_ARTIFACT"]
    assert resource(before[1])["tag"] == "v1"


def test_inspect_raw_is_exactly_one_pull(sidecar_factory, image):
    sidecar = sidecar_factory()
    layout, digest = image("v1")
    repo = _repo()
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1")
    manifest = clients.inspect_raw(f"{sidecar.netloc}/{repo}:v1")
    assert manifest["mediaType"] == OCI_MANIFEST

    before = recorded.until_barrier(sidecar, repo, "v1")
    assert _types(before) == ["PUSH_ARTIFACT", "PULL_ARTIFACT"]
    pull = before[1]
    assert resource(pull) == {"digest": digest, "tag": "v1",
                              "resource_url": f"{sidecar.netloc}/{repo}:v1"}


def test_hostname_from_harbor_yml_sets_resource_url(sidecar_factory, image):
    sidecar = sidecar_factory(config={"hostname": "registry.example.com:8443"})
    layout, digest = image("v1")
    repo = _repo()
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1")
    [push] = recorded.wait_events(sidecar, 1)
    assert resource(push)["resource_url"] == f"registry.example.com:8443/{repo}:v1"


def test_delete_reports_the_tag_the_sidecar_saw(sidecar_factory, image):
    sidecar = sidecar_factory()
    layout, digest = image("v1")
    repo = _repo()
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1")
    clients.delete(f"{sidecar.netloc}/{repo}:v1")  # GET the tag (a pull), DELETE the digest

    events = recorded.wait_events(sidecar, 3)
    assert _types(events) == ["PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT"]
    delete = events[2]
    assert resource(delete) == {"digest": digest, "tag": "v1",
                                "resource_url": f"{sidecar.netloc}/{repo}:v1"}
    custom = delete["payload"]["event_data"]["custom_attributes"]
    assert custom["size"] == str(_layout_size(layout, digest))


def test_delete_finds_tags_pushed_directly_to_the_registry(sidecar_factory, registry, image):
    sidecar = sidecar_factory()
    layout, digest = image("direct")
    repo = _repo()
    clients.push(layout, "direct", f"{registry.netloc}/{repo}:direct")  # bypasses the sidecar
    other, other_digest = image("keep")
    clients.push(other, "keep", f"{registry.netloc}/{repo}:keep")

    # by digest: the sidecar has never seen a tag of this artifact and must list them
    clients.delete(f"{sidecar.netloc}/{repo}@{digest}")

    # skopeo reads the manifest (a pull) before it deletes: wait for both
    [delete] = [e for e in recorded.wait_events(sidecar, 2) if e["type"] == "DELETE_ARTIFACT"]
    assert resource(delete) == {"digest": digest, "tag": "direct",
                                "resource_url": f"{sidecar.netloc}/{repo}:direct"}
    assert delete["payload"]["event_data"]["custom_attributes"]["size"] == str(
        _layout_size(layout, digest))
    tags = json.loads(_curl(f"{registry.url}/v2/{repo}/tags/list").stdout)["tags"]
    assert tags == ["keep"]


def test_delete_of_an_artifact_with_two_tags(sidecar_factory, registry, image):
    sidecar = sidecar_factory()
    layout, digest = image("one")
    repo = _repo()
    clients.push(layout, "one", f"{sidecar.netloc}/{repo}:one")
    clients.push(layout, "one", f"{registry.netloc}/{repo}:two")  # second tag, not seen

    _delete_by_digest(sidecar, repo, digest)

    events = recorded.wait_events(sidecar, 2)
    assert _types(events) == ["PUSH_ARTIFACT", "DELETE_ARTIFACT"]
    delete = events[1]
    assert resource(delete)["tag"] in ("one", "two")
    assert resource(delete)["digest"] == digest
    assert delete["payload"]["event_data"]["custom_attributes"]["size"] == str(
        _layout_size(layout, digest))


def test_delete_when_remembered_tag_moved_falls_back_to_the_registry(
        sidecar_factory, registry, image):
    """The sidecar saw v1 -> A, then v1 moved to B behind its back; A still has tag `old`."""
    sidecar = sidecar_factory()
    layout, digest = image("v1")
    repo = _repo()
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1")
    clients.push(layout, "v1", f"{registry.netloc}/{repo}:old")
    newer, _ = image("v1")
    clients.push(newer, "v1", f"{registry.netloc}/{repo}:v1")

    _delete_by_digest(sidecar, repo, digest)
    events = recorded.wait_events(sidecar, 2)
    assert _types(events) == ["PUSH_ARTIFACT", "DELETE_ARTIFACT"]
    assert resource(events[1])["tag"] == "old"


def test_failed_and_malformed_manifest_requests_record_nothing(sidecar_factory, image):
    sidecar = sidecar_factory()
    layout, digest = image("v1")
    repo = _repo()
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1")
    zero = "sha256:" + "0" * 64
    for args in (
        [f"{sidecar.url}/v2/{repo}/manifests/nope"],                       # 404
        ["-X", "DELETE", f"{sidecar.url}/v2/{repo}/manifests/{zero}"],      # 404
        ["-X", "DELETE", f"{sidecar.url}/v2/{repo}/manifests/v1"],          # by tag: refused
        ["-X", "PUT", "-H", f"Content-Type: {OCI_MANIFEST}", "--data-binary", "garbage{",
         f"{sidecar.url}/v2/{repo}/manifests/bad"],                        # 400
        [f"{sidecar.url}/v2/{repo}/blobs/{digest}"],                       # not a manifest
        [f"{sidecar.url}/v2/{repo}/tags/list"],
    ):
        _curl("-o", "/dev/null", *args)
    assert _types(recorded.until_barrier(sidecar, repo, "v1")) == ["PUSH_ARTIFACT"]


def test_operator_is_the_basic_auth_user(sidecar_factory, auth_registry, image):
    sidecar = sidecar_factory(upstream=auth_registry.url)
    layout, digest = image("v1")
    repo = _repo()
    ref = f"{sidecar.netloc}/{repo}:v1"
    clients.push(layout, "v1", ref, creds="alice:s3cret-pw")
    clients.inspect_raw(ref, creds="alice:s3cret-pw")
    clients.delete(ref, creds="alice:s3cret-pw")

    events = recorded.wait_events(sidecar, 4)
    assert _types(events) == ["PUSH_ARTIFACT", "PULL_ARTIFACT", "PULL_ARTIFACT",
                              "DELETE_ARTIFACT"]
    assert {e["operator"] for e in events} == {"alice"}
    assert {e["payload"]["operator"] for e in events} == {"alice"}
    # the pre-delete lookup ran with alice's credentials: it found the tag and the size
    assert resource(events[3])["tag"] == "v1"
    assert events[3]["payload"]["event_data"]["custom_attributes"]["size"] == str(
        _layout_size(layout, digest))
    assert "s3cret-pw" not in sidecar.log()


def test_operator_from_bearer_subject_and_anonymous(sidecar_factory, image):
    sidecar = sidecar_factory()
    layout, _ = image("v1")
    repo = _repo()
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1")
    url = f"{sidecar.url}/v2/{repo}/manifests/v1"
    _curl("-o", "/dev/null", "-H", f"Accept: {OCI_MANIFEST}",
          "-H", f"Authorization: {bearer({'sub': 'bob', 'iss': 'test'})}", url)
    _curl("-o", "/dev/null", "-H", f"Accept: {OCI_MANIFEST}", url)
    _curl("-o", "/dev/null", "-H", f"Accept: {OCI_MANIFEST}",
          "-H", f"Authorization: {basic('carol', 'x')}", url)  # open registry ignores it

    events = recorded.until_barrier(sidecar, repo, "v1")
    assert [(e["type"], e["operator"]) for e in events] == [
        ("PUSH_ARTIFACT", ""), ("PULL_ARTIFACT", "bob"), ("PULL_ARTIFACT", ""),
        ("PULL_ARTIFACT", "carol")]
