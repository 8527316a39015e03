"""Scan on push as a user sees it: skopeo pushes through `sidecar serve`, the sidecar drives a
spec-conformant scanner adapter that really pulls from the registry, and a real receiver gets
Harbor's SCANNING_* events.

Every request the sidecar sent the adapter is checked against the spec's JSON Schemas (strict)
by the `adapter` fixture, and every answer the adapter gave too.
"""

from __future__ import annotations

import json

import pytest

from tests.consumer_rules import assert_harbor_compatible
from tests.scanner_spec import assert_valid
from tests.support import clients
from tests.support.scanner_adapter import GENERIC_REPORT
from tests.support.scanner_adapter import NATIVE_REPORT
from tests.support.scanner_adapter import SCANNER
from tests.support.scanner_adapter import ScannerAdapter
from tests.support.scanner_adapter import expected_counts
from tests.support.scanning import event_types
from tests.support.scanning import layers_of
from tests.support.scanning import make_index
from tests.support.scanning import scan_config
from tests.support.scanning import scan_jobs
from tests.support.scanning import scan_rules

pytestmark = pytest.mark.e2e


@pytest.fixture
def adapter():
    started: list[ScannerAdapter] = []

    def make(**behaviour) -> ScannerAdapter:
        started.append(ScannerAdapter(**behaviour).start())
        return started[-1]

    yield make
    for one in started:
        one.stop()
    for one in started:
        assert not one.violations, "\n".join(one.violations)
        for seen in one.seen:
            if seen.method == "POST":
                assert_valid("ScanRequest", json.loads(seen.body), strict=True)


def submissions(adapter: ScannerAdapter) -> list[dict]:
    return [json.loads(s.body) for s in adapter.seen if s.method == "POST"]


def only_overview(payload: dict, mime: str = GENERIC_REPORT) -> dict:
    [resource] = payload["event_data"]["resources"]
    return resource["scan_overview"][mime]


def test_a_push_is_scanned_and_the_receiver_gets_harbors_summary(
        sidecar_factory, receiver, adapter, image, registry):
    scanner = adapter(produces=(GENERIC_REPORT, NATIVE_REPORT))
    sidecar = sidecar_factory(scan_rules(receiver.url, scanner.url,
                                         event_types=("SCANNING_COMPLETED", "PULL_ARTIFACT")),
                              config=scan_config())
    layout, digest = image(tag="v1", layers=4, layer_size=4096)
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1")

    [hook] = receiver.wait_for(1, timeout=60)
    payload = hook.json()
    assert_harbor_compatible(payload)
    assert payload["type"] == "SCANNING_COMPLETED"
    assert payload["operator"] == ""  # whoever pushed: skopeo, anonymously
    assert "scan" not in payload["event_data"]  # Harbor 2.10's shape unless a target asks
    [resource] = payload["event_data"]["resources"]
    assert (resource["digest"], resource["tag"]) == (digest, "v1")
    assert resource["resource_url"] == f"{sidecar.netloc}/proj/app:v1"
    assert payload["event_data"]["repository"]["repo_full_name"] == "proj/app"
    expected = expected_counts(layers_of(layout, digest))
    # every report type the scanner produces was fetched and summarised alike
    assert sorted(resource["scan_overview"]) == sorted([GENERIC_REPORT, NATIVE_REPORT])
    for overview in resource["scan_overview"].values():
        assert overview["scan_status"] == "Success"
        assert overview["summary"] == {"total": expected["total"],
                                       "fixable": expected["fixable"],
                                       "summary": expected["summary"]}
        assert overview["severity"] == expected["severity"]
        assert overview["scanner"] == SCANNER
        assert overview["complete_percent"] == 100
    ids = {o["report_id"] for o in resource["scan_overview"].values()}
    assert len(ids) == 2

    # one scan request: the artifact pushed, the upstream's URL, anonymous pull
    [request] = submissions(scanner)
    assert request == {"registry": {"url": registry.url, "authorization": ""},
                       "artifact": {"repository": "proj/app", "tag": "v1", "digest": digest,
                                    "mime_type": "application/vnd.oci.image.manifest.v1+json"}}
    # the adapter pulled from the registry itself: no PULL_ARTIFACT was inferred
    assert "PULL_ARTIFACT" not in event_types(sidecar)
    [job] = scan_jobs(sidecar)
    assert job["status"] == "succeeded" and job["key"] == f"scan:sim:{digest}:1"


def test_an_index_is_scanned_child_by_child_once_each(sidecar_factory, receiver, adapter,
                                                      tmp_path):
    scanner = adapter()
    sidecar = sidecar_factory(scan_rules(receiver.url, scanner.url), config=scan_config())
    layout = tmp_path / "multi"
    index, children = make_index(layout, "v2", children=2)
    clients.skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:v2",
                   f"docker://{sidecar.netloc}/proj/multi:v2")

    received = receiver.wait_for(2, timeout=60)
    by_digest = {}
    for hook in received:
        payload = hook.json()
        assert payload["type"] == "SCANNING_COMPLETED"
        [resource] = payload["event_data"]["resources"]
        assert "tag" not in resource  # a child has no tag of its own
        assert resource["resource_url"] == f"{sidecar.netloc}/proj/multi@{resource['digest']}"
        by_digest[resource["digest"]] = only_overview(payload)
    assert set(by_digest) == set(children)
    for digest, overview in by_digest.items():
        expected = expected_counts(children[digest])
        assert (overview["summary"]["total"], overview["severity"]) == \
            (expected["total"], expected["severity"])
    # the children's own pushes scanned them; the index's push found them scanned already
    assert sorted(r["artifact"]["digest"] for r in submissions(scanner)) == sorted(children)
    jobs = scan_jobs(sidecar)
    index_job = next(j for j in jobs if json.loads(j["payload_json"])["digest"] == index)
    assert json.loads(index_job["result_json"])["children"] == list(children)
