"""Helm charts end to end: curl and oras through `sidecar serve` to a ChartMuseum-compatible
server and the real registry, webhooks to real receivers.

The chart server is tests/support/chartmuseum.py (no ChartMuseum binary installs here); charts
are real .tgz packages. The store is read with sqlite3 to see which events were recorded: an
event that must *not* fire is only provable there.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import webhook_rules
from tests.support import clients
from tests.support.chartmuseum import ChartMuseum
from tests.support.charts import HELM_CHART
from tests.support.charts import HELM_CONFIG
from tests.support.charts import helm_config
from tests.support.charts import make_chart
from tests.support.charts import random_bytes

pytestmark = pytest.mark.e2e

CHART_EVENTS = ("UPLOAD_CHART", "DOWNLOAD_CHART", "DELETE_CHART")


@pytest.fixture
def museum_factory():
    started: list[ChartMuseum] = []

    def make(depth: int = 0) -> ChartMuseum:
        museum = ChartMuseum(depth=depth).start()
        started.append(museum)
        return museum

    yield make
    for museum in started:
        museum.stop()


class Curl:
    """curl as ChartMuseum's README drives it; answers (status, body)."""

    def __init__(self, workdir: Path):
        if not shutil.which("curl"):
            pytest.fail("the chart tests need curl: apt-get install -y curl")
        self.workdir = workdir
        self.count = 0

    def __call__(self, *args: str) -> tuple[int, bytes]:
        self.count += 1
        out = self.workdir / f"curl-{self.count}.out"
        result = subprocess.run(
            ["curl", "-sS", "-o", str(out), "-w", "%{http_code}", *args],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return int(result.stdout), out.read_bytes()

    def file(self, name: str, data: bytes) -> str:
        path = self.workdir / name
        path.write_bytes(data)
        return str(path)


@pytest.fixture
def curl(tmp_path) -> Curl:
    where = tmp_path / "curl"
    where.mkdir()
    return Curl(where)


def recorded(sidecar) -> list[tuple[str, str, dict]]:
    """(type, project, payload) of every event the sidecar recorded, oldest first."""
    path = sidecar.database.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        try:
            rows = db.execute("SELECT type, project, payload_json FROM event ORDER BY id")
            return [(t, p, json.loads(payload)) for t, p, payload in rows.fetchall()]
        except sqlite3.OperationalError:  # not created yet
            return []


def wait_recorded(sidecar, predicate, timeout: float = 20.0) -> list[tuple[str, str, dict]]:
    deadline = time.monotonic() + timeout
    events = recorded(sidecar)
    while not predicate(events):
        if time.monotonic() > deadline:
            raise AssertionError(f"recorded events never matched: {[e[:2] for e in events]}")
        time.sleep(0.1)
        events = recorded(sidecar)
    return events


def types(events) -> list[str]:
    return [e[0] for e in events]


def chart_rules(address: str, *projects: str, event_types=CHART_EVENTS) -> dict:
    rules = {"projects": []}
    for project in projects:
        rules["projects"] += webhook_rules(address, project=project, event_types=event_types,
                                           auth_header=None)["projects"]
    return rules


def chart_config(museum: ChartMuseum, **extra) -> dict:
    return {"sidecar": {"chart_upstream": museum.url, "chart_depth": museum.depth, **extra}}


def test_chartmuseum_depth0_raw_upload_download_delete(sidecar_factory, museum_factory,
                                                         receiver, curl):
    museum = museum_factory(depth=0)
    # the command-line flag, as the README shows; depth and project keep their defaults
    sidecar = sidecar_factory(chart_rules(receiver.url, "library"),
                              extra_args=["--chart-upstream", museum.url])
    base = sidecar.url
    package = make_chart("app", "1.0.0")
    tgz = curl.file("app-1.0.0.tgz", package)

    assert curl("-u", "admin:pw", "--data-binary", f"@{tgz}", f"{base}/api/charts") == \
        (201, b'{"saved": true}')
    status, body = curl("--data-binary", f"@{tgz}", f"{base}/api/charts")
    assert status == 409 and b"already exists" in body

    # index, list and describe routes are proxied as they are
    status, index = curl(f"{base}/index.yaml")
    assert status == 200 and b"charts/app-1.0.0.tgz" in index
    status, listing = curl(f"{base}/api/charts")
    assert status == 200 and json.loads(listing)["app"][0]["version"] == "1.0.0"
    assert curl(f"{base}/api/charts/app/1.0.0")[0] == 200
    assert curl("-I", f"{base}/charts/app-1.0.0.tgz")[0] == 200  # HEAD: not a download
    assert curl(f"{base}/health") == (200, b'{"healthy": true}')

    assert curl("-u", "ci:pw", f"{base}/charts/app-1.0.0.tgz") == (200, package)
    assert curl(f"{base}/charts/nope-1.0.0.tgz")[0] == 404
    assert curl("-X", "DELETE", f"{base}/api/charts/app/1.0.0") == (200, b'{"deleted": true}')
    assert curl("-X", "DELETE", f"{base}/api/charts/app/1.0.0")[0] == 404

    received = receiver.wait_for(3)
    events = wait_recorded(sidecar, lambda e: len(e) >= 3)
    time.sleep(0.3)  # anything the 409 or the 404s fired would be recorded by now
    assert types(recorded(sidecar)) == ["UPLOAD_CHART", "DOWNLOAD_CHART", "DELETE_CHART"]
    assert [e[1] for e in events] == ["library"] * 3
    by_type = {r.json()["type"]: r.json() for r in received}
    upload = by_type["UPLOAD_CHART"]
    assert upload["operator"] == "admin"
    assert upload["event_data"] == {
        "resources": [{"tag": "1.0.0",
                       "resource_url": f"http://{sidecar.netloc}/charts/app-1.0.0.tgz"}],
        "repository": {"name": "app", "namespace": "library", "repo_full_name": "library/app",
                       "repo_type": "private"},
        "custom_attributes": {"size": str(len(package))},
    }
    assert by_type["DOWNLOAD_CHART"]["operator"] == "ci"
    assert by_type["DOWNLOAD_CHART"]["event_data"]["custom_attributes"] == \
        {"size": str(len(package))}
    assert by_type["DELETE_CHART"]["event_data"]["resources"] == upload["event_data"]["resources"]
    assert "custom_attributes" not in by_type["DELETE_CHART"]["event_data"]
    assert museum.stored() == {}


def test_chartmuseum_depth1_multipart_dash_heavy_prerelease(sidecar_factory, museum_factory,
                                                              receiver, curl):
    museum = museum_factory(depth=1)
    sidecar = sidecar_factory(chart_rules(receiver.url, "team"), config=chart_config(museum))
    base = sidecar.url
    dashed = make_chart("my-cool-chart", "1.2.3-rc.1")
    loose = make_chart("legacy-app", "v2.0.0")  # not SemVer: only the index can split it
    dashed_file = curl.file("my-cool-chart-1.2.3-rc.1.tgz", dashed)
    prov = curl.file("my-cool-chart-1.2.3-rc.1.tgz.prov",
                     b"my-cool-chart-1.2.3-rc.1.tgz\n-----BEGIN PGP SIGNED MESSAGE-----\n")

    status, _ = curl("-F", f"chart=@{dashed_file}", "-F", f"prov=@{prov}",
                     f"{base}/api/team/charts")
    assert status == 201
    assert curl("-F", f"chart=@{curl.file('legacy.tgz', loose)}",
                f"{base}/api/team/charts")[0] == 201
    # the same chart again as a form: 409, nothing fires
    assert curl("-F", f"chart=@{dashed_file}", f"{base}/api/team/charts")[0] == 409

    assert curl(f"{base}/team/charts/my-cool-chart-1.2.3-rc.1.tgz") == (200, dashed)
    assert curl(f"{base}/team/charts/my-cool-chart-1.2.3-rc.1.tgz.prov")[0] == 200
    assert curl(f"{base}/team/charts/legacy-app-v2.0.0.tgz") == (200, loose)
    assert curl("-X", "DELETE", f"{base}/api/team/charts/my-cool-chart/1.2.3-rc.1")[0] == 200

    receiver.wait_for(5)
    wait_recorded(sidecar, lambda e: len(e) >= 5)
    time.sleep(0.3)
    events = recorded(sidecar)
    summary = [(t, p["event_data"]["repository"]["repo_full_name"],
                [r["tag"] for r in p["event_data"]["resources"]]) for t, _, p in events]
    assert summary == [
        ("UPLOAD_CHART", "team/my-cool-chart", ["1.2.3-rc.1"]),
        ("UPLOAD_CHART", "team/legacy-app", ["v2.0.0"]),
        ("DOWNLOAD_CHART", "team/my-cool-chart", ["1.2.3-rc.1"]),
        ("DOWNLOAD_CHART", "team/legacy-app", ["v2.0.0"]),
        ("DELETE_CHART", "team/my-cool-chart", ["1.2.3-rc.1"]),
    ]
    upload = events[0][2]
    assert upload["event_data"]["custom_attributes"] == {"size": str(len(dashed))}
    assert upload["event_data"]["resources"][0]["resource_url"] == \
        f"http://{sidecar.netloc}/team/charts/my-cool-chart-1.2.3-rc.1.tgz"
    # what reached ChartMuseum is what curl sent: the multipart body, unchanged
    uploads = [r for r in museum.requests if r.method == "POST"]
    assert uploads[0].path == "/api/team/charts"
    assert uploads[0].headers["content-type"].startswith("multipart/form-data; boundary=")
    assert dashed in uploads[0].body
    assert [k for k in museum.stored("team")] == [("legacy-app", "v2.0.0")]


def test_chartmuseum_depth2_tenants_map_to_projects(sidecar_factory, museum_factory, receiver,
                                                    curl):
    museum = museum_factory(depth=2)
    sidecar = sidecar_factory(chart_rules(receiver.url, "org"), config=chart_config(museum))
    base = sidecar.url
    package = curl.file("app.tgz", make_chart("app", "0.3.0"))
    assert curl("--data-binary", f"@{package}", f"{base}/api/org/team/charts")[0] == 201
    assert curl("--data-binary", f"@{package}", f"{base}/api/other/team/charts")[0] == 201
    assert curl(f"{base}/org/team/charts/app-0.3.0.tgz")[0] == 200
    assert curl(f"{base}/org/team/index.yaml")[0] == 200

    (delivered_upload, delivered_download) = receiver.wait_for(2)
    events = wait_recorded(sidecar, lambda e: len(e) >= 3)
    # the undeclared project's upload is recorded for the record, and goes nowhere
    assert [(t, p) for t, p, _ in events] == [
        ("UPLOAD_CHART", "org"), ("UPLOAD_CHART", ""), ("DOWNLOAD_CHART", "org")]
    time.sleep(0.3)
    assert len(receiver.requests) == 2
    repository = delivered_upload.json()["event_data"]["repository"]
    assert repository == {"name": "team/app", "namespace": "org",
                          "repo_full_name": "org/team/app", "repo_type": "private"}
    assert ("app", "0.3.0") in museum.stored("org/team")
    assert ("app", "0.3.0") in museum.stored("other/team")


def test_harbor_legacy_chart_routes(sidecar_factory, museum_factory, receiver, curl):
    museum = museum_factory(depth=1)  # Harbor ran its ChartMuseum at depth 1
    sidecar = sidecar_factory(chart_rules(receiver.url, "proj"), config=chart_config(museum))
    base = sidecar.url
    app1 = make_chart("app", "1.0.0")
    other1, other2 = make_chart("other", "0.1.0"), make_chart("other", "0.2.0-beta.1")

    upload = f"{base}/api/chartrepo/proj/charts"
    assert curl("-u", "admin:Harbor12345", "-F", f"chart=@{curl.file('a.tgz', app1)}",
                upload)[0] == 201
    assert curl("--data-binary", f"@{curl.file('o1.tgz', other1)}",
                f"{base}/api/v2.0/chartrepo/proj/charts")[0] == 201
    assert curl("-F", f"chart=@{curl.file('o2.tgz', other2)}", upload)[0] == 201
    # Harbor's default-project upload goes to library (no policy there)
    assert curl("-F", f"chart=@{curl.file('l.tgz', make_chart('lib', '1.0.0'))}",
                f"{base}/api/chartrepo/charts")[0] == 201

    status, index = curl(f"{base}/chartrepo/proj/index.yaml")
    assert status == 200 and b"other-0.2.0-beta.1.tgz" in index
    status, listing = curl(f"{base}/api/chartrepo/proj/charts")
    assert status == 200 and set(json.loads(listing)) == {"app", "other"}
    status, versions = curl(f"{base}/api/v2.0/chartrepo/proj/charts/other")
    assert status == 200 and len(json.loads(versions)) == 2
    assert curl(f"{base}/api/chartrepo/proj/charts/app/1.0.0")[0] == 200

    assert curl(f"{base}/chartrepo/proj/charts/app-1.0.0.tgz") == (200, app1)
    assert curl("-X", "DELETE", f"{base}/api/chartrepo/proj/charts/app/1.0.0")[0] == 200
    # every version of a chart: ChartMuseum has no such route, the sidecar does it as Harbor did
    assert curl("-X", "DELETE", f"{base}/api/v2.0/chartrepo/proj/charts/other") == (200, b"")
    status, body = curl("-X", "DELETE", f"{base}/api/chartrepo/proj/charts/missing")
    assert status == 404 and b"chart not found" in body

    receiver.wait_for(6)
    wait_recorded(sidecar, lambda e: len(e) >= 7)
    time.sleep(0.3)
    events = recorded(sidecar)
    summary = [(t, proj, [r["tag"] for r in p["event_data"]["resources"]])
               for t, proj, p in events]
    assert summary == [
        ("UPLOAD_CHART", "proj", ["1.0.0"]),
        ("UPLOAD_CHART", "proj", ["0.1.0"]),
        ("UPLOAD_CHART", "proj", ["0.2.0-beta.1"]),
        ("UPLOAD_CHART", "", ["1.0.0"]),
        ("DOWNLOAD_CHART", "proj", ["1.0.0"]),
        ("DELETE_CHART", "proj", ["1.0.0"]),
        ("DELETE_CHART", "proj", ["0.1.0", "0.2.0-beta.1"]),
    ]
    first = events[0][2]
    assert first["operator"] == "admin"
    assert first["event_data"]["resources"][0]["resource_url"] == \
        f"http://{sidecar.netloc}/chartrepo/proj/charts/app-1.0.0.tgz"
    assert events[3][2]["event_data"]["repository"]["repo_full_name"] == "library/lib"
    whole = events[6][2]["event_data"]["resources"]
    assert [r["resource_url"] for r in whole] == [
        f"http://{sidecar.netloc}/chartrepo/proj/charts/other-0.1.0.tgz",
        f"http://{sidecar.netloc}/chartrepo/proj/charts/other-0.2.0-beta.1.tgz"]
    assert museum.stored("proj") == {}
    # the chart server only ever saw ChartMuseum depth-1 routes
    paths = {(r.method, r.path.split("?")[0]) for r in museum.requests}
    assert not any("chartrepo" in p for _, p in paths)
    assert ("POST", "/api/proj/charts") in paths
    assert ("POST", "/api/library/charts") in paths
    assert ("GET", "/proj/charts/app-1.0.0.tgz") in paths
    assert ("DELETE", "/api/proj/charts/other/0.2.0-beta.1") in paths


def test_upload_over_the_bound_is_proxied_without_an_event(sidecar_factory, museum_factory,
                                                           receiver, curl):
    museum = museum_factory(depth=0)
    sidecar = sidecar_factory(chart_rules(receiver.url, "library"),
                              config=chart_config(museum, chart_inspect_bytes=64 * 1024))
    # Chart.yaml behind 300 kB of incompressible files: past the 64 kB the sidecar reads
    big = make_chart("big", "1.0.0", before={"files/blob.bin": random_bytes(300 * 1024)})
    assert curl("--data-binary", f"@{curl.file('big.tgz', big)}",
                f"{sidecar.url}/api/charts") == (201, b'{"saved": true}')
    assert museum.stored()[("big", "1.0.0")].package == big  # unchanged, byte for byte
    small = make_chart("small", "1.0.0")
    assert curl("-F", f"chart=@{curl.file('small.tgz', small)}",
                f"{sidecar.url}/api/charts")[0] == 201

    (only,) = receiver.wait_for(1)
    assert only.json()["event_data"]["repository"]["name"] == "small"
    time.sleep(0.3)
    assert types(recorded(sidecar)) == ["UPLOAD_CHART"]
    deadline = time.monotonic() + 10
    while "no Chart.yaml in the first 65536 bytes" not in sidecar.log():
        assert time.monotonic() < deadline, sidecar.log()[-3000:]
        time.sleep(0.1)
    assert "WARNING" in sidecar.log() and "no UPLOAD_CHART event" in sidecar.log()


def test_chart_upstream_down_answers_502_in_chartmuseums_shape(sidecar_factory, museum_factory,
                                                              receiver, curl):
    museum = museum_factory(depth=0)
    sidecar = sidecar_factory(chart_rules(receiver.url, "library"), config=chart_config(museum))
    museum.stop()
    status, body = curl(f"{sidecar.url}/index.yaml")
    assert status == 502 and "chart upstream unavailable" in json.loads(body)["error"]
    # the registry is unaffected
    assert curl(f"{sidecar.url}/v2/")[0] == 200


def oras_helm_push(ref: str, name: str, version: str, workdir: Path):
    """Push a chart the way `helm push` lays it out: Helm config, chart layer, annotations."""
    workdir.mkdir(parents=True, exist_ok=True)
    chart = workdir / f"{name}-{version}.tgz"
    chart.write_bytes(make_chart(name, version))
    config = workdir / "config.json"
    config.write_bytes(helm_config(name, version))
    client = clients.oras_client()
    response = client.push(
        target=ref, files=[f"{chart}:{HELM_CHART}"], manifest_config=f"{config}:{HELM_CONFIG}",
        manifest_annotations={"org.opencontainers.image.title": name,
                              "org.opencontainers.image.version": version},
        disable_path_validation=True, quiet=True)
    assert response.status_code == 201, response.text
    return client, chart


def test_oci_chart_fires_artifact_and_chart_events(sidecar_factory, receiver_factory, image,
                                                   tmp_path):
    charts_hook, images_hook = receiver_factory(), receiver_factory()
    rules = {"projects": [{"name": "proj", "webhooks": [
        {"name": "charts", "event_types": list(CHART_EVENTS),
         "targets": [{"type": "http", "address": charts_hook.url}]},
        {"name": "artifacts", "event_types": ["PUSH_ARTIFACT", "PULL_ARTIFACT",
                                              "DELETE_ARTIFACT"],
         "targets": [{"type": "http", "address": images_hook.url}]},
    ]}]}
    sidecar = sidecar_factory(rules)  # no chart upstream needed for OCI charts
    ref = f"{sidecar.netloc}/proj/charts/mychart:0.1.0"
    client, chart = oras_helm_push(ref, "mychart", "0.1.0", tmp_path / "oras")
    pulled = client.pull(target=ref, outdir=str(tmp_path / "pulled"))
    assert Path(pulled[0]).read_bytes() == chart.read_bytes()
    layout, _ = image("v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1")  # an image: no chart event
    clients.delete(ref)

    events = wait_recorded(sidecar, lambda e: "DELETE_CHART" in types(e))
    counts = {t: types(events).count(t) for t in set(types(events))}
    assert counts["UPLOAD_CHART"] == counts["DELETE_CHART"] == counts["DELETE_ARTIFACT"] == 1
    assert counts["PUSH_ARTIFACT"] == 2
    assert counts["DOWNLOAD_CHART"] == counts["PULL_ARTIFACT"] >= 1  # skopeo delete GETs too
    chart_count = 2 + counts["DOWNLOAD_CHART"]
    got = [r.json() for r in charts_hook.wait_for(chart_count)]
    images_hook.wait_for(3 + counts["PULL_ARTIFACT"])
    time.sleep(0.3)
    assert len(charts_hook.requests) == chart_count
    assert {p["type"] for p in got} == set(CHART_EVENTS)
    upload = next(p for p in got if p["type"] == "UPLOAD_CHART")
    resource = upload["event_data"]["resources"][0]
    assert resource["tag"] == "0.1.0"
    assert resource["digest"].startswith("sha256:")
    assert resource["resource_url"] == f"oci://{sidecar.netloc}/proj/charts/mychart:0.1.0"
    assert upload["event_data"]["repository"]["repo_full_name"] == "proj/charts/mychart"
    assert upload["event_data"]["custom_attributes"] == {"size": str(chart.stat().st_size)}
    pushed = [r.json() for r in images_hook.requests if r.json()["type"] == "PUSH_ARTIFACT"]
    assert {p["event_data"]["repository"]["name"] for p in pushed} == {"charts/mychart", "app"}
