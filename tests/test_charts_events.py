"""Chart events: file names, indexes, inference, OCI charts, and Harbor's chart payload."""

from __future__ import annotations

import base64
import json

import pytest

from sidecar.events.chartfiles import chart_metadata
from sidecar.events.chartfiles import index_files
from sidecar.events.chartfiles import split_filename
from sidecar.events.chartfiles import versions_from_listing
from sidecar.events.chartinfer import ChartExchange
from sidecar.events.chartinfer import infer_chart
from sidecar.events.chartinfer import oci_chart_events
from sidecar.events.chartroutes import parse_chart_route
from sidecar.events.manifest import HELM_CONFIG
from sidecar.events.manifest import helm_manifest
from sidecar.events.model import DELETE_ARTIFACT
from sidecar.events.model import PULL_ARTIFACT
from sidecar.events.model import PUSH_ARTIFACT
from sidecar.events.model import ArtifactEvent
from sidecar.events.model import ChartEvent
from sidecar.events.payload import chart_payload
from sidecar.events.payload import encode
from sidecar.record.recorder import build_records
from sidecar.store.policies import ProjectPolicies
from sidecar.store.policies import StoredPolicy

BASIC_ADMIN = "Basic " + base64.b64encode(b"admin:pw").decode()


@pytest.mark.parametrize(("filename", "expected"), [
    ("app-1.0.0.tgz", ("app", "1.0.0")),
    ("my-cool-chart-1.2.3-rc.1.tgz", ("my-cool-chart", "1.2.3-rc.1")),
    ("x-1.0.0-0.3.7.tgz", ("x", "1.0.0-0.3.7")),
    ("app-2-1.0.0.tgz", ("app-2", "1.0.0")),
    ("app-1.0.0+build.5.tgz", ("app", "1.0.0+build.5")),
    ("a-b-c-10.20.30-alpha-beta.1+meta.tgz", ("a-b-c", "10.20.30-alpha-beta.1+meta")),
    ("app-v1.0.0.tgz", None),   # not SemVer: the index must know it
    ("app.tgz", None),
    ("app-1.0.0.tgz.prov", None),
    ("-1.0.0.tgz", None),
])
def test_split_filename(filename, expected):
    assert split_filename(filename) == expected


def test_chart_metadata_keeps_versions_as_written():
    assert chart_metadata(b"apiVersion: v2\nname: app\nversion: 1.10\n") == ("app", "1.10")
    assert chart_metadata(b"name: app\n") is None
    assert chart_metadata(b"name: [a]\nversion: 1.0.0\n") is None
    assert chart_metadata(b"name: a/b\nversion: 1.0.0\n") is None
    assert chart_metadata(b": : :\n\t") is None
    assert chart_metadata(b"- a list\n") is None


def test_index_files_resolves_what_splitting_cannot():
    index = b"""apiVersion: v1
entries:
  app-v:
  - name: app-v
    version: v1.0.0
    urls: [charts/app-v-v1.0.0.tgz]
  my-chart-1:
  - name: my-chart-1
    version: 2.0.0-rc.1
    urls: ["https://charts.example.com/t/charts/my-chart-1-2.0.0-rc.1.tgz"]
  odd: not-a-list
"""
    files = index_files(index)
    assert files["app-v-v1.0.0.tgz"] == ("app-v", "v1.0.0")
    assert files["my-chart-1-2.0.0-rc.1.tgz"] == ("my-chart-1", "2.0.0-rc.1")
    assert index_files(b"not: [valid") == {}
    assert index_files(b"entries: 3") == {}


def test_versions_from_listing():
    assert versions_from_listing(b'[{"name":"a","version":"1.0.0"},{"version":"2.0.0"}]') \
        == ["1.0.0", "2.0.0"]
    assert versions_from_listing(b'{"error":"chart not found"}') == []
    assert versions_from_listing(b"<html>") == []


def exchange(path, method, status, depth=0, **kwargs):
    route = parse_chart_route(path, depth=depth)
    headers = {"authorization": BASIC_ADMIN, "host": "charts.example.com:8080",
               "x-request-id": "req-1"}
    return ChartExchange(route=route, method=method, status=status, request_headers=headers,
                         occur_at=1_700_000_000, **kwargs)


@pytest.mark.parametrize(("args", "kwargs", "expected"), [
    # upload: name/version come from the package; only 201 fires
    (("/api/charts", "POST", 201), {"chart": ("app", "1.0.0"), "size": 900},
     ("UPLOAD_CHART", "library/app", ("1.0.0",), 900)),
    (("/api/charts", "POST", 409), {"chart": ("app", "1.0.0")}, None),
    (("/api/charts", "POST", 201), {}, None),            # package not understood: no event
    (("/api/charts", "GET", 200), {"chart": ("app", "1.0.0")}, None),
    (("/api/team/charts", "POST", 201, 1), {"chart": ("app", "1.0.0")},
     ("UPLOAD_CHART", "team/app", ("1.0.0",), None)),
    # download: .tgz only, 200 only
    (("/charts/app-1.0.0.tgz", "GET", 200), {"chart": ("app", "1.0.0"), "size": 10},
     ("DOWNLOAD_CHART", "library/app", ("1.0.0",), 10)),
    (("/charts/app-1.0.0.tgz", "HEAD", 200), {"chart": ("app", "1.0.0")}, None),
    (("/charts/app-1.0.0.tgz", "GET", 404), {"chart": ("app", "1.0.0")}, None),
    (("/charts/app-1.0.0.tgz.prov", "GET", 200), {"chart": ("app", "1.0.0")}, None),
    (("/org/team/charts/app-1.0.0.tgz", "GET", 200, 2), {"chart": ("app", "1.0.0")},
     ("DOWNLOAD_CHART", "org/team/app", ("1.0.0",), None)),
    # delete one version: name and version from the path
    (("/api/charts/app/1.0.0", "DELETE", 200), {},
     ("DELETE_CHART", "library/app", ("1.0.0",), None)),
    (("/api/charts/app/1.0.0", "DELETE", 404), {}, None),
    (("/api/chartrepo/proj/charts/app/1.0.0", "DELETE", 200), {},
     ("DELETE_CHART", "proj/app", ("1.0.0",), None)),
    # Harbor's whole-chart delete: the versions it removed
    (("/api/chartrepo/proj/charts/app", "DELETE", 200), {"versions": ("1.0.0", "1.1.0")},
     ("DELETE_CHART", "proj/app", ("1.0.0", "1.1.0"), None)),
    (("/api/chartrepo/proj/charts/app", "DELETE", 200), {}, None),
    # never events
    (("/index.yaml", "GET", 200), {}, None),
    (("/api/prov", "POST", 201), {}, None),
    (("/chartrepo/index.yaml", "GET", 200), {}, None),
])
def test_infer_chart(args, kwargs, expected):
    events = infer_chart(exchange(*args, **kwargs))
    if expected is None:
        assert events == []
        return
    (event,) = events
    assert (event.type, event.repository, event.versions, event.size) == expected
    assert event.operator == "admin"
    assert event.request_id == "req-1"


def test_chart_event_names_like_images():
    event = infer_chart(exchange("/org/team/charts/app-1.0.0.tgz", "GET", 200, depth=2,
                                 chart=("app", "1.0.0")))[0]
    assert (event.namespace, event.name, event.chart) == ("org", "team/app", "app")
    assert event.tags == ("1.0.0",)


HELM_MANIFEST = json.dumps({
    "schemaVersion": 2,
    "config": {"mediaType": HELM_CONFIG, "digest": "sha256:" + "c" * 64, "size": 120},
    "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                "digest": "sha256:" + "d" * 64, "size": 3456}],
    "annotations": {"org.opencontainers.image.title": "mychart",
                    "org.opencontainers.image.version": "0.1.0+build.1"},
}).encode()
IMAGE_MANIFEST = json.dumps({
    "schemaVersion": 2,
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
               "digest": "sha256:" + "e" * 64},
    "layers": [],
}).encode()


def artifact(kind, tags=("0.1.0_build.1",), repository="proj/charts/mychart"):
    return ArtifactEvent(type=kind, repository=repository, digest="sha256:" + "a" * 64,
                         operator="ci", occur_at=1_700_000_000, tags=tags,
                         host="reg.example.com")


def test_helm_manifest():
    helm = helm_manifest(HELM_MANIFEST)
    assert (helm.name, helm.version, helm.size) == ("mychart", "0.1.0+build.1", 3456)
    assert helm_manifest(IMAGE_MANIFEST) is None
    assert helm_manifest(b"{" + HELM_CONFIG.encode()) is None
    assert helm_manifest(json.dumps([HELM_CONFIG]).encode()) is None


@pytest.mark.parametrize(("kind", "chart_kind"), [
    (PUSH_ARTIFACT, "UPLOAD_CHART"), (PULL_ARTIFACT, "DOWNLOAD_CHART"),
    (DELETE_ARTIFACT, "DELETE_CHART"),
])
def test_oci_chart_events(kind, chart_kind):
    (event,) = oci_chart_events([artifact(kind)], HELM_MANIFEST)
    assert event.type == chart_kind
    assert (event.repository, event.chart, event.versions) == (
        "proj/charts/mychart", "mychart", ("0.1.0+build.1",))
    assert (event.size, event.digest, event.operator) == (3456, "sha256:" + "a" * 64, "ci")
    assert oci_chart_events([artifact(kind)], IMAGE_MANIFEST) == []


def test_oci_chart_version_from_tag_without_annotations():
    manifest = json.loads(HELM_MANIFEST)
    del manifest["annotations"]
    body = json.dumps(manifest).encode()
    (event,) = oci_chart_events([artifact(PUSH_ARTIFACT)], body)
    assert (event.chart, event.versions) == ("mychart", ("0.1.0+build.1",))
    assert oci_chart_events([artifact(PULL_ARTIFACT, tags=())], body) == []
    assert oci_chart_events([artifact(PUSH_ARTIFACT, repository="single")], body) == []


# -- payload goldens (compact bytes, as receivers get them) ----------------------------------

def test_upload_payload_golden():
    event = infer_chart(exchange("/api/chartrepo/library/charts", "POST", 201,
                                 chart=("mychart", "0.1.0"), size=1234,
                                 scheme="https"))[0]
    payload = chart_payload(event, hostname="harbor.example.com", public=False)
    assert encode(payload) == (
        b'{"type":"UPLOAD_CHART","occur_at":1700000000,"operator":"admin","event_data":'
        b'{"resources":[{"tag":"0.1.0","resource_url":'
        b'"https://harbor.example.com/chartrepo/library/charts/mychart-0.1.0.tgz"}],'
        b'"repository":{"name":"mychart","namespace":"library","repo_full_name":'
        b'"library/mychart","repo_type":"private"},"custom_attributes":{"size":"1234"}}}')


def test_whole_chart_delete_payload_golden():
    event = infer_chart(exchange("/api/v2.0/chartrepo/proj/charts/app", "DELETE", 200,
                                 versions=("1.0.0", "1.1.0-rc.1")))[0]
    payload = chart_payload(event, hostname="", public=True)
    assert encode(payload) == (
        b'{"type":"DELETE_CHART","occur_at":1700000000,"operator":"admin","event_data":'
        b'{"resources":[{"tag":"1.0.0","resource_url":'
        b'"http://charts.example.com:8080/chartrepo/proj/charts/app-1.0.0.tgz"},'
        b'{"tag":"1.1.0-rc.1","resource_url":'
        b'"http://charts.example.com:8080/chartrepo/proj/charts/app-1.1.0-rc.1.tgz"}],'
        b'"repository":{"name":"app","namespace":"proj","repo_full_name":"proj/app",'
        b'"repo_type":"public"}}}')


def test_chartmuseum_download_payload_golden():
    event = infer_chart(exchange("/team/charts/my-cool-chart-1.2.3-rc.1.tgz", "GET", 200,
                                 depth=1, chart=("my-cool-chart", "1.2.3-rc.1"), size=2048))[0]
    payload = chart_payload(event, hostname="https://Charts.Example.com/", public=False)
    assert payload["event_data"]["resources"] == [{
        "tag": "1.2.3-rc.1",
        "resource_url": "https://charts.example.com/team/charts/my-cool-chart-1.2.3-rc.1.tgz",
    }]
    assert payload["event_data"]["repository"]["repo_full_name"] == "team/my-cool-chart"
    assert payload["event_data"]["custom_attributes"] == {"size": "2048"}


def test_oci_chart_payload_golden():
    (event,) = oci_chart_events([artifact(PUSH_ARTIFACT)], HELM_MANIFEST)
    assert encode(chart_payload(event, hostname="", public=False)) == (
        b'{"type":"UPLOAD_CHART","occur_at":1700000000,"operator":"ci","event_data":'
        b'{"resources":[{"digest":"sha256:' + b"a" * 64 + b'","tag":"0.1.0+build.1",'
        b'"resource_url":"oci://reg.example.com/proj/charts/mychart:0.1.0_build.1"}],'
        b'"repository":{"name":"charts/mychart","namespace":"proj","repo_full_name":'
        b'"proj/charts/mychart","repo_type":"private"},"custom_attributes":{"size":"3456"}}}')


def test_payload_keys_stay_inside_harbors_schema():
    event = ChartEvent(type="UPLOAD_CHART", repository="p/c", chart="c", versions=("1.0.0",),
                       operator="", occur_at=1, host="h", download_base="/charts/")
    payload = chart_payload(event, hostname="", public=False)
    assert set(payload) == {"type", "occur_at", "operator", "event_data"}
    assert set(payload["event_data"]) == {"resources", "repository"}
    assert payload["operator"] == ""


# -- the recorder picks the chart payload for chart events -----------------------------------

def test_recorder_builds_chart_payloads_for_subscribed_policies():
    chart_policy = StoredPolicy(id=1, project="proj", name="charts", enabled=True,
                                event_types=("UPLOAD_CHART",),
                                targets=({"type": "http", "address": "http://r/c"},))
    image_policy = StoredPolicy(id=2, project="proj", name="images", enabled=True,
                                event_types=("PUSH_ARTIFACT",),
                                targets=({"type": "http", "address": "http://r/i"},))
    projects = {"proj": ProjectPolicies("proj", False, (chart_policy, image_policy))}
    push = artifact(PUSH_ARTIFACT)
    events = [push, *oci_chart_events([push], HELM_MANIFEST)]
    records = build_records(events, projects, {}, "reg.example.com", True)
    by_type = {r.type: r for r in records}
    assert set(by_type) == {"PUSH_ARTIFACT", "UPLOAD_CHART"}
    assert [d.policy_name for d in by_type["UPLOAD_CHART"].deliveries] == ["charts"]
    assert [d.policy_name for d in by_type["PUSH_ARTIFACT"].deliveries] == ["images"]
    upload = by_type["UPLOAD_CHART"].payload
    assert upload["event_data"]["resources"][0]["resource_url"] == \
        "oci://reg.example.com/proj/charts/mychart:0.1.0_build.1"
    assert by_type["PUSH_ARTIFACT"].payload["event_data"]["resources"][0]["tag"] == \
        "0.1.0_build.1"
