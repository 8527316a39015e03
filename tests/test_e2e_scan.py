"""Scan on push as a user sees it: skopeo pushes through `sidecar serve`, the sidecar drives a
spec-conformant scanner adapter that really pulls from the registry, and a real receiver gets
Harbor's SCANNING_* events.

Every request the sidecar sent the adapter is checked against the spec's JSON Schemas (strict)
by the `adapter` fixture, and every answer the adapter gave too.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from urllib.parse import quote

import pytest
import requests

from tests.conftest import webhook_rules
from tests.consumer_rules import assert_harbor_compatible
from tests.scanner_spec import assert_valid
from tests.support import clients
from tests.support.auth import basic
from tests.support.auth import htpasswd_file
from tests.support.registry import Registry
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
from tests.support.sidecar import sidecar_command
from tests.support.tokens import Account

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


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        time.sleep(0.05)


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

    # visible: status (JSON and HTML), the project's Webhooks page, the metrics
    [shown] = sidecar.status()["scans"]["recent"]
    assert (shown["artifact"], shown["status"], shown["severity"], shown["total"]) == \
        ("proj/app:v1", "succeeded", expected["severity"], expected["total"])
    page = requests.get(f"{sidecar.url}/sidecar/status?format=html", timeout=10,
                        headers=sidecar.admin_headers()).text
    assert "<h2 id=\"scans\">Scans</h2>" in page and "<code>proj/app:v1</code>" in page
    text = subprocess.run([*sidecar_command(), "status", "--database", sidecar.database],
                          capture_output=True, text=True, timeout=60).stdout
    assert "SCANS  succeeded 1" in text
    project_id = api(sidecar, "GET", "/projects/proj").json()["project_id"]
    ui = requests.get(f"{sidecar.url}/sidecar/ui/projects/{project_id}/webhooks", auth=ADMIN,
                      timeout=10).text
    assert "<code>proj/app:v1</code>" in ui and f"{expected['total']} vulnerabilities" in ui
    metrics = requests.get(f"{sidecar.url}/sidecar/metrics", timeout=10).text
    assert 'sidecar_scans_total{outcome="completed"} 1.0' in metrics
    assert 'sidecar_scan_jobs{status="succeeded"} 1.0' in metrics


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


REGISTRY_PASSWORD = "reg-pw-5ca9e"


@pytest.fixture
def private_registry(tmp_path):
    """A registry with htpasswd auth (user `ci`, and the sidecar's own `scanbot`)."""
    htpasswd = htpasswd_file(tmp_path / "htpasswd", {"ci": "ci-pw", "scanbot": REGISTRY_PASSWORD})
    reg = Registry(tmp_path / "private", htpasswd=htpasswd).start()
    yield reg
    reg.stop()


def test_a_private_registry_scanned_with_the_sidecars_credential(
        sidecar_factory, receiver, adapter, image, private_registry):
    scanner = adapter()
    credential = {"username": "scanbot", "password": "${SCANBOT_PASSWORD}"}
    sidecar = sidecar_factory(scan_rules(receiver.url, scanner.url),
                              upstream=private_registry.url,
                              config=scan_config(registry_credential=credential),
                              env={"SCANBOT_PASSWORD": REGISTRY_PASSWORD})
    layout, digest = image(tag="v1", layers=2, layer_size=4096)
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1", creds="ci:ci-pw")

    [hook] = receiver.wait_for(1, timeout=60)
    payload = hook.json()
    assert payload["type"] == "SCANNING_COMPLETED" and payload["operator"] == "ci"
    expected = expected_counts(layers_of(layout, digest))
    assert only_overview(payload)["summary"]["total"] == expected["total"]
    # the adapter pulled with the sidecar's credential, as Basic
    [request] = submissions(scanner)
    assert request["registry"] == {"url": private_registry.url,
                                   "authorization": basic("scanbot", REGISTRY_PASSWORD)}
    assert REGISTRY_PASSWORD not in sidecar.log()


def test_a_wrong_registry_credential_fails_the_scan_with_the_reason(
        sidecar_factory, receiver, adapter, image, private_registry):
    scanner = adapter()
    credential = {"username": "scanbot", "password": "not-the-password"}
    sidecar = sidecar_factory(scan_rules(receiver.url, scanner.url),
                              upstream=private_registry.url,
                              config=scan_config(registry_credential=credential))
    layout, digest = image(tag="v1", layers=1, layer_size=4096)
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1", creds="ci:ci-pw")

    [hook] = receiver.wait_for(1, timeout=60)
    payload = hook.json()
    assert_harbor_compatible(payload)
    assert payload["type"] == "SCANNING_FAILED" and payload["operator"] == "ci"
    overview = only_overview(payload)
    assert (overview["scan_status"], overview["severity"]) == ("Error", "")
    assert "summary" not in overview and "scanner" not in overview
    [job] = scan_jobs(sidecar)
    assert job["status"] == "failed"
    assert "the registry refused the sidecar's registry_credential" in job["last_error"]
    assert submissions(scanner) == []  # nothing was handed to the adapter
    assert "not-the-password" not in job["last_error"] + sidecar.log()
    page = requests.get(f"{sidecar.url}/sidecar/status?format=html", timeout=10,
                        headers=sidecar.admin_headers()).text
    assert "the registry refused the sidecar&#39;s registry_credential" in page
    assert "not-the-password" not in page


@pytest.mark.parametrize(("behaviour", "reason"), [
    ({"fail": "vulnerability database is locked"},
     "the adapter answered HTTP 500 to the report request: vulnerability database is locked"),
    ({"refuse": 422}, "the adapter answered HTTP 422 to the scan request: invalid registry_url"),
    ({"body": "garbage"}, "the report does not parse: the report is not JSON"),
    ({"body": "wrong_type"}, "the adapter sent the report as 'application/json', not the "
                             "requested 'application/vnd.security.vulnerability.report; "
                             "version=1.1'"),
    ({"body": "unparseable"}, "the report does not parse: vulnerabilities must be a list"),
    ({"body": "huge", "huge_bytes": 80 << 20}, "the report is larger than the 67108864 bytes "
                                               "allowed"),
    ({"redirect_loop": True}, "the adapter redirected the report request to"),
])
def test_an_adapter_that_errs_or_answers_badly_fails_the_scan_with_a_clear_reason(
        sidecar_factory, receiver, adapter, image, behaviour, reason):
    scanner = adapter(**behaviour)
    sidecar = sidecar_factory(scan_rules(receiver.url, scanner.url), config=scan_config())
    layout, digest = image(tag="v1", layers=1, layer_size=4096)
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1")

    [hook] = receiver.wait_for(1, timeout=90)
    payload = hook.json()
    assert payload["type"] == "SCANNING_FAILED"
    assert payload["event_data"]["resources"][0]["digest"] == digest
    [job] = scan_jobs(sidecar)
    assert job["status"] == "failed" and reason in job["last_error"]
    [shown] = sidecar.status()["scans"]["failed"]
    assert shown["reason"] == job["last_error"] and shown["digest"] == digest
    assert len(submissions(scanner)) <= 1  # never submitted twice
    # the proxy carried on meanwhile, and still does
    clients.inspect(f"{sidecar.netloc}/proj/app:v1")


def test_a_scan_past_its_deadline_fails(sidecar_factory, receiver, adapter, image):
    scanner = adapter(hang=True)
    sidecar = sidecar_factory(scan_rules(receiver.url, scanner.url),
                              config=scan_config(timeout=3))
    layout, _ = image(tag="v1", layers=1, layer_size=4096)
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1")

    [hook] = receiver.wait_for(1, timeout=60)
    assert hook.json()["type"] == "SCANNING_FAILED"
    [job] = scan_jobs(sidecar)
    assert job["last_error"] == ("no report before the scan's deadline: the adapter kept "
                                 "answering 302 (report not ready)")
    assert len(submissions(scanner)) == 1


def test_a_sidecar_killed_mid_scan_polls_the_scan_after_restart_and_reports_it_once(
        sidecar_factory, receiver, adapter, image):
    scanner = adapter(hang=True)
    rules = scan_rules(receiver.url, scanner.url)
    sidecar = sidecar_factory(rules, config=scan_config())
    layout, digest = image(tag="v1", layers=3, layer_size=4096)
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1")
    scanner.wait_scans(1)
    wait_until(lambda: any(s.path.endswith("/report") for s in scanner.seen))  # polling

    sidecar.kill()  # kill -9, master and workers: the job's claim is left behind
    scanner.behave(hang=False)
    sidecar.start()  # same store, same port

    [hook] = receiver.wait_for(1, timeout=60)
    payload = hook.json()
    assert payload["type"] == "SCANNING_COMPLETED"
    expected = expected_counts(layers_of(layout, digest))
    assert only_overview(payload)["summary"]["total"] == expected["total"]
    assert len(submissions(scanner)) == 1  # polled after the restart, not submitted again
    [job] = scan_jobs(sidecar)
    assert job["status"] == "succeeded" and job["attempts"] == 2  # the lease that ran out
    assert event_types(sidecar).count("SCANNING_COMPLETED") == 1


# -- Harbor's scan API and the CLI ---------------------------------------------------------

ADMIN = ("admin", "Harbor12345")


def api(sidecar, method: str, path: str, **kwargs) -> requests.Response:
    kwargs.setdefault("auth", ADMIN)
    return requests.request(method, f"{sidecar.url}/api/v2.0{path}", timeout=30, **kwargs)


def artifact_path(project: str, repository: str, reference: str) -> str:
    """Harbor's path, the repository name URL-encoded twice as Harbor's clients send it."""
    name = quote(quote(repository, safe=""), safe="")
    return f"/projects/{project}/repositories/{name}/artifacts/{reference}"


def test_the_scan_api_scans_stops_and_answers_the_overview(sidecar_factory, receiver, adapter,
                                                           image):
    scanner = adapter(hang=True)
    sidecar = sidecar_factory(scan_rules(receiver.url, scanner.url, auto_scan=False),
                              config=scan_config())
    layout, digest = image(tag="v1", layers=2, layer_size=4096)
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/team/app:v1")
    path = artifact_path("proj", "team/app", "v1")

    # never scanned (no auto_scan here): no overview
    answer = api(sidecar, "GET", path, params={"with_scan_overview": "true"})
    assert answer.status_code == 200
    assert answer.json() == {
        "type": "IMAGE", "media_type": "application/vnd.oci.image.config.v1+json",
        "manifest_media_type": "application/vnd.oci.image.manifest.v1+json",
        "project_id": answer.json()["project_id"], "digest": digest,
        "size": answer.json()["size"]}
    assert api(sidecar, "POST", f"{path}/scan/stop").json() == {"errors": [{
        "code": "BAD_REQUEST", "message": f"no scan job for artifact digest={digest}"}]}

    assert api(sidecar, "POST", f"{path}/scan").status_code == 202
    wait_until(lambda: len(submissions(scanner)) == 1)
    # a second scan while one runs: Harbor's 409
    again = api(sidecar, "POST", f"{path}/scan")
    assert again.status_code == 409
    assert again.json()["errors"][0]["message"] in ("a previous scan process is Running",
                                                    "a previous scan process is Pending")
    running = api(sidecar, "GET", path, params={"with_scan_overview": "True"}).json()
    [(mime, summary)] = running["scan_overview"].items()
    assert mime == GENERIC_REPORT and summary["scan_status"] == "Running"

    assert api(sidecar, "POST", f"{path}/scan/stop").status_code == 202
    [hook] = receiver.wait_for(1, timeout=60)
    payload = hook.json()
    assert_harbor_compatible(payload)
    assert (payload["type"], payload["operator"]) == ("SCANNING_STOPPED", "admin")
    assert only_overview(payload)["scan_status"] == "Stopped"
    assert payload["event_data"]["resources"][0]["resource_url"] == \
        f"{sidecar.netloc}/proj/team/app:v1"

    # scanned again, to the end, by digest this time (once-encoded names work too)
    scanner.behave(hang=False)
    by_digest = f"/projects/proj/repositories/team%2Fapp/artifacts/{digest}"
    assert api(sidecar, "POST", f"{by_digest}/scan").status_code == 202
    hooks = receiver.wait_for(2, timeout=60)
    assert hooks[1].json()["type"] == "SCANNING_COMPLETED"
    assert "tag" not in hooks[1].json()["event_data"]["resources"][0]
    done = api(sidecar, "GET", path, params={"with_scan_overview": "1"}).json()
    assert done["scan_overview"] == {GENERIC_REPORT: only_overview(hooks[1].json())}
    # strconv.ParseBool spellings only
    refused = api(sidecar, "GET", path, params={"with_scan_overview": "yes"})
    assert refused.status_code == 422


def test_the_scan_api_refuses_what_harbor_refuses(sidecar_factory, receiver, adapter, image):
    scanner = adapter()
    rules = scan_rules(receiver.url, scanner.url, auto_scan=False)
    sidecar = sidecar_factory(rules, config=scan_config())
    layout, _ = image(tag="v1", layers=1, layer_size=4096)
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1")

    assert api(sidecar, "POST", artifact_path("proj", "app", "v1") + "/scan",
               auth=("admin", "wrong")).status_code == 401
    missing = api(sidecar, "POST", artifact_path("proj", "app", "nope") + "/scan")
    assert (missing.status_code, missing.json()["errors"][0]["message"]) == \
        (404, "artifact proj/app:nope not found")
    unknown = api(sidecar, "GET", artifact_path("nothere", "app", "v1"))
    assert unknown.status_code == 404
    sbom = api(sidecar, "POST", artifact_path("proj", "app", "v1") + "/scan",
               json={"scan_type": "sbom"})
    assert sbom.status_code == 400

    # a sidecar without scanners: Harbor's 412
    plain = sidecar_factory(webhook_rules(receiver.url, auth_header=None), config=scan_config())
    clients.push(layout, "v1", f"{plain.netloc}/proj/app:v1")
    none = api(plain, "POST", artifact_path("proj", "app", "v1") + "/scan")
    assert (none.status_code, none.json()["errors"][0]["message"]) == \
        (412, "no available scanner for project: proj")


def test_sidecar_scan_waits_for_the_outcome(sidecar_factory, receiver, adapter, image,
                                            registry):
    scanner = adapter()
    sidecar = sidecar_factory(scan_rules(receiver.url, scanner.url, auto_scan=False),
                              config=scan_config())
    layout, digest = image(tag="v1", layers=3, layer_size=4096)
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1")
    expected = expected_counts(layers_of(layout, digest))

    done = clients.run([*sidecar_command(), "scan", "proj/app:v1", "--wait",
                        "--config", str(sidecar.config_path), "--database", sidecar.database,
                        "--upstream", registry.url], timeout=120)
    assert f"{digest}: {expected['severity']} ({expected['total']} vulnerabilities" in done.stdout
    [hook] = receiver.wait_for(1, timeout=30)
    assert (hook.json()["type"], hook.json()["operator"]) == ("SCANNING_COMPLETED", "admin")

    refused = clients.run([*sidecar_command(), "scan", "proj/app:nope", "--database",
                           sidecar.database, "--upstream", registry.url], check=False)
    assert refused.returncode == 2 and "artifact proj/app:nope not found" in refused.stderr
    elsewhere = clients.run([*sidecar_command(), "scan", "other/app:v1", "--database",
                             sidecar.database, "--upstream", registry.url], check=False)
    assert elsewhere.returncode == 2 and "project other not found" in elsewhere.stderr
    bad = clients.run([*sidecar_command(), "scan", "app", "--database", sidecar.database],
                      check=False)
    assert bad.returncode == 2 and "is not PROJECT/REPO:TAG" in bad.stderr


def test_a_target_asking_for_harbor_2_11_gets_event_data_scan(sidecar_factory,
                                                              receiver_factory, adapter, image):
    plain, newer = receiver_factory(), receiver_factory()
    scanner = adapter()
    rules = scan_rules(plain.url, scanner.url)
    rules["projects"][0]["webhooks"][0]["targets"].append(
        {"type": "http", "address": newer.url, "payload_version": "2.11"})
    sidecar = sidecar_factory(rules, config=scan_config())
    layout, _ = image(tag="v1", layers=1, layer_size=4096)
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1")

    [old] = plain.wait_for(1, timeout=60)
    [new] = newer.wait_for(1, timeout=60)
    assert "scan" not in old.json()["event_data"]
    assert new.json()["event_data"]["scan"] == {"scan_type": "vulnerability"}
    assert {k: v for k, v in new.json()["event_data"].items() if k != "scan"} == \
        old.json()["event_data"]


# -- a registry with a token service (`auth: token`) ------------------------------------

def _token_accounts() -> dict:
    return {"ci": Account("ci-pw", {"repository:proj/*": ["pull", "push"]}),
            "scanbot": Account(REGISTRY_PASSWORD, {"repository:proj/*": ["pull"]})}


@pytest.mark.parametrize("asks", ["Basic", "Bearer"])
def test_a_token_registry_scanned_with_basic_or_a_pull_token_as_the_adapter_asks(
        sidecar_factory, receiver, adapter, image, token_registry_factory, asks):
    reg = token_registry_factory(_token_accounts())
    scanner = adapter(registry_auth=asks if asks == "Bearer" else None)
    sidecar = sidecar_factory(scan_rules(receiver.url, scanner.url), upstream=reg.url,
                              config=scan_config(registry_credential={
                                  "username": "scanbot", "password": REGISTRY_PASSWORD}))
    layout, digest = image(tag="v1", layers=2, layer_size=4096)
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1", creds="ci:ci-pw")

    [hook] = receiver.wait_for(1, timeout=60)
    assert hook.json()["type"] == "SCANNING_COMPLETED"
    [request] = submissions(scanner)
    authorization = request["registry"]["authorization"]
    if asks == "Basic":  # the adapter does the token flow itself with the credential
        assert authorization == basic("scanbot", REGISTRY_PASSWORD)
    else:  # Harbor hands a token scoped to pull the one repository
        scheme, _, token = authorization.partition(" ")
        assert scheme == "Bearer"
        granted = [i for i in reg.tokens.issued_to("scanbot") if token == i.token]
        assert [a for i in granted for a in i.access] == [
            {"type": "repository", "name": "proj/app", "actions": ["pull"]}]
    for secret in reg.tokens.secrets():
        assert secret not in sidecar.log()


def test_two_sidecars_on_postgresql_scan_a_push_once(postgres_database, sidecar_factory,
                                                     receiver, adapter, image):
    """Both sidecars run scan jobs from one PostgreSQL store: the claim gives the scan to one,
    and the receiver hears of it once."""
    scanner = adapter()
    rules = scan_rules(receiver.url, scanner.url)
    first = sidecar_factory(rules, config=scan_config(), database=postgres_database, workers=2)
    sidecar_factory(rules, config=scan_config(), database=postgres_database, workers=2)
    layout, digest = image(tag="v1", layers=2, layer_size=4096)
    clients.push(layout, "v1", f"{first.netloc}/proj/app:v1")

    [hook] = receiver.wait_for(1, timeout=60)
    assert hook.json()["type"] == "SCANNING_COMPLETED"
    assert hook.json()["event_data"]["resources"][0]["digest"] == digest
    assert len(submissions(scanner)) == 1
    shown = first.wait_status(lambda s: s["scans"]["counts"].get("succeeded") == 1)
    assert [s["status"] for s in shown["scans"]["recent"]] == ["succeeded"]


def test_harbors_python_client_scans_and_reads_the_overview(sidecar_factory, receiver,
                                                            adapter, image):
    """harborapi (pydantic models, validation on) against the scan API, as a script would."""
    harborapi = pytest.importorskip("harborapi")
    scanner = adapter()
    sidecar = sidecar_factory(scan_rules(receiver.url, scanner.url, auto_scan=False),
                              config=scan_config())
    layout, digest = image(tag="v1", layers=2, layer_size=4096)
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/team/app:v1")
    expected = expected_counts(layers_of(layout, digest))

    async def script():
        client = harborapi.HarborAsyncClient(url=f"{sidecar.url}/api/v2.0", username="admin",
                                             secret="Harbor12345", validate=True)
        await client.scan_artifact("proj", "team/app", "v1")
        await asyncio.to_thread(receiver.wait_for, 1, 60)
        artifact = await client.get_artifact("proj", "team/app", "v1", with_scan_overview=True)
        return artifact

    artifact = asyncio.run(script())
    assert artifact.digest == digest
    summary = artifact.scan_overview.root[GENERIC_REPORT]
    assert (summary.scan_status, summary.summary.total) == ("Success", expected["total"])


def test_scanner_registrations_read_through_harbors_api_and_refuse_changes(
        sidecar_factory, receiver, adapter):
    """harborapi reads the file's scanners, their adapter's metadata and a project's scanner;
    the credential never comes back, and changes answer 403 (the file declares them)."""
    harborapi = pytest.importorskip("harborapi")
    scanner = adapter()
    sidecar = sidecar_factory(scan_rules(receiver.url, scanner.url, auth="Bearer",
                                         access_credential="adapter-secret-token"),
                              config=scan_config())

    async def script():
        client = harborapi.HarborAsyncClient(url=f"{sidecar.url}/api/v2.0", username="admin",
                                             secret="Harbor12345", validate=True)
        listed = await client.get_scanners()
        one = await client.get_scanner(listed[0].uuid)
        metadata = await client.get_scanner_metadata(one.uuid)
        chosen = await client.get_project_scanner("proj")
        return listed, one, metadata, chosen

    listed, one, metadata, chosen = asyncio.run(script())
    assert [(s.name, str(s.url).rstrip("/"), s.is_default, s.auth) for s in listed] == \
        [("sim", scanner.url, True, "Bearer")]
    assert one.uuid == chosen.uuid == listed[0].uuid
    assert metadata.scanner.name == SCANNER["name"]
    assert metadata.capabilities and metadata.capabilities[0].consumes_mime_types

    raw = api(sidecar, "GET", "/scanners")
    assert raw.headers["X-Total-Count"] == "1"
    assert "adapter-secret-token" not in raw.text
    assert api(sidecar, "GET", "/scanners?name=nomatch").json() == []
    assert api(sidecar, "GET", "/scanners/not-a-uuid").status_code == 404
    for method, path in (("POST", "/scanners"), ("PUT", f"/scanners/{one.uuid}"),
                         ("DELETE", f"/scanners/{one.uuid}"),
                         ("PATCH", f"/scanners/{one.uuid}"),
                         ("PUT", "/projects/proj/scanner")):
        refused = api(sidecar, method, path, json={"is_default": True, "uuid": one.uuid})
        assert refused.status_code == 403, (method, path)
        assert "rules file" in refused.json()["errors"][0]["message"]
    assert api(sidecar, "GET", f"/scanners/{one.uuid}").json()["name"] == "sim"
