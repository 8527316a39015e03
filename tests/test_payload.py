"""Harbor's Default payload, byte for byte: golden wire tests and the fields around them.

The goldens in tests/fixtures/harbor/ were written by hand from Harbor's structs (key order of
the Go declarations, compact encoding/json output), not generated from this code. A failure
means the wire format changed: receivers such as the Jenkins plugin (strict Jackson) or Go
decoders may stop accepting it.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from sidecar.events.infer import Exchange
from sidecar.events.infer import infer
from sidecar.events.model import DELETE_ARTIFACT
from sidecar.events.model import PULL_ARTIFACT
from sidecar.events.model import PUSH_ARTIFACT
from sidecar.events.model import ArtifactEvent
from sidecar.events.payload import artifact_payload
from sidecar.events.payload import encode
from sidecar.events.payload import resource_url

FIXTURES = Path(__file__).parent / "fixtures" / "harbor"
NGINX = "sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8"
CHILD = "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4"
ALPINE = "sha256:2bb501e6173d9d006e56de5bce2720eb06396803300fe1687b58a7ff32bf4c14"


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:pw".encode()).decode()


def bearer(sub: str) -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")
    return f"Bearer {part(b'{}')}.{part(json.dumps({'sub': sub}).encode())}.{part(b'sig')}"


def one_event(method, path, status, *, occur_at, auth="", digest="", host="registry:5000",
              prior_tags=(), prior_size=None) -> ArtifactEvent:
    request = {"host": host}
    if auth:
        request["authorization"] = auth
    response = {"docker-content-digest": digest} if digest else {}
    events = infer(Exchange(method, path, status, request, response, occur_at,
                            prior_tags=prior_tags, prior_size=prior_size))
    assert len(events) == 1
    return events[0]


# name -> (event from real-looking traffic, hostname, public, date_created)
GOLDEN = {
    "push_by_tag": (
        lambda: one_event("PUT", "/v2/library/nginx/manifests/1.25", 201, occur_at=1755763200,
                          auth=basic("alice"), digest=NGINX),
        "https://harbor.example.com", True, 1755700000),
    "push_by_digest": (
        lambda: one_event("PUT", f"/v2/library/nginx/manifests/{CHILD}", 201,
                          occur_at=1755763199, auth=basic("alice"), digest=CHILD),
        "https://harbor.example.com", True, 1755700000),
    "pull_by_tag": (
        lambda: one_event("GET", "/v2/library/nginx/manifests/1.25", 200, occur_at=1755763300,
                          auth=bearer("robot$library+ci"), digest=NGINX),
        "harbor.example.com", True, 1755700000),
    "pull_by_digest_nested_anonymous": (
        lambda: one_event("GET", f"/v2/team/tools/ci/runner/manifests/{NGINX}", 200,
                          occur_at=1755763301, digest=NGINX),
        "https://Registry.Example.com:8443/", False, None),
    "delete": (
        lambda: one_event("DELETE", f"/v2/library/alpine/manifests/{ALPINE}", 202,
                          occur_at=1755763400, auth=basic("harbor-jobservice"),
                          prior_tags=("3.8", "latest"), prior_size=2789),
        "http://harbor.example.com", False, 1755700000),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_default_payload_matches_golden_bytes(name):
    make_event, hostname, public, date_created = GOLDEN[name]
    payload = artifact_payload(make_event(), hostname=hostname, public=public,
                               date_created=date_created)
    actual = encode(payload)
    fixture = FIXTURES / f"{name}.json"
    expected = fixture.read_bytes()
    expected = expected[:-1] if expected.endswith(b"\n") else expected
    if actual != expected:
        pytest.fail(
            f"Harbor Default payload format has changed ({name}).\n"
            f"  expected: {expected.decode()}\n"
            f"  actual:   {actual.decode()}\n"
            "Strict receivers compare keys, order and types. If the change is intended and "
            f"still Harbor-compatible, update {fixture.relative_to(Path(__file__).parent)}.",
            pytrace=False,
        )


def test_golden_fixtures_are_compact_json_with_harbor_top_level_order():
    for fixture in FIXTURES.glob("*.json"):
        text = fixture.read_text().rstrip("\n")
        data = json.loads(text)
        assert json.dumps(data, separators=(",", ":"), ensure_ascii=False) == text, fixture
        assert list(data) == ["type", "occur_at", "operator", "event_data"], fixture
    assert {f.stem for f in FIXTURES.glob("*.json")} == set(GOLDEN)


# --- hostname -> resource_url --------------------------------------------------------------------

@pytest.mark.parametrize(("hostname", "host_header", "expected"), [
    ("harbor.example.com", "ignored:5000", "harbor.example.com"),
    ("https://harbor.example.com", "", "harbor.example.com"),
    ("http://harbor.example.com", "", "harbor.example.com"),
    ("https://harbor.example.com:8443", "", "harbor.example.com:8443"),
    ("https://harbor.example.com:8443/", "", "harbor.example.com:8443"),
    ("HTTPS://Harbor.Example.COM:8443", "", "harbor.example.com:8443"),
    ("Harbor.Example.com", "", "harbor.example.com"),
    ("  harbor.example.com  ", "", "harbor.example.com"),
    ("10.0.0.5:5000", "", "10.0.0.5:5000"),
    ("", "registry.local:5000", "registry.local:5000"),
    ("", "Registry.Local:5000", "registry.local:5000"),
    ("", "127.0.0.1:8080", "127.0.0.1:8080"),
])
def test_resource_url_host(hostname, host_header, expected):
    event = one_event("PUT", "/v2/proj/app/manifests/v1", 201, occur_at=1, digest=NGINX,
                      host=host_header)
    payload = artifact_payload(event, hostname=hostname, public=False)
    assert payload["event_data"]["resources"][0]["resource_url"] == f"{expected}/proj/app:v1"


def test_resource_url_uses_at_for_digests_and_colon_for_tags():
    assert resource_url("h.example", "p/a", "v1", by_digest=False) == "h.example/p/a:v1"
    assert resource_url("h.example", "p/a", NGINX, by_digest=True) == f"h.example/p/a@{NGINX}"


def test_tag_keeps_its_case_only_the_host_is_lowercased():
    event = one_event("PUT", "/v2/proj/app/manifests/V1.0-RC", 201, occur_at=1, digest=NGINX)
    payload = artifact_payload(event, hostname="Reg.Example", public=True)
    resource = payload["event_data"]["resources"][0]
    assert resource["tag"] == "V1.0-RC"
    assert resource["resource_url"] == "reg.example/proj/app:V1.0-RC"


# --- fields ---------------------------------------------------------------------------------------

def event(**changes) -> ArtifactEvent:
    fields = dict(type=PUSH_ARTIFACT, repository="proj/app", digest=NGINX, operator="alice",
                  occur_at=1755763200, tags=("v1",))
    fields.update(changes)
    return ArtifactEvent(**fields)


@pytest.mark.parametrize(("repository", "namespace", "name"), [
    ("proj/app", "proj", "app"),
    ("proj/a/b", "proj", "a/b"),
    ("team/tools/ci/runner", "team", "tools/ci/runner"),
])
def test_namespace_is_the_first_segment_and_name_the_rest(repository, namespace, name):
    repo = artifact_payload(event(repository=repository), hostname="h.example",
                            public=True)["event_data"]["repository"]
    assert repo == {"name": name, "namespace": namespace, "repo_full_name": repository,
                    "repo_type": "public"}


@pytest.mark.parametrize(("public", "repo_type"), [(True, "public"), (False, "private")])
def test_repo_type_follows_the_projects_public_flag(public, repo_type):
    payload = artifact_payload(event(), hostname="h.example", public=public)
    assert payload["event_data"]["repository"]["repo_type"] == repo_type


@pytest.mark.parametrize(("date_created", "expected"), [
    (None, None), (0, None), (1755700000, 1755700000), (1755700000.9, 1755700000),
])
def test_date_created_is_an_integer_or_absent(date_created, expected):
    repo = artifact_payload(event(), hostname="h.example", public=True,
                            date_created=date_created)["event_data"]["repository"]
    assert repo.get("date_created") == expected
    if expected is not None:
        assert type(repo["date_created"]) is int
        assert next(iter(repo)) == "date_created"  # Harbor's struct order


def test_occur_at_is_an_integer_even_from_a_float():
    payload = artifact_payload(event(occur_at=1755763200.75), hostname="h.example", public=True)
    assert payload["occur_at"] == 1755763200
    assert type(payload["occur_at"]) is int


def test_delete_of_a_multi_tag_artifact_sends_one_resource_for_the_first_tag():
    payload = artifact_payload(event(type=DELETE_ARTIFACT, tags=("3.8", "latest", "stable")),
                               hostname="h.example", public=False)
    resources = payload["event_data"]["resources"]
    assert len(resources) == 1
    assert resources[0]["tag"] == "3.8"


def test_by_digest_the_tag_is_the_digest():
    resource = artifact_payload(event(type=PULL_ARTIFACT, tags=()), hostname="h.example",
                                public=True)["event_data"]["resources"][0]
    assert resource == {"digest": NGINX, "tag": NGINX,
                        "resource_url": f"h.example/proj/app@{NGINX}"}


def test_an_unknown_digest_is_left_out_not_sent_empty():
    resource = artifact_payload(event(digest=""), hostname="h.example",
                                public=True)["event_data"]["resources"][0]
    assert list(resource) == ["tag", "resource_url"]


@pytest.mark.parametrize(("size", "extra", "expected"), [
    (None, {}, None),
    (0, {}, {"size": "0"}),
    (2789, {}, {"size": "2789"}),
    (2789.0, {}, {"size": "2789"}),
    (None, {"zeta": "1", "alpha": "2", "empty": ""}, {"alpha": "2", "zeta": "1"}),
    (5, {"chart_version": "1.2.3"}, {"chart_version": "1.2.3", "size": "5"}),
])
def test_custom_attributes_are_sorted_strings_and_absent_when_empty(size, extra, expected):
    data = artifact_payload(event(size=size, extra=extra), hostname="h.example",
                            public=True)["event_data"]
    assert data.get("custom_attributes") == expected
    if expected is not None:
        assert list(data["custom_attributes"]) == sorted(expected)
        assert list(data) == ["resources", "repository", "custom_attributes"]


def test_payload_has_harbor_key_order_at_every_level():
    payload = artifact_payload(event(size=3), hostname="h.example", public=True,
                               date_created=5)
    assert list(payload) == ["type", "occur_at", "operator", "event_data"]
    assert list(payload["event_data"]) == ["resources", "repository", "custom_attributes"]
    assert list(payload["event_data"]["resources"][0]) == ["digest", "tag", "resource_url"]
    assert list(payload["event_data"]["repository"]) == [
        "date_created", "name", "namespace", "repo_full_name", "repo_type"]


# --- encode: Go's encoding/json bytes -------------------------------------------------------------

def test_encode_is_compact_utf8():
    assert encode({"a": [1, {"b": "c"}], "d": "\u00e9\u6f22"}) == (
        '{"a":[1,{"b":"c"}],"d":"\u00e9\u6f22"}'.encode())


def test_encode_escapes_what_go_escapes():
    # Go's json.Marshal writes <, >, & and U+2028/U+2029 as \u escapes
    assert encode({"operator": "a<b>&c\u2028\u2029"}) == (
        b'{"operator":"a\\u003cb\\u003e\\u0026c\\u2028\\u2029"}')
    assert json.loads(encode({"operator": "a<b>&c\u2028\u2029"})) == {
        "operator": "a<b>&c\u2028\u2029"}


def test_encode_keeps_json_escapes_of_quotes_backslashes_and_controls():
    assert encode({"k": 'q"b\\n\n\t\x01'}) == b'{"k":"q\\"b\\\\n\\n\\t\\u0001"}'


def test_encode_replaces_lone_surrogates_as_go_does():
    assert encode({"operator": "a\ud800b"}) == '{"operator":"a\ufffdb"}'.encode()


def test_encode_of_a_payload_round_trips():
    payload = artifact_payload(event(operator="r&d<team>", size=7), hostname="h.example",
                               public=True, date_created=9)
    assert json.loads(encode(payload)) == payload
