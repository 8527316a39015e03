"""Every payload the pure core can produce passes what real receivers check (rules B1-B15,
T2-T5), and the checker itself catches each kind of violation."""

from __future__ import annotations

import base64
import copy
import itertools
import json

import pytest

from sidecar.dispatch.render import render
from sidecar.events.infer import Exchange
from sidecar.events.infer import infer
from sidecar.events.payload import artifact_payload
from sidecar.events.payload import encode
from tests.consumer_rules import assert_harbor_compatible
from tests.consumer_rules import assert_request_compatible

DIGEST = "sha256:" + "0123456789abcdef" * 4
OLD = "sha256:" + "fedcba9876543210" * 4

TRAFFIC = {
    "push-tag": ("PUT", "manifests/v1.2.3", 201, ()),
    "push-digest": ("PUT", f"manifests/{DIGEST}", 201, ()),
    "push-long-tag": ("PUT", "manifests/" + "T" * 128, 201, ()),
    "pull-tag": ("GET", "manifests/latest", 200, ()),
    "pull-digest": ("GET", f"manifests/{DIGEST}", 200, ()),
    "delete-tagged": ("DELETE", f"manifests/{DIGEST}", 202, ("v1", "latest")),
    "delete-untagged": ("DELETE", f"manifests/{DIGEST}", 202, ()),
}
REPOSITORIES = ["proj/app", "proj/a/b/c", "my.org/my-app__x", "manifests/manifests"]
HOSTS = [  # (configured hostname, client's Host header, pull address in resource_url)
    ("https://Harbor.Example.com:8443/", "internal:5000", "harbor.example.com:8443"),
    ("registry.example.com", "", "registry.example.com"),
    ("", "LocalHost:8080", "localhost:8080"),
    ("", "127.0.0.1:5000", "127.0.0.1:5000"),
]
OPERATORS = {
    "anonymous": None,
    "basic": "Basic " + base64.b64encode("j\u00fcrgen&co:p:w".encode()).decode(),
    "bearer": "Bearer e30." + base64.urlsafe_b64encode(b'{"sub":"robot$p+ci"}').decode()
    .rstrip("=") + ".c2ln",
}


def produce(kind, repository, host, operator, public, date_created, size):
    method, tail, status, prior_tags = TRAFFIC[kind]
    hostname, host_header, _ = host
    request = {"host": host_header}
    if operator:
        request["authorization"] = operator
    response = {"docker-content-digest": DIGEST} if method != "DELETE" else {}
    events = infer(Exchange(method, f"/v2/{repository}/{tail}", status, request, response,
                            1755763200, prior_tags=prior_tags, prior_size=size))
    assert len(events) == 1
    return artifact_payload(events[0], hostname=hostname, public=public,
                            date_created=date_created)


CASES = list(itertools.product(TRAFFIC, REPOSITORIES, range(len(HOSTS)), OPERATORS,
                               (True, False), (None, 1755700000)))


@pytest.mark.parametrize(("kind", "repository", "host", "operator", "public", "created"), CASES)
def test_every_produced_payload_passes_every_rule(kind, repository, host, operator, public,
                                                  created):
    size = 2789 if kind.startswith("delete") else None
    payload = produce(kind, repository, HOSTS[host], OPERATORS[operator], public, created, size)
    assert_harbor_compatible(payload, host=HOSTS[host][2])
    # and as the bytes a receiver decodes
    assert_harbor_compatible(encode(payload), host=HOSTS[host][2])


@pytest.mark.parametrize("auth_header", ["", "s3cret", "Bearer abc", "Basic dTpw"])
@pytest.mark.parametrize("address", ["http://127.0.0.1:9000/hook",
                                     "https://ci.example.com/webhook?type=harbor&x=1",
                                     "http://flux.example/hook/0a1b2c/"])
def test_rendered_request_passes_transport_rules(auth_header, address):
    payload = produce("push-tag", "proj/app", HOSTS[1], None, True, None, None)
    target = {"type": "http", "address": address, "auth_header": auth_header,
              "skip_cert_verify": False, "payload_format": "Default"}
    request = render(payload, target, "delivery-1")
    assert_request_compatible("POST", request.url, request.headers, request.body,
                              address=address, auth_header=auth_header)
    assert_harbor_compatible(request.body, host="registry.example.com")


# --- the checker catches what receivers reject --------------------------------------------------

GOOD = {
    "type": "PUSH_ARTIFACT",
    "occur_at": 1755763200,
    "operator": "alice",
    "event_data": {
        "resources": [{"digest": DIGEST, "tag": "v1",
                       "resource_url": "harbor.example.com/library/nginx:v1"}],
        "repository": {"date_created": 1755700000, "name": "nginx", "namespace": "library",
                       "repo_full_name": "library/nginx", "repo_type": "public"},
        "custom_attributes": {"size": "12"},
    },
}


def broken(change):
    payload = copy.deepcopy(GOOD)
    change(payload)
    return payload


def res(p):
    return p["event_data"]["resources"][0]


def repo(p):
    return p["event_data"]["repository"]


VIOLATIONS = [
    ("B1", lambda p: p.update(id="123")),
    ("B1", lambda p: p.update(source="sidecar")),
    ("B2", lambda p: p["event_data"].update(delivery_id="x")),
    ("B2", lambda p: p["event_data"].update(custom_attributes={"size": 12})),
    ("B2", lambda p: p["event_data"].update(custom_attributes={"nested": {"a": "b"}})),
    ("B2", lambda p: p["event_data"].update(custom_attributes=["size"])),
    ("B3", lambda p: res(p).update(size=12)),
    ("B3", lambda p: res(p).update(media_type="application/json")),
    ("B3", lambda p: repo(p).update(project_id=1)),
    ("B4", lambda p: p.update(type="PUSH")),
    ("B4", lambda p: p.update(type="push_artifact")),
    ("B4", lambda p: p.update(type="pushImage")),
    ("B5", lambda p: p.update(occur_at=1755763200.5)),
    ("B5", lambda p: p.update(occur_at=1755763200.0)),
    ("B5", lambda p: p.update(occur_at="1755763200")),
    ("B5", lambda p: p.update(occur_at=True)),
    ("B5", lambda p: repo(p).update(date_created=1.5)),
    ("B5", lambda p: repo(p).update(date_created="2025-08-20T00:00:00Z")),
    ("B6", lambda p: p.update(operator=7)),
    ("B7", lambda p: p["event_data"].update(resources=[])),
    ("B7", lambda p: p["event_data"].pop("resources")),
    ("B7", lambda p: p["event_data"]["resources"].append(dict(res(p)))),
    ("B8", lambda p: res(p).update(tag="")),
    ("B8", lambda p: res(p).pop("tag")),
    ("B8", lambda p: res(p).update(tag=".bad",
                                   resource_url="harbor.example.com/library/nginx:.bad")),
    ("B9", lambda p: res(p).pop("digest")),
    ("B9", lambda p: res(p).update(digest="sha256:abc")),
    ("B9", lambda p: res(p).update(digest="SHA256:" + "A" * 64)),
    ("B10", lambda p: res(p).update(resource_url="https://harbor.example.com/library/nginx:v1")),
    ("B10", lambda p: res(p).update(resource_url="Harbor.Example.com/library/nginx:v1")),
    ("B10", lambda p: res(p).update(resource_url="/library/nginx:v1")),
    ("B10", lambda p: res(p).update(resource_url="library/nginx:v1")),  # reads as Docker Hub
    ("B10", lambda p: res(p).update(resource_url="harbor.example.com/library/nginx@v1")),
    ("B10", lambda p: res(p).update(resource_url="harbor.example.com/Library/nginx:v1")),
    ("B10", lambda p: res(p).update(resource_url="")),
    ("B10", lambda p: res(p).update(tag=DIGEST,
                                    resource_url=f"harbor.example.com/library/nginx:{DIGEST}")),
    ("B11", lambda p: res(p).update(resource_url="registry.internal:5000/library/nginx:v1")),
    ("B12", lambda p: res(p).update(resource_url="harbor.example.com/library/nginx:v2")),
    ("B12", lambda p: res(p).update(resource_url=f"harbor.example.com/library/nginx@{OLD}",
                                    tag=DIGEST)),
    ("B13", lambda p: res(p).update(resource_url="harbor.example.com/library/redis:v1")),
    ("B13", lambda p: repo(p).update(repo_full_name="library/redis")),
    ("B13", lambda p: repo(p).update(name="")),
    ("B13", lambda p: repo(p).update(namespace="", repo_full_name="/nginx")),
    ("B13", lambda p: repo(p).update(namespace="library/x", name="y")),
    ("B13", lambda p: p["event_data"].pop("repository")),
    ("B14", lambda p: repo(p).update(repo_type="internal")),
    ("B14", lambda p: repo(p).update(repo_type="Public")),
    ("B15", lambda p: p.update(operator=None)),
    ("B15", lambda p: res(p).update(tag=None)),
    ("B15", lambda p: repo(p).update(date_created=None)),
    ("B15", lambda p: p["event_data"].update(custom_attributes={"size": None})),
]


def test_the_reference_payload_passes():
    assert_harbor_compatible(GOOD, host="harbor.example.com")
    assert_harbor_compatible(json.dumps(GOOD).encode(), host="harbor.example.com")


@pytest.mark.parametrize(("rule", "change"), VIOLATIONS,
                         ids=[f"{rule}-{i}" for i, (rule, _) in enumerate(VIOLATIONS)])
def test_checker_names_the_broken_rule(rule, change):
    with pytest.raises(AssertionError, match=rf"^{rule}: "):
        assert_harbor_compatible(broken(change), host="harbor.example.com")


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"'])
def test_checker_refuses_bodies_that_are_not_objects(body):
    with pytest.raises(AssertionError, match=r"^B1: "):
        assert_harbor_compatible(body)


def test_checker_applies_resource_rules_to_artifact_events_only():
    quota = {"type": "QUOTA_EXCEED", "occur_at": 1, "operator": "",
             "event_data": {"resources": [{"digest": DIGEST}],
                            "repository": {"name": "nginx", "namespace": "library",
                                           "repo_full_name": "library/nginx",
                                           "repo_type": "private"},
                            "custom_attributes": {"Details": "quota exceeded"}}}
    assert_harbor_compatible(quota)
    with pytest.raises(AssertionError, match=r"^B8: "):
        assert_harbor_compatible(dict(quota, type="PUSH_ARTIFACT"))


def test_single_segment_repositories_cannot_make_a_valid_payload():
    # why no policy ever matches `alpine` (README): Harbor has no project for it
    events = infer(Exchange("PUT", "/v2/alpine/manifests/3.20", 201, {"host": "r.example"},
                            {"docker-content-digest": DIGEST}, 1))
    payload = artifact_payload(events[0], hostname="", public=True)
    with pytest.raises(AssertionError, match=r"^B13: "):
        assert_harbor_compatible(payload)


REQUEST = ("POST", "http://ci.example/hook?x=1", {"Content-Type": "application/json",
                                                   "Authorization": "s3cret"}, b"{}")
TRANSPORT_VIOLATIONS = [
    ("T1", dict(method="PUT")),
    ("T2", dict(headers={"Content-Type": "application/json; charset=utf-8",
                         "Authorization": "s3cret"})),
    ("T2", dict(headers={"Authorization": "s3cret"})),
    ("T3", dict(headers={"Content-Type": "application/json", "Authorization": "Bearer s3cret"})),
    ("T3", dict(headers={"Content-Type": "application/json"})),
    ("T3", dict(auth_header="")),
    ("T4", dict(body=b" " * (1024 * 1024 + 1))),
    ("T5", dict(url="http://ci.example/hook")),
]


def test_the_reference_request_passes():
    method, url, headers, body = REQUEST
    assert_request_compatible(method, url, headers, body, address=url, auth_header="s3cret")
    assert_request_compatible(method, url, {"content-type": "application/json"}, body,
                              address=url)


@pytest.mark.parametrize(("rule", "change"), TRANSPORT_VIOLATIONS,
                         ids=[f"{rule}-{i}" for i, (rule, _) in enumerate(TRANSPORT_VIOLATIONS)])
def test_transport_checker_names_the_broken_rule(rule, change):
    method, url, headers, body = REQUEST
    args = dict(method=method, url=url, headers=headers, body=body, auth_header="s3cret")
    args.update(change)
    with pytest.raises(AssertionError, match=rf"^{rule}: "):
        assert_request_compatible(args["method"], args["url"], args["headers"], args["body"],
                                  address=REQUEST[1], auth_header=args["auth_header"])
