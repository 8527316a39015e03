"""Storage quotas enforced by `sidecar serve` in front of a real registry, pushed to by skopeo
and podman, with QUOTA_WARNING and QUOTA_EXCEED at a real receiver (issue 10).

Usage is read as an operator reads it (`sidecar quota --json`). Each test has its own project,
so the session's registry can be shared.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support import clients
from tests.support import quota
from tests.support import recorded
from tests.support.images import make_index
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

KIB = 1024
MIB = 1024 * 1024
DENIED = re.compile(r"denied: (adding [0-9.]+ [KM]?i?B of storage resource, which when updated "
                    r"to current usage of [0-9.]+ [KM]?i?B will exceed the configured upper "
                    r"limit of [0-9.]+ [KM]?i?B\.)")
QUOTA_EVENTS = ("QUOTA_EXCEED", "QUOTA_WARNING")


def _project() -> str:
    return f"q{uuid.uuid4().hex[:10]}"


def _rules(project: str, address: str, storage: str = "1MiB", **quota_extra) -> dict:
    return {"projects": [{"name": project, "quota": {"storage": storage, **quota_extra},
                          "webhooks": [{"name": "quota", "enabled": True,
                                        "event_types": ["PUSH_ARTIFACT", "DELETE_ARTIFACT",
                                                        *QUOTA_EVENTS],
                                        "targets": [{"type": "http", "address": address}]}]}]}


def _quota_events(sidecar) -> list[dict]:
    return [e for e in recorded.events(sidecar) if e["type"] in QUOTA_EVENTS]


def _push(layout, dest: str, tag: str = "v1", all_images: bool = False
          ) -> subprocess.CompletedProcess:
    extra = ["--all"] if all_images else []
    return clients.skopeo("copy", "--dest-tls-verify=false", *extra, f"oci:{layout}:{tag}",
                          f"docker://{dest}", check=False)


def _in_registry(registry, reference: str) -> bool:
    return clients.skopeo("inspect", "--tls-verify=false", "--raw",
                          f"docker://{registry.netloc}/{reference}", check=False
                          ).returncode == 0


def test_warning_fires_once_when_usage_crosses_the_threshold(
        sidecar_factory, receiver, image):
    project = _project()
    sidecar = sidecar_factory(_rules(project, receiver.url, warning="50%"))
    first, _ = image(layers=1, layer_size=300 * KIB)
    second, _ = image(layers=1, layer_size=300 * KIB)
    third, _ = image(layers=1, layer_size=10 * KIB)

    clients.push(first, "v1", f"{sidecar.netloc}/{project}/a:v1")
    row = quota.settled(sidecar.database, project)
    assert row["used"] == quota.size_of(first) < MIB // 2
    assert _quota_events(sidecar) == []  # below the threshold: nothing

    clients.push(second, "v1", f"{sidecar.netloc}/{project}/b:v1")
    row = quota.settled(sidecar.database, project)
    assert row["used"] == quota.size_of(first, second) > MIB // 2
    [warning] = _quota_events(sidecar)
    assert warning["type"] == "QUOTA_WARNING"
    details = warning["payload"]["event_data"]["custom_attributes"]["Details"]
    assert re.fullmatch(r"quota usage reach 50%: resource storage used [0-9.]+ KiB of 1\.0 MiB",
                        details), details

    clients.push(third, "v1", f"{sidecar.netloc}/{project}/c:v1")
    assert quota.settled(sidecar.database, project)["used"] == \
        quota.size_of(first, second, third)
    assert len(_quota_events(sidecar)) == 1  # still above: once per crossing
    delivered = [r.json() for r in receiver.wait_for(4) if r.json()["type"] == "QUOTA_WARNING"]
    assert delivered == [warning["payload"]]
    assert set(delivered[0]["event_data"]) == {"repository", "custom_attributes"}


def test_every_push_restores_harbors_repeated_warnings(sidecar_factory, receiver, image):
    project = _project()
    sidecar = sidecar_factory(_rules(project, receiver.url, warning="10%",
                                     warning_repeat="every_push"))
    for name in ("a", "b"):
        layout, _ = image(layers=1, layer_size=200 * KIB)
        clients.push(layout, "v1", f"{sidecar.netloc}/{project}/{name}:v1")
        quota.settled(sidecar.database, project)
    warnings = [e for e in _quota_events(sidecar) if e["type"] == "QUOTA_WARNING"]
    # every upload that added bytes above 10%: the second push's layer, config and manifest
    # and more of the first's (Harbor's one-push-many-webhooks)
    assert len(warnings) >= 4


def test_a_push_past_the_limit_is_denied_and_not_stored(sidecar_factory, receiver, registry,
                                                        image):
    project = _project()
    sidecar = sidecar_factory(_rules(project, receiver.url, warning="100%"))
    kept, kept_digest = image(layers=1, layer_size=600 * KIB)
    clients.push(kept, "v1", f"{sidecar.netloc}/{project}/kept:v1")
    assert quota.settled(sidecar.database, project)["used"] == quota.size_of(kept)

    refused, _ = image(layers=1, layer_size=600 * KIB)
    result = _push(refused, f"{sidecar.netloc}/{project}/refused:v1")
    assert result.returncode != 0
    printed = DENIED.search(result.stderr)
    assert printed, result.stderr  # the client tells its user why, in Harbor's words

    events = recorded.until_barrier(sidecar, f"{project}/kept", "v1")
    [exceed] = [e for e in events if e["type"] == "QUOTA_EXCEED"]
    payload = exceed["payload"]
    assert payload["event_data"]["custom_attributes"] == {"Details": printed.group(1)}
    assert payload["event_data"]["repository"]["repo_full_name"] == f"{project}/refused"
    assert "resources" not in payload["event_data"]  # a blob: no digest or tag, as Harbor
    assert not _in_registry(registry, f"{project}/refused:v1")
    assert _in_registry(registry, f"{project}/kept@{kept_digest}")
    row = quota.settled(sidecar.database, project)
    assert quota.size_of(kept) <= row["used"] <= row["limit"]  # the refused layer never counted
    assert any(r.json()["type"] == "QUOTA_EXCEED" for r in receiver.wait_for(2))


def test_podman_chunked_push_is_denied_with_the_message(sidecar_factory, receiver, image,
                                                         tmp_path):
    project = _project()
    sidecar = sidecar_factory(_rules(project, receiver.url, storage="512KiB"))
    layout, _ = image(layers=1, layer_size=700 * KIB)
    podman = clients.Podman(tmp_path / "podman")
    try:
        local = podman.load_layout(layout, "v1")
        result = clients.run([*podman.base, "push", "--tls-verify=false", local,
                              f"docker://{sidecar.netloc}/{project}/app:v1"], check=False)
    finally:
        podman.close()
    assert result.returncode != 0
    printed = DENIED.search(result.stderr)
    assert printed, result.stderr
    exceed = recorded.wait_events(sidecar, 1)[-1]
    assert exceed["type"] == "QUOTA_EXCEED"
    assert exceed["payload"]["event_data"]["custom_attributes"]["Details"] == printed.group(1)
    row = quota.settled(sidecar.database, project)
    assert row["used"] <= row["limit"]


def _upload_chunked(base: str, repository: str, data: bytes) -> str:
    """Upload a blob whose final PUT is sent chunked: no size before the bytes pass."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = requests.post(f"{base}/v2/{repository}/blobs/uploads/", timeout=30)
    assert start.status_code == 202, start.text
    location = requests.compat.urljoin(base, start.headers["Location"])
    done = requests.put(f"{location}&digest={digest}",
                        data=(data[i:i + 65536] for i in range(0, len(data), 65536)),
                        headers={"Content-Type": "application/octet-stream"}, timeout=30)
    assert done.status_code == 201, done.text
    return digest


def test_blobs_of_unknown_size_are_counted_by_the_manifest_that_is_refused(
        sidecar_factory, receiver, registry, image):
    project = _project()
    sidecar = sidecar_factory(_rules(project, receiver.url, warning="100%"))
    layout, digest = image(layers=2, layer_size=300 * KIB)
    repository = f"{project}/app"
    for blob in quota.blobs(layout):
        if blob != digest:
            data = (layout / "blobs" / "sha256" / blob.split(":")[1]).read_bytes()
            assert _upload_chunked(sidecar.url, repository, data) == blob
    assert quota.settled(sidecar.database, project)["used"] == 0  # no size: not counted yet
    # fits now (600 KiB of 1 MiB) ...
    layout2, digest2 = image(layers=1, layer_size=500 * KIB)
    for blob in quota.blobs(layout2):
        if blob != digest2:
            data = (layout2 / "blobs" / "sha256" / blob.split(":")[1]).read_bytes()
            _upload_chunked(sidecar.url, f"{project}/other", data)
    assert _push(layout, f"{sidecar.netloc}/{repository}:v1").returncode == 0
    assert quota.settled(sidecar.database, project)["used"] == quota.size_of(layout)
    # ... the second manifest brings 500 KiB more: refused, as the blobs never were
    result = _push(layout2, f"{sidecar.netloc}/{project}/other:v1")
    assert result.returncode != 0
    printed = DENIED.search(result.stderr)
    assert printed and "writing manifest" in result.stderr, result.stderr
    events = recorded.until_barrier(sidecar, repository, "v1")
    [exceed] = [e for e in events if e["type"] == "QUOTA_EXCEED"]
    assert exceed["payload"]["event_data"]["resources"] == [{"digest": digest2, "tag": "v1"}]
    assert exceed["payload"]["event_data"]["custom_attributes"]["Details"] == printed.group(1)
    assert not _in_registry(registry, f"{project}/other@{digest2}")  # not pullable
    pulled = clients.skopeo("inspect", "--tls-verify=false", "--raw",
                            f"docker://{sidecar.netloc}/{project}/other:v1", check=False)
    assert pulled.returncode != 0
    assert quota.settled(sidecar.database, project)["used"] == quota.size_of(layout)


def test_layers_shared_by_two_repositories_count_once_and_deletes_lower_usage(
        sidecar_factory, receiver, image):
    project = _project()
    sidecar = sidecar_factory(_rules(project, receiver.url, storage="10MiB"))
    shared, shared_digest = image(layers=2, layer_size=200 * KIB)
    alone, alone_digest = image(layers=1, layer_size=100 * KIB)
    clients.push(shared, "v1", f"{sidecar.netloc}/{project}/a:v1")
    clients.push(shared, "v1", f"{sidecar.netloc}/{project}/b:v1")
    clients.push(alone, "v1", f"{sidecar.netloc}/{project}/c:v1")
    assert quota.settled(sidecar.database, project)["used"] == quota.size_of(shared, alone)

    clients.delete(f"{sidecar.netloc}/{project}/b@{shared_digest}")  # still in a
    clients.delete(f"{sidecar.netloc}/{project}/c@{alone_digest}")
    # deletes are applied in order: once c's is, b's was, and took nothing away
    assert quota.wait_used(sidecar.database, project, quota.size_of(shared))
    clients.delete(f"{sidecar.netloc}/{project}/a@{shared_digest}")
    assert quota.wait_used(sidecar.database, project, 0)


def _race(pushes: list[tuple]) -> list[subprocess.CompletedProcess]:
    with ThreadPoolExecutor(len(pushes)) as pool:
        return list(pool.map(lambda push: _push(*push), pushes))


def _assert_one_fits(results, registry, references, row) -> None:
    ok = [result.returncode == 0 for result in results]
    assert ok.count(True) == 1, [r.stderr for r in results]  # each fits alone, not together
    loser = results[ok.index(False)]
    assert DENIED.search(loser.stderr), loser.stderr
    assert [_in_registry(registry, ref) for ref in references] == ok
    assert row["used"] <= row["limit"]


def test_concurrent_pushes_from_two_processes_never_overshoot(
        sidecar_factory, receiver, registry, image):
    project = _project()
    sidecar = sidecar_factory(_rules(project, receiver.url, warning="100%"), workers=2)
    layouts = [image(layers=1, layer_size=600 * KIB)[0] for _ in range(2)]
    references = [f"{project}/race{n}:v1" for n in range(2)]
    results = _race([(layout, f"{sidecar.netloc}/{ref}") for layout, ref in
                     zip(layouts, references, strict=True)])
    _assert_one_fits(results, registry, references, quota.settled(sidecar.database, project))


@pytest.mark.postgres
def test_two_sidecars_on_postgresql_never_overshoot(
        postgres_database, sidecar_factory, receiver, registry, image):
    project = _project()
    sidecars = [sidecar_factory(_rules(project, receiver.url, warning="100%"),
                                database=postgres_database, workers=2) for _ in range(2)]
    layouts = [image(layers=1, layer_size=600 * KIB)[0] for _ in range(2)]
    references = [f"{project}/race{n}:v1" for n in range(2)]
    results = _race([(layout, f"{sidecar.netloc}/{ref}") for layout, ref, sidecar in
                     zip(layouts, references, sidecars, strict=True)])
    _assert_one_fits(results, registry, references,
                     quota.settled(postgres_database, project))


def test_recalculation_from_a_registry_filled_directly_matches_the_accounted_figure(
        sidecar_factory, receiver, image, tmp_path):
    project = _project()
    rules = _rules(project, receiver.url, storage="20MiB")
    shared, _ = image(layers=2, layer_size=100 * KIB)
    multi = tmp_path / "multi"
    make_index(multi, "v1", layer_size=50 * KIB)
    pushes = [(shared, f"{project}/a:v1", False), (shared, f"{project}/b:v1", False),
              (multi, f"{project}/multi:v1", True)]

    accounting = sidecar_factory(rules)
    for layout, reference, all_images in pushes:
        assert _push(layout, f"{accounting.netloc}/{reference}",
                     all_images=all_images).returncode == 0
    accounted = quota.settled(accounting.database, project)["used"]
    assert accounted == quota.size_of(shared, multi)

    direct = Registry(tmp_path / "direct").start()
    try:
        for layout, reference, all_images in pushes:
            assert _push(layout, f"{direct.netloc}/{reference}",
                         all_images=all_images).returncode == 0
        # a quota new to the store is rebuilt from the registry at once, in the background
        fresh = sidecar_factory(rules, upstream=direct.url)
        assert quota.settled(fresh.database, project)["used"] == accounted
        # and `sidecar quota recalc` gives the same figure again
        done = quota.recalc(fresh.database, project)
        assert done.returncode == 0, done.stderr
        assert quota.settled(fresh.database, project)["used"] == accounted
    finally:
        direct.stop()


GARBAGE_DIGEST = "sha256:" + "0" * 64


def test_garbage_upload_requests_pass_through_and_never_corrupt_usage(
        sidecar_factory, receiver, registry, image):
    project = _project()
    sidecar = sidecar_factory(_rules(project, receiver.url))
    layout, _ = image(layers=1, layer_size=100 * KIB)
    clients.push(layout, "v1", f"{sidecar.netloc}/{project}/app:v1")
    before = quota.settled(sidecar.database, project)["used"]
    repo = f"{project}/junk"
    not_a_manifest = b'{"schemaVersion": 2, "layers": [{"digest": 7, "size": -5}]'
    # a manifest naming a blob the registry does not have (it refuses it: nothing counted)
    lying = (b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
             b'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"'
             + GARBAGE_DIGEST.encode() + b'","size":1000},"layers":[]}')
    requests_ = [
        ("PUT", f"/v2/{repo}/blobs/uploads/nosuch?digest={GARBAGE_DIGEST}", b"abc", {}),
        ("PUT", f"/v2/{repo}/blobs/uploads/nosuch?digest=not-a-digest", b"", {}),
        ("PATCH", f"/v2/{repo}/blobs/uploads/nosuch", b"data", {}),
        ("POST", f"/v2/{repo}/blobs/uploads/?mount={GARBAGE_DIGEST}&from={project}/app", b"",
         {}),
        ("POST", f"/v2/{repo}/blobs/uploads/?digest={GARBAGE_DIGEST}", b"wrong bytes", {}),
        ("POST", f"/v2/{repo}/blobs/uploads/?mount=sha256:zz&from=x/y", b"", {}),
        ("PUT", f"/v2/{repo}/manifests/v1", b"not json at all", {}),
        ("PUT", f"/v2/{repo}/manifests/v1", not_a_manifest, {}),
        ("PUT", f"/v2/{repo}/manifests/v1", lying,
         {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}),
        ("DELETE", f"/v2/{repo}/manifests/{GARBAGE_DIGEST}", b"", {}),
        ("DELETE", f"/v2/{repo}/blobs/uploads/nosuch", b"", {}),
    ]
    for method, path, body, headers in requests_:
        via = requests.request(method, sidecar.url + path, data=body, headers=headers,
                               timeout=30, allow_redirects=False)
        direct = requests.request(method, registry.url + path, data=body, headers=headers,
                                  timeout=30, allow_redirects=False)
        assert via.status_code == direct.status_code, (method, path, via.text, direct.text)
        assert via.status_code != 403, (method, path, via.text)
    row = quota.settled(sidecar.database, project)
    assert row["used"] == before
    assert _quota_events(sidecar) == []


def test_recalculation_reads_a_private_registry_with_the_sidecars_credential(
        token_registry_factory, sidecar_factory, receiver, image):
    from tests.support.tokens import Account

    passwords = {"pusher": uuid.uuid4().hex, "bot": uuid.uuid4().hex}
    registry = token_registry_factory({
        "pusher": Account(passwords["pusher"], {"repository:priv/*": ["pull", "push"]}),
        "bot": Account(passwords["bot"], {"repository:*": ["pull"],
                                          "registry:catalog": ["*"]}),
    })
    layout, _ = image(layers=2, layer_size=100 * KIB)
    clients.push(layout, "v1", f"{registry.netloc}/priv/app:v1",
                 creds=f"pusher:{passwords['pusher']}")
    rules = _rules("priv", receiver.url, storage="10MiB")

    credential = {"sidecar": {"registry_credential": {
        "username": "bot", "password": "${BOT_PASSWORD}"}}}
    with_it = sidecar_factory(rules, upstream=registry.url, config=credential,
                              env={"BOT_PASSWORD": passwords["bot"]})
    assert quota.settled(with_it.database, "priv")["used"] == quota.size_of(layout)

    without = sidecar_factory(rules, upstream=registry.url)
    done = quota.recalc(without.database, "priv")
    assert done.returncode == 1 and "recalculation failed" in done.stderr, done.stderr
    assert "registry_credential" in done.stderr
    row = quota.settled(without.database, "priv")
    assert (row["used"], row["recalculating"]) == (0, False)  # the last known figure stays
    assert passwords["bot"] not in with_it.log() + without.log()
