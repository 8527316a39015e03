"""The adapter client against a real adapter (tests/support/scanner_adapter.py) that really
pulls from a real registry: metadata, submit, 302 + Refresh-After, the report; and every way
an adapter misbehaves ends in a clear reason that quotes no secret.

Every request the client sent and every answer the adapter gave is checked against the
spec's JSON Schemas (strict) by the `adapter` fixture.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path

import pytest

from sidecar.rules.scanners import Scanner
from sidecar.scan import spec
from sidecar.scan.client import AdapterClient
from sidecar.scan.client import AdapterError
from sidecar.scan.client import Limits
from sidecar.scan.client import NotReady
from sidecar.scan.client import Report
from sidecar.scan.client import ScanStopped
from sidecar.scan.summary import completed
from tests.scanner_spec import assert_valid
from tests.support.auth import htpasswd_file
from tests.support.clients import push
from tests.support.registry import Registry
from tests.support.scanner_adapter import ScannerAdapter
from tests.support.scanner_adapter import expected_counts

pytestmark = pytest.mark.e2e

FAST = Limits(min_poll_seconds=0.01)
REGISTRY_PASSWORD = "reg-s3cret-pw"


@pytest.fixture
def adapter():
    started = []

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


def layers_of(layout: Path, digest: str) -> list[str]:
    manifest = json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_text())
    return [layer["digest"] for layer in manifest["layers"]]


@pytest.fixture
def pushed(registry, image):
    """An image in the shared registry: (registry, repository, tag, digest, layer digests)."""
    counter = [0]

    def make(layers: int = 3, repository: str = "proj/app", reg=None, creds=None):
        counter[0] += 1
        layout, digest = image(tag="v1", layers=layers, layer_size=4096)
        target = reg or registry
        push(layout, "v1", f"{target.netloc}/{repository}:v1", creds=creds)
        return target, repository, "v1", digest, layers_of(layout, digest)

    return make


def client_for(adapter: ScannerAdapter, limits: Limits = FAST, **scanner) -> AdapterClient:
    return AdapterClient(Scanner(name="sim", url=adapter.url, **scanner), limits)


def request_for(reg, repository, tag, digest, authorization="") -> dict:
    return spec.scan_request(registry_url=reg.url, authorization=authorization,
                             repository=repository, digest=digest, tag=tag,
                             mime_type=spec.OCI_MANIFEST)


def scan(client: AdapterClient, request: dict, timeout: float = 30) -> Report:
    scan_id = client.submit(request)
    return client.wait_for_report(scan_id, spec.GENERIC_REPORT, deadline=time.time() + timeout)


def test_a_scan_pulls_the_artifact_and_reports_what_its_layers_hold(adapter, pushed):
    reg, repository, tag, digest, layers = pushed(layers=3)
    sim = adapter(polls_before_ready=2)
    client = client_for(sim)
    report = scan(client, request_for(reg, repository, tag, digest))
    [done] = sim.wait_scans(1)
    assert done.layers == layers  # the adapter really read the manifest it was pointed at
    got = completed(report.report, report_id="r", start_time=0, end_time=1).as_dict()
    expected = expected_counts(layers)
    assert got["summary"] == {"total": expected["total"], "fixable": expected["fixable"],
                              "summary": dict(sorted(expected["summary"].items()))}
    assert got["severity"] == expected["severity"]
    assert got["scanner"] == {"name": "Simulated", "vendor": "Sidecar tests", "version": "1.0.0"}
    polls = [s for s in sim.seen if s.path.endswith("/report")]
    assert len(polls) >= 3  # 302 at least twice (more while the pull runs), then the report
    assert all(s.headers["accept"] == spec.GENERIC_REPORT for s in polls)


def test_one_poll_at_a_time_for_a_job_that_checkpoints_between_polls(adapter, pushed):
    reg, repository, tag, digest, _ = pushed(layers=1)
    sim = adapter(polls_before_ready=1, refresh_after="7")
    client = client_for(sim)
    scan_id = client.submit(request_for(reg, repository, tag, digest))
    sim.wait_scans(1)
    assert client.poll_report(scan_id, spec.GENERIC_REPORT) == NotReady(refresh_after=7)
    assert isinstance(client.poll_report(scan_id, spec.GENERIC_REPORT), Report)


def test_metadata_says_what_the_scanner_consumes_and_is_cached(adapter):
    sim = adapter(produces=(spec.NATIVE_REPORT, spec.GENERIC_REPORT))
    now = [1000.0]
    client = AdapterClient(Scanner(name="sim", url=sim.url), FAST, clock=lambda: now[0])
    metadata = client.metadata()
    assert (metadata.name, metadata.vendor, metadata.version) == \
        ("Simulated", "Sidecar tests", "1.0.0")
    assert metadata.report_types(spec.OCI_MANIFEST) == (spec.GENERIC_REPORT, spec.NATIVE_REPORT)
    assert metadata.report_types(spec.DOCKER_MANIFEST) == (spec.GENERIC_REPORT,
                                                           spec.NATIVE_REPORT)
    # Helm charts, indexes and anything else are not scanned
    assert metadata.report_types("application/vnd.cncf.helm.config.v1+json") == ()
    assert metadata.report_types("application/vnd.oci.image.index.v1+json") == ()
    assert metadata.registry_auth_type == "Basic"
    now[0] += 29
    client.metadata()
    assert len([s for s in sim.seen if s.path == "/api/v1/metadata"]) == 1
    now[0] += 2
    client.metadata()
    assert len([s for s in sim.seen if s.path == "/api/v1/metadata"]) == 2
    assert sim.seen[0].headers["accept"] == spec.METADATA_TYPE


def test_a_registry_with_htpasswd_gets_the_credential_the_adapter_was_given(
        tmp_path, adapter, pushed, caplog):
    htpasswd = htpasswd_file(tmp_path / "htpasswd", {"scanner": REGISTRY_PASSWORD})
    reg = Registry(tmp_path / "reg", htpasswd=htpasswd).start()
    try:
        _, repository, tag, digest, layers = pushed(
            reg=reg, creds=f"scanner:{REGISTRY_PASSWORD}")
        sim = adapter()
        client = client_for(sim)
        good = spec.basic_authorization("scanner", REGISTRY_PASSWORD)
        caplog.set_level(logging.DEBUG)
        report = scan(client, request_for(reg, repository, tag, digest, good))
        assert len(report.report.vulnerabilities) >= len(layers)

        wrong = spec.basic_authorization("scanner", "not-the-password")
        with pytest.raises(AdapterError) as failure:
            scan(client, request_for(reg, repository, tag, digest, wrong))
        reason = str(failure.value)
        assert "HTTP 500 to the report request" in reason
        assert "pulling the artifact failed" in reason and "answered 401" in reason

        with pytest.raises(AdapterError, match="answered 401"):
            scan(client, request_for(reg, repository, tag, digest))  # no credential at all
        for secret in (REGISTRY_PASSWORD, good, good.split()[1], "not-the-password"):
            assert secret not in caplog.text
    finally:
        reg.stop()


@pytest.mark.parametrize(("auth", "credential", "header", "value"), [
    ("Basic", "harbor:adapter-pw", "Authorization",
     "Basic " + base64.b64encode(b"harbor:adapter-pw").decode()),
    ("Bearer", "adapter-token", "Authorization", "Bearer adapter-token"),
    ("APIKey", "adapter-key", "X-ScannerAdapter-API-Key", "adapter-key"),
])
def test_the_adapter_auth_types_send_harbors_headers(adapter, pushed, auth, credential,
                                                     header, value):
    reg, repository, tag, digest, _ = pushed(layers=1)
    sim = adapter(require={header: value})
    scan(client_for(sim, auth=auth, access_credential=credential),
         request_for(reg, repository, tag, digest))
    assert all(s.headers[header.lower()] == value for s in sim.seen)
    with pytest.raises(AdapterError) as failure:
        client_for(sim, auth=auth, access_credential=credential + "-wrong").metadata()
    assert str(failure.value) == "the adapter answered HTTP 401 to the metadata request: " \
        "unauthorized"


def test_no_auth_sends_no_credential_header(adapter):
    sim = adapter()
    client_for(sim).metadata()
    assert "authorization" not in sim.seen[0].headers
    assert "x-scanneradapter-api-key" not in sim.seen[0].headers


def test_a_refused_scan_says_what_the_adapter_said(adapter, pushed):
    reg, repository, tag, digest, _ = pushed(layers=1)
    sim = adapter(refuse=422)
    with pytest.raises(AdapterError) as failure:
        client_for(sim).submit(request_for(reg, repository, tag, digest))
    assert str(failure.value) == \
        "the adapter answered HTTP 422 to the scan request: invalid registry_url"
    assert not failure.value.transient


def test_a_failing_adapter_fails_the_scan_with_its_message(adapter, pushed):
    reg, repository, tag, digest, _ = pushed(layers=1)
    sim = adapter(fail="vulnerability database is locked")
    with pytest.raises(AdapterError) as failure:
        scan(client_for(sim), request_for(reg, repository, tag, digest))
    assert str(failure.value) == "the adapter answered HTTP 500 to the report request: " \
        "vulnerability database is locked"


def test_an_adapter_echoing_the_registry_credential_has_it_redacted(adapter, pushed):
    reg, repository, tag, digest, _ = pushed(layers=1)
    authorization = spec.basic_authorization("robot", "echoed-pw")
    sim = adapter(fail=f"parsing authorization: got {authorization} (robot:echoed-pw)")
    with pytest.raises(AdapterError) as failure:
        scan(client_for(sim), request_for(reg, repository, tag, digest, authorization))
    reason = str(failure.value)
    assert "echoed-pw" not in reason and authorization.split()[1] not in reason
    assert reason.endswith("parsing authorization: got *** (***)")


def test_an_adapter_that_never_finishes_ends_at_the_deadline(adapter, pushed):
    reg, repository, tag, digest, _ = pushed(layers=1)
    sim = adapter(hang=True)
    client = client_for(sim)
    scan_id = client.submit(request_for(reg, repository, tag, digest))
    with pytest.raises(AdapterError) as failure:
        client.wait_for_report(scan_id, spec.GENERIC_REPORT, deadline=time.time() + 2)
    assert str(failure.value) == "no report before the scan's deadline: the adapter kept " \
        "answering 302 (report not ready)"


def test_a_silent_adapter_times_out_and_the_deadline_names_it(adapter, pushed):
    reg, repository, tag, digest, _ = pushed(layers=1)
    sim = adapter()
    client = client_for(sim, Limits(request_timeout=0.2, min_poll_seconds=0.01))
    scan_id = client.submit(request_for(reg, repository, tag, digest))
    sim.behave(stall=2)
    with pytest.raises(AdapterError) as failure:
        client.poll_report(scan_id, spec.GENERIC_REPORT)
    assert failure.value.transient
    with pytest.raises(AdapterError) as failure:
        client.wait_for_report(scan_id, spec.GENERIC_REPORT, deadline=time.time() + 0.5)
    assert str(failure.value).startswith("no report before the scan's deadline: the report "
                                         f"request to {sim.url} timed out after")


def test_stop_ends_the_wait(adapter, pushed):
    reg, repository, tag, digest, _ = pushed(layers=1)
    sim = adapter(hang=True)
    client = client_for(sim)
    scan_id = client.submit(request_for(reg, repository, tag, digest))
    asked = []
    with pytest.raises(ScanStopped):
        client.wait_for_report(scan_id, spec.GENERIC_REPORT, deadline=time.time() + 30,
                               stopped=lambda: asked.append(1) or len(asked) > 2)


@pytest.mark.parametrize(("behaviour", "reason"), [
    ({"body": "garbage"},
     "the report does not parse: the report is not JSON (Expecting value: line 1 column 1 "
     "(char 0))"),
    ({"body": "wrong_type"},
     "the adapter sent the report as 'application/json', not the requested "
     "'application/vnd.security.vulnerability.report; version=1.1'"),
    ({"body": "unparseable"}, "the report does not parse: vulnerabilities must be a list"),
    ({"body": "huge", "huge_bytes": 3 << 20},
     "the report is larger than the 1048576 bytes allowed"),
])
def test_bad_reports_fail_with_a_clear_reason(adapter, pushed, behaviour, reason):
    reg, repository, tag, digest, _ = pushed(layers=1)
    sim = adapter(**behaviour)
    client = client_for(sim, Limits(min_poll_seconds=0.01, max_report_bytes=1 << 20))
    with pytest.raises(AdapterError) as failure:
        scan(client, request_for(reg, repository, tag, digest))
    assert str(failure.value) == reason
    assert not failure.value.transient


def test_a_redirect_is_not_followed(adapter, pushed):
    reg, repository, tag, digest, _ = pushed(layers=1)
    sim = adapter(redirect_loop=True)
    client = client_for(sim)
    scan_id = client.submit(request_for(reg, repository, tag, digest))
    with pytest.raises(AdapterError) as failure:
        client.wait_for_report(scan_id, spec.GENERIC_REPORT, deadline=time.time() + 30)
    assert str(failure.value) == (
        f"the adapter redirected the report request to {sim.url}/api/v1/scan/{scan_id}/"
        "report-moved instead of saying 'not ready' (redirects are not followed)")
    assert len([s for s in sim.seen if "/scan/" in s.path]) == 1


def test_an_unknown_scan_id_is_a_failure(adapter):
    with pytest.raises(AdapterError, match=r"does not know scan nope \(HTTP 404\)"):
        client_for(adapter()).poll_report("nope", spec.GENERIC_REPORT)


@pytest.mark.parametrize(("metadata", "reason"), [
    ({"scanner": {"name": "x"}, "capabilities": []},
     "the adapter's metadata is not usable: metadata has no capabilities"),
    ({"capabilities": [{}]}, "the adapter's metadata is not usable: metadata has no 'scanner'"),
    ({"scanner": {}, "capabilities": [{"consumes_mime_types": "x"}]},
     "capabilities[0].consumes_mime_types must be a list of strings"),
])
def test_metadata_that_does_not_follow_the_spec(adapter, metadata, reason):
    with pytest.raises(AdapterError) as failure:
        client_for(adapter(metadata=metadata)).metadata()
    assert reason in str(failure.value)


def test_an_unreachable_adapter_is_transient(tmp_path):
    from tests.support.ports import free_port

    client = AdapterClient(Scanner(name="gone", url=f"http://127.0.0.1:{free_port()}"), FAST)
    with pytest.raises(AdapterError) as failure:
        client.metadata()
    assert failure.value.transient
    assert "cannot reach the adapter at http://127.0.0.1:" in str(failure.value)


def test_skip_cert_verify_turns_tls_verification_off():
    assert AdapterClient(Scanner(name="a", url="https://a.example"))._session.verify is True
    assert AdapterClient(Scanner(name="a", url="https://a.example",
                                 skip_cert_verify=True))._session.verify is False
