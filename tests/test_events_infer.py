"""Which traffic is an event: the inference table, row by row (pure, no I/O)."""

from __future__ import annotations

import base64

import pytest

from sidecar.events.infer import REPLICATION_USER_AGENT
from sidecar.events.infer import Exchange
from sidecar.events.infer import infer
from sidecar.events.infer import manifest_route
from sidecar.events.model import DELETE_ARTIFACT
from sidecar.events.model import PULL_ARTIFACT
from sidecar.events.model import PUSH_ARTIFACT

DIGEST = "sha256:" + "8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8"
OTHER = "sha256:" + "954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ALICE = "Basic " + base64.b64encode(b"alice:pw").decode()


def exchange(method: str, path: str, status: int, *, request: dict | None = None,
             response: dict | None = None, prior_tags: tuple[str, ...] = (),
             prior_size: int | None = None) -> Exchange:
    """An exchange as the proxy records it: lower-case header keys, registry answer headers."""
    request_headers = {"host": "registry.local:5000", "authorization": ALICE,
                       "x-request-id": "req-1", "content-type": OCI_MANIFEST}
    request_headers.update(request or {})
    response_headers = {"docker-content-digest": DIGEST, "content-type": OCI_MANIFEST}
    response_headers.update(response or {})
    return Exchange(
        method=method,
        path=path,
        status=status,
        request_headers={k: v for k, v in request_headers.items() if v is not None},
        response_headers={k: v for k, v in response_headers.items() if v is not None},
        occur_at=1755763200,
        prior_tags=prior_tags,
        prior_size=prior_size,
    )


def only(events):
    assert len(events) == 1, events
    return events[0]


# --- rows that are events ---------------------------------------------------------------------

def test_put_by_tag_201_is_a_push_of_that_tag_with_the_registry_digest():
    event = only(infer(exchange("PUT", "/v2/proj/app/manifests/v1", 201)))
    assert event.type == PUSH_ARTIFACT
    assert event.repository == "proj/app"
    assert (event.namespace, event.name) == ("proj", "app")
    assert event.tags == ("v1",)
    assert event.reference == "v1"
    assert event.digest == DIGEST
    assert event.operator == "alice"
    assert event.occur_at == 1755763200
    assert event.host == "registry.local:5000"
    assert event.request_id == "req-1"
    assert event.media_type == OCI_MANIFEST
    assert event.size is None


def test_put_by_digest_201_is_a_push_without_tags_so_the_digest_is_the_reference():
    event = only(infer(exchange("PUT", f"/v2/proj/app/manifests/{DIGEST}", 201)))
    assert event.type == PUSH_ARTIFACT
    assert event.tags == ()
    assert event.digest == DIGEST
    assert event.reference == DIGEST


def test_put_by_digest_without_digest_header_takes_the_digest_from_the_path():
    event = only(infer(exchange("PUT", f"/v2/proj/app/manifests/{OTHER}", 201,
                                response={"docker-content-digest": None})))
    assert event.digest == OTHER


def test_put_by_tag_without_digest_header_reports_no_digest_rather_than_a_wrong_one():
    event = only(infer(exchange("PUT", "/v2/proj/app/manifests/v1", 201,
                                response={"docker-content-digest": None})))
    assert event.digest == ""
    assert event.tags == ("v1",)


@pytest.mark.parametrize("garbage", ["not-a-digest", "sha256", ":abc", "sha256:", " "])
def test_a_garbled_digest_header_is_not_passed_on(garbage):
    by_tag = only(infer(exchange("PUT", "/v2/proj/app/manifests/v1", 201,
                                 response={"docker-content-digest": garbage})))
    assert by_tag.digest == ""
    by_digest = only(infer(exchange("GET", f"/v2/proj/app/manifests/{DIGEST}", 200,
                                    response={"docker-content-digest": garbage})))
    assert by_digest.digest == DIGEST


def test_get_by_tag_200_is_a_pull_of_that_tag():
    event = only(infer(exchange("GET", "/v2/proj/app/manifests/latest", 200,
                                request={"content-type": None})))
    assert event.type == PULL_ARTIFACT
    assert event.tags == ("latest",)
    assert event.digest == DIGEST
    # a pull's media type is what the registry served
    assert event.media_type == OCI_MANIFEST


def test_get_by_digest_200_is_a_pull_reported_by_digest():
    event = only(infer(exchange("GET", f"/v2/proj/app/manifests/{DIGEST}", 200,
                                response={"docker-content-digest": None})))
    assert event.type == PULL_ARTIFACT
    assert event.tags == ()
    assert event.digest == DIGEST
    assert event.reference == DIGEST


def test_delete_by_digest_202_is_a_delete_carrying_the_tags_and_size_it_had():
    event = only(infer(exchange("DELETE", f"/v2/proj/app/manifests/{DIGEST}", 202,
                                response={"docker-content-digest": None},
                                prior_tags=("v1", "latest"), prior_size=1234)))
    assert event.type == DELETE_ARTIFACT
    assert event.digest == DIGEST
    assert event.tags == ("v1", "latest")
    assert event.reference == "v1"  # Harbor's payload uses Tags[0]
    assert event.size == 1234


def test_delete_of_an_untagged_manifest_reports_it_by_digest():
    event = only(infer(exchange("DELETE", f"/v2/proj/app/manifests/{DIGEST}", 202)))
    assert event.tags == ()
    assert event.reference == DIGEST
    assert event.size is None


@pytest.mark.parametrize("method", ["put", "Get"])
def test_method_case_does_not_matter(method):
    status = 201 if method.upper() == "PUT" else 200
    assert len(infer(exchange(method, "/v2/proj/app/manifests/v1", status))) == 1


def test_pushes_by_harbors_replication_client_are_still_events():
    # Harbor filters only the pulls of its replication client, not its pushes
    event = only(infer(exchange("PUT", "/v2/proj/app/manifests/v1", 201,
                                request={"user-agent": REPLICATION_USER_AGENT})))
    assert event.type == PUSH_ARTIFACT


def test_anonymous_request_has_empty_operator_and_missing_headers_are_empty():
    event = only(infer(Exchange("GET", "/v2/proj/app/manifests/v1", 200, {}, {}, 7)))
    assert event.operator == ""
    assert event.host == ""
    assert event.request_id == ""
    assert event.digest == ""


# --- rows that are not events -----------------------------------------------------------------

M = "/v2/proj/app/manifests"
B = "/v2/proj/app/blobs"
NO_EVENT = [
    ("HEAD", f"{M}/v1", 200, "HEAD is not a pull (Harbor)"),
    ("HEAD", f"{M}/{DIGEST}", 200, "HEAD by digest"),
    ("GET", f"{M}/v1", 304, "not modified is not a pull (Harbor)"),
    ("GET", f"{M}/v1", 206, "other 2xx on GET"),
    ("PUT", f"{M}/v1", 200, "PUT must be 201"),
    ("PUT", f"{M}/v1", 202, "PUT must be 201"),
    ("PUT", f"{M}/{DIGEST}", 200, "PUT by digest must be 201"),
    ("DELETE", f"{M}/{DIGEST}", 200, "DELETE must be 202"),
    ("DELETE", f"{M}/{DIGEST}", 204, "DELETE must be 202"),
    ("DELETE", f"{M}/v1", 202, "delete by tag only untags; Harbor refuses it"),
    ("POST", f"{M}/v1", 201, "POST is no manifest verb"),
    ("PATCH", f"{M}/v1", 202, "PATCH is no manifest verb"),
    ("OPTIONS", f"{M}/v1", 200, "OPTIONS"),
    ("GET", f"{B}/{DIGEST}", 200, "blob download"),
    ("HEAD", f"{B}/{DIGEST}", 200, "blob existence check"),
    ("GET", f"{B}/{DIGEST}", 307, "blob redirect"),
    ("DELETE", f"{B}/{DIGEST}", 202, "blob delete"),
    ("POST", f"{B}/uploads/", 202, "upload start"),
    ("POST", f"{B}/uploads/", 201, "cross-repository mount (query is not in the path)"),
    ("PATCH", f"{B}/uploads/0d2a5c6e-1f7a-4b1e-9a6d-3c2b1a0f9e8d", 202, "upload chunk"),
    ("PUT", f"{B}/uploads/0d2a5c6e-1f7a-4b1e-9a6d-3c2b1a0f9e8d", 201, "upload end"),
    ("GET", f"{B}/uploads/0d2a5c6e-1f7a-4b1e-9a6d-3c2b1a0f9e8d", 204, "upload status"),
    ("DELETE", f"{B}/uploads/0d2a5c6e-1f7a-4b1e-9a6d-3c2b1a0f9e8d", 204, "upload cancel"),
    ("GET", "/v2/proj/app/tags/list", 200, "tag listing"),
    ("GET", "/v2/_catalog", 200, "catalog"),
    ("GET", f"/v2/proj/app/referrers/{DIGEST}", 200, "referrers"),
    ("GET", "/v2/", 200, "API version check"),
    ("GET", "/v2", 200, "API version check without slash"),
    ("GET", "/", 200, "root"),
    ("GET", "/sidecar/status", 200, "the sidecar's own route"),
]
for _status in (400, 401, 403, 404, 405, 409, 429, 500, 502, 503):
    NO_EVENT += [
        ("PUT", f"{M}/v1", _status, "failed push"),
        ("PUT", f"{M}/{DIGEST}", _status, "failed push by digest"),
        ("GET", f"{M}/v1", _status, "failed pull"),
        ("GET", f"{M}/{DIGEST}", _status, "failed pull by digest"),
        ("DELETE", f"{M}/{DIGEST}", _status, "failed delete"),
        ("HEAD", f"{M}/v1", _status, "failed HEAD"),
    ]


@pytest.mark.parametrize(("method", "path", "status", "why"), NO_EVENT,
                         ids=[f"{m}-{s}-{p}" for m, p, s, _ in NO_EVENT])
def test_traffic_that_is_not_an_event(method, path, status, why):
    assert infer(exchange(method, path, status, prior_tags=("v1",))) == [], why


@pytest.mark.parametrize("agent", [REPLICATION_USER_AGENT, "harbor-registry-client/2.11"])
@pytest.mark.parametrize("ref", ["v1", DIGEST])
def test_pulls_by_harbors_replication_client_are_not_events(agent, ref):
    assert infer(exchange("GET", f"{M}/{ref}", 200, request={"user-agent": agent})) == []


@pytest.mark.parametrize("agent", ["skopeo/1.13", "docker/24.0 go/1.20", "containerd/1.7",
                                   "oras-py", "my-harbor-registry-client"])
def test_pulls_by_other_clients_are_events(agent):
    assert len(infer(exchange("GET", f"{M}/v1", 200, request={"user-agent": agent}))) == 1


# --- names and references -----------------------------------------------------------------------

TAG_128 = "t" + "a" * 127
GOOD_ROUTES = [
    ("/v2/proj/app/manifests/v1", "proj/app", "v1"),
    ("/v2/a/b/c/manifests/v1", "a/b/c", "v1"),
    ("/v2/a/b/c/d/e/manifests/v1", "a/b/c/d/e", "v1"),
    ("/v2/my.org/my-app/manifests/v1", "my.org/my-app", "v1"),
    ("/v2/proj/my--app/manifests/v1", "proj/my--app", "v1"),
    ("/v2/proj/my__app/manifests/v1", "proj/my__app", "v1"),
    ("/v2/proj/my_app.v2-x/manifests/v1", "proj/my_app.v2-x", "v1"),
    ("/v2/0/1/manifests/v1", "0/1", "v1"),
    ("/v2/proj/app/manifests/V1.0_RC-1", "proj/app", "V1.0_RC-1"),
    ("/v2/proj/app/manifests/_underscore", "proj/app", "_underscore"),
    (f"/v2/proj/app/manifests/{TAG_128}", "proj/app", TAG_128),
    (f"/v2/proj/app/manifests/{DIGEST}", "proj/app", DIGEST),
    ("/v2/proj/app/manifests/sha512:" + "b" * 128, "proj/app", "sha512:" + "b" * 128),
    # a repository may have a path segment called "manifests": the last one is the route's
    ("/v2/a/manifests/b/manifests/c", "a/manifests/b", "c"),
    ("/v2/manifests/manifests/latest", "manifests", "latest"),
    ("/v2/proj/manifests/manifests/manifests", "proj/manifests", "manifests"),
    ("/v2/proj/blobs/manifests/v1", "proj/blobs", "v1"),
    ("/v2/alpine/manifests/3.20", "alpine", "3.20"),
]


@pytest.mark.parametrize(("path", "repository", "reference"), GOOD_ROUTES,
                         ids=[r[0][:60] for r in GOOD_ROUTES])
def test_manifest_routes_split_into_repository_and_reference(path, repository, reference):
    assert manifest_route(path) == (repository, reference)
    digest = reference if ":" in reference else DIGEST
    event = only(infer(exchange("PUT", path, 201, response={"docker-content-digest": digest})))
    assert event.repository == repository
    assert event.reference == reference


BAD_ROUTES = [
    ("/v2/Proj/app/manifests/v1", "upper-case namespace"),
    ("/v2/proj/App/manifests/v1", "upper-case repository"),
    ("/v2/proj/app/manifests/", "empty reference"),
    ("/v2/proj/app/manifests", "no reference"),
    ("/v2/manifests/v1", "no repository"),
    ("/v2//manifests/v1", "empty repository"),
    ("/v2/proj//app/manifests/v1", "empty path component"),
    ("/v2/proj/app/manifests/v1/", "trailing slash"),
    ("/v2/proj/app/manifests/v1/extra", "extra segment"),
    ("/v2/proj/app/manifests/" + "a" * 129, "129-character tag"),
    ("/v2/proj/app/manifests/.v1", "tag starting with a dot"),
    ("/v2/proj/app/manifests/-v1", "tag starting with a dash"),
    ("/v2/proj/app/manifests/v1:", "colon in a tag that is no digest"),
    ("/v2/proj/app/manifests/sha256:abc\n", "digest with trailing newline"),
    ("/v2/proj/app/manifests/v1@x", "@ in tag"),
    ("/v2/proj/app/manifests/v%31", "percent sign in tag"),
    ("/v2/proj/app/manifests/sha256:", "digest without hex"),
    ("/v2/proj/app/manifests/SHA256:" + "a" * 64, "upper-case algorithm"),
    ("/v2/-proj/app/manifests/v1", "component starting with a separator"),
    ("/v2/proj-/app/manifests/v1", "component ending with a separator"),
    ("/v2/proj/a..b/manifests/v1", "double dot"),
    ("/v2/proj/a___b/manifests/v1", "triple underscore"),
    ("/v2/proj/a_-b/manifests/v1", "mixed separators"),
    ("/v2/proj/app:v1/manifests/v1", "colon in name"),
    ("/v3/proj/app/manifests/v1", "not the v2 API"),
    ("v2/proj/app/manifests/v1", "relative path"),
    ("/v2/proj/app/manifests/v1\n", "trailing newline"),
    ("//v2/proj/app/manifests/v1", "double leading slash"),
]


@pytest.mark.parametrize(("path", "why"), BAD_ROUTES, ids=[r[1] for r in BAD_ROUTES])
def test_paths_that_are_not_manifest_routes_make_no_event(path, why):
    assert manifest_route(path) is None, why
    for method, status in (("PUT", 201), ("GET", 200), ("DELETE", 202)):
        assert infer(exchange(method, path, status)) == [], (method, why)


def test_tag_of_exactly_128_characters_is_the_longest_accepted():
    assert len(TAG_128) == 128
    assert manifest_route(f"/v2/p/a/manifests/{TAG_128}") is not None
    assert manifest_route(f"/v2/p/a/manifests/{TAG_128}x") is None
