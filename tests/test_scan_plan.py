"""What a scan of one pushed reference covers: images the scanner consumes; an index through
its children (no tag of their own); Helm charts, other artifacts and attestations skipped."""

from __future__ import annotations

import pytest

from sidecar.scan import spec
from sidecar.scan.plan import ScanTarget
from sidecar.scan.plan import Skipped
from sidecar.scan.plan import index_children
from sidecar.scan.plan import plan_image

METADATA = spec.parse_metadata({
    "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "0.50"},
    "capabilities": [
        {"type": "sbom", "consumes_mime_types": [spec.OCI_MANIFEST],
         "produces_mime_types": ["application/vnd.security.sbom.report+json; version=1.0"]},
        {"consumes_mime_types": [spec.OCI_MANIFEST, spec.DOCKER_MANIFEST],
         "produces_mime_types": [spec.NATIVE_REPORT, spec.GENERIC_REPORT,
                                 "application/vnd.scanner.adapter.vuln.report.raw"]},
    ]})
D = "sha256:" + "a" * 64


def image(config: str = "application/vnd.oci.image.config.v1+json",
          media_type: str = spec.OCI_MANIFEST) -> dict:
    return {"schemaVersion": 2, "mediaType": media_type, "config": {"mediaType": config},
            "layers": []}


def test_an_image_is_scanned_into_the_reports_harbor_reads_preferred_first():
    assert plan_image(METADATA, digest=D, tag="v1", media_type=spec.OCI_MANIFEST,
                      manifest=image()) == ScanTarget(
        digest=D, media_type=spec.OCI_MANIFEST, tag="v1",
        report_types=(spec.GENERIC_REPORT, spec.NATIVE_REPORT))
    docker = image("application/vnd.docker.container.image.v1+json", spec.DOCKER_MANIFEST)
    assert plan_image(METADATA, digest=D, tag="", media_type="", manifest=docker).media_type \
        == spec.DOCKER_MANIFEST


@pytest.mark.parametrize(("manifest", "reason"), [
    (image("application/vnd.cncf.helm.config.v1+json"),
     "not an image (config application/vnd.cncf.helm.config.v1+json)"),
    ({"mediaType": spec.OCI_MANIFEST, "layers": []}, "not an image (config missing)"),
    (image(media_type="application/vnd.docker.distribution.manifest.v1+prettyjws"),
     "scanner Trivy does not scan application/vnd.docker.distribution.manifest.v1+prettyjws "
     "artifacts into a report Harbor reads"),
])
def test_what_is_not_scanned_says_why(manifest, reason):
    assert plan_image(METADATA, digest=D, tag="v1", media_type=spec.OCI_MANIFEST,
                      manifest=manifest) == Skipped(D, reason)


def test_an_index_is_scanned_through_its_children_but_not_its_attestations():
    index = {"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": spec.OCI_MANIFEST, "digest": "sha256:" + "1" * 64,
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": spec.DOCKER_MANIFEST, "digest": "sha256:" + "2" * 64},
        {"mediaType": spec.OCI_MANIFEST, "digest": "sha256:" + "3" * 64,
         "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
        "junk",
    ]}
    children, skipped = index_children(index)
    assert children == [("sha256:" + "1" * 64, spec.OCI_MANIFEST),
                        ("sha256:" + "2" * 64, spec.DOCKER_MANIFEST)]
    assert skipped == [Skipped("sha256:" + "3" * 64, "an attestation, not an image")]
    with pytest.raises(ValueError):
        plan_image(METADATA, digest=D, tag="v1", media_type="", manifest=index)


def test_registry_authorization_type_comes_from_the_adapter_metadata():
    assert METADATA.registry_auth_type == "Basic"
    bearer = spec.AdapterMetadata(name="x", vendor="y", version="z", capabilities=(),
                                  properties={spec.REGISTRY_AUTH_PROPERTY: "Bearer"})
    assert bearer.registry_auth_type == "Bearer"


@pytest.mark.parametrize(("header", "seconds"), [
    ("15", 15), ("0", 0), ("127", 127), ("128", 5), ("-1", 5), ("soon", 5), (None, 5),
    (" 3 ", 3),
])
def test_refresh_after_as_harbor_reads_it(header, seconds):
    assert spec.refresh_seconds(header) == seconds


@pytest.mark.parametrize(("a", "b", "same"), [
    (spec.GENERIC_REPORT, "application/vnd.security.vulnerability.report;version=1.1", True),
    (spec.GENERIC_REPORT, 'Application/Vnd.Security.Vulnerability.Report; version="1.1"', True),
    (spec.GENERIC_REPORT, "application/vnd.security.vulnerability.report; version=1.0", False),
    (spec.GENERIC_REPORT, "application/vnd.security.vulnerability.report", False),
    (spec.GENERIC_REPORT, "application/json", False),
    (spec.GENERIC_REPORT, "", False),
    (spec.GENERIC_REPORT, "garbage; =", False),
])
def test_media_types_compare_as_media_types(a, b, same):
    assert spec.same_media_type(b, a) is same


def test_redaction_covers_secrets_and_credential_looking_values():
    text = "auth Basic dXNlcjpwYXNz failed for user:pass, Bearer eyJhbGciOi.x.y and key k3y-value"
    assert spec.redact(text, ["k3y-value", "user:pass", "pw"]) == \
        "auth Basic *** failed for ***, Bearer *** and key ***"
