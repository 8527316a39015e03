"""The test adapter itself: it keeps the spec, its report says what expected_counts says, and
a scan it cannot pull fails (so the tests built on it can fail)."""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.scanner_spec import assert_valid
from tests.support.clients import push
from tests.support.scanner_adapter import ERROR
from tests.support.scanner_adapter import GENERIC_REPORT
from tests.support.scanner_adapter import METADATA
from tests.support.scanner_adapter import OCI_MANIFEST
from tests.support.scanner_adapter import SCAN_REQUEST
from tests.support.scanner_adapter import ScannerAdapter
from tests.support.scanner_adapter import expected_counts
from tests.support.scanner_adapter import simulated_vulnerabilities

pytestmark = pytest.mark.e2e

LAYERS = ["sha256:" + h * 64 for h in "0123456789abcdef"]


@pytest.fixture
def sim():
    adapter = ScannerAdapter(polls_before_ready=0).start()
    yield adapter
    adapter.stop()


def scan_request(registry, digest: str, tag: str = "") -> dict:
    return {"registry": {"url": registry.url, "authorization": ""},
            "artifact": {"repository": "proj/app", "tag": tag, "digest": digest,
                         "mime_type": OCI_MANIFEST}}


def submit(sim: ScannerAdapter, body: dict, content_type: str = SCAN_REQUEST):
    return requests.post(f"{sim.url}/api/v1/scan", data=json.dumps(body),
                         headers={"Content-Type": content_type}, timeout=10)


def report(sim: ScannerAdapter, scan_id: str, accept: str = GENERIC_REPORT):
    deadline = time.monotonic() + 20
    while True:
        answer = requests.get(f"{sim.url}/api/v1/scan/{scan_id}/report",
                              headers={"Accept": accept}, allow_redirects=False, timeout=10)
        if answer.status_code != 302 or time.monotonic() > deadline:
            return answer
        time.sleep(0.02)


def test_expected_counts_agree_with_a_plain_recount_of_the_items():
    for start in range(0, 13, 3):
        layers = LAYERS[start:start + 4]
        items = simulated_vulnerabilities(layers)
        distinct = {(i["id"], i["package"], i["version"]): i for i in items}
        expected = expected_counts(layers)
        assert expected["total"] == len(distinct) < len(items)
        assert expected["fixable"] == sum(1 for i in distinct.values() if i["fix_version"])
        per = {}
        for i in distinct.values():
            per[i["severity"]] = per.get(i["severity"], 0) + 1
        assert expected["summary"] == per


def test_a_digest_only_scan_is_pulled_and_reported_in_the_spec_shape(sim, registry, image):
    layout, digest = image(layers=2, layer_size=1024)
    push(layout, "v1", f"{registry.netloc}/proj/app:v1")
    answer = submit(sim, scan_request(registry, digest))
    assert answer.status_code == 202
    got = report(sim, answer.json()["id"])
    assert got.status_code == 200 and got.headers["Content-Type"] == GENERIC_REPORT
    assert_valid("HarborVulnerabilityReport", got.json(), strict=True)
    assert got.json()["artifact"] == {"repository": "proj/app", "digest": digest,
                                      "mime_type": OCI_MANIFEST}
    assert requests.get(f"{sim.url}/api/v1/metadata", timeout=10).headers["Content-Type"] == \
        METADATA
    assert not sim.violations


def test_an_artifact_the_registry_does_not_have_fails_the_scan(sim, registry):
    answer = submit(sim, scan_request(registry, "sha256:" + "0" * 64, tag="v9"))
    got = report(sim, answer.json()["id"])
    assert got.status_code == 500 and got.headers["Content-Type"] == ERROR
    assert got.json() == {"error": {"message": "pulling the artifact failed: GET manifests/"
                                    f"sha256:{'0' * 64} from the registry answered 404"}}


def test_spec_breaches_by_the_caller_are_recorded(sim, registry):
    answer = submit(sim, {"registry": {"url": registry.url}, "artifact": {"digest": 5}},
                    content_type="application/json")
    assert answer.status_code == 422
    assert sim.violations[0] == "scan request Content-Type 'application/json'"
    assert "ScanRequest artifact/digest: 5 is not of type 'string'" in sim.violations
    sim.violations.clear()


def test_unknown_scans_and_report_types(sim, registry, image):
    assert report(sim, "nope").status_code == 404
    layout, digest = image(layers=1, layer_size=1024)
    push(layout, "v1", f"{registry.netloc}/proj/app:v1")
    scan_id = submit(sim, scan_request(registry, digest)).json()["id"]
    got = report(sim, scan_id, accept="application/vnd.scanner.adapter.vuln.report.raw")
    assert got.status_code == 400
