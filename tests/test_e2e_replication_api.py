"""Replication through Harbor's API, /sidecar/status and the web UI, on a real `sidecar
serve` replicating to a real registry (htpasswd): registries and policies as Harbor answers
them (secrets masked, read-only), a manual run started and followed through executions, tasks
and logs, a run stopped mid-copy (REPLICATION Stopped), and no secret anywhere.
"""

from __future__ import annotations

import re
import secrets
import uuid

import pytest
import requests

from tests.support import clients
from tests.support.auth import htpasswd_file
from tests.support.browser import chromium_context
from tests.support.ports import poll
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

PASSWORD = "repl-Admin-pw-1234"
DR_PASSWORD = f"dr-{secrets.token_hex(8)}"
STRFMT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
JOBS = {"harbor_admin_password": PASSWORD,
        "sidecar": {"jobs": {"backoff_seconds": 0.2, "backoff_max_seconds": 0.5,
                             "lease_seconds": 5}}}


@pytest.fixture(scope="module")
def dest(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dest-api")
    registry = Registry(workdir, htpasswd=htpasswd_file(workdir / "htpasswd",
                                                        {"robot": DR_PASSWORD})).start()
    yield registry
    registry.stop()


def rules(dest_url: str, project: str, receiver_url: str) -> dict:
    return {
        "projects": [{"name": project, "webhooks": [{
            "name": "repl", "event_types": ["REPLICATION"],
            "targets": [{"type": "http", "address": receiver_url}]}]}],
        "registries": [{"name": "dr", "url": dest_url, "description": "DR site",
                        "credential": {"access_key": "robot", "access_secret": "${DR_SECRET}"}},
                       {"name": "nowhere", "url": "http://127.0.0.1:9"}],
        "replication": [
            {"name": "nightly", "description": "manual copy", "dest_registry": "dr",
             "filters": [{"type": "name", "value": f"{project}/**"}],
             "dest_namespace": "copies", "dest_namespace_replace_count": 0},
            {"name": "slow", "dest_registry": "dr", "speed": 100,
             "filters": [{"type": "name", "value": f"{project}/big"}]},
            {"name": "off", "dest_registry": "nowhere", "enabled": False},
        ],
    }


class Api:
    def __init__(self, sidecar):
        self.base = f"{sidecar.url}/api/v2.0"

    def __call__(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, self.base + path, auth=("admin", PASSWORD), timeout=30,
                                headers={"Connection": "close"}, **kwargs)


@pytest.fixture
def running(sidecar_factory, receiver, dest):
    project = f"api{uuid.uuid4().hex[:8]}"
    sidecar = sidecar_factory(rules(dest.url, project, receiver.url), config=JOBS,
                              env={"DR_SECRET": DR_PASSWORD})
    return sidecar, Api(sidecar), project


def test_registries_and_policies_as_harbor_answers_them(running, dest):
    sidecar, api, _ = running
    assert requests.get(f"{sidecar.url}/api/v2.0/registries", timeout=10).status_code == 401
    answer = api("GET", "/registries")
    assert answer.status_code == 200 and answer.headers["X-Total-Count"] == "2"
    dr, nowhere = answer.json()
    assert dr == {"id": dr["id"], "url": dest.url, "name": "dr",
                  "credential": {"type": "basic", "access_key": "robot",
                                 "access_secret": "*****"},
                  "type": "docker-registry", "description": "DR site", "status": "healthy",
                  "creation_time": dr["creation_time"], "update_time": dr["update_time"]}
    assert STRFMT.fullmatch(dr["creation_time"])
    assert nowhere["status"] == "unhealthy" and nowhere["credential"] == {}
    assert api("GET", f"/registries/{dr['id']}").json()["name"] == "dr"
    assert api("GET", "/registries/999").status_code == 404
    assert api("GET", "/registries", params={"name": "now"}).json()[0]["name"] == "nowhere"

    policies = api("GET", "/replication/policies").json()
    assert [p["name"] for p in policies] == ["off", "slow", "nightly"]  # newest first
    nightly = api("GET", f"/replication/policies/{policies[2]['id']}").json()
    assert nightly["src_registry"]["name"] == "Local" and nightly["src_registry"]["id"] == 0
    assert nightly["dest_registry"]["name"] == "dr"
    assert nightly["dest_registry"]["credential"]["access_secret"] == "*****"
    assert nightly["trigger"] == {"type": "manual", "trigger_settings": {}}
    assert (nightly["dest_namespace"], nightly["dest_namespace_replace_count"]) == ("copies", 0)
    assert nightly["override"] is True and nightly["enabled"] is True
    assert nightly["speed"] == 0 and nightly["copy_by_chunk"] is False
    assert "replicate_deletion" not in nightly  # false: omitempty, as go-swagger writes it
    assert "enabled" not in policies[0]  # a disabled policy: false is left out

    for method, path in (("POST", "/registries"), ("DELETE", f"/registries/{dr['id']}"),
                         ("POST", "/replication/policies"),
                         ("PUT", f"/replication/policies/{nightly['id']}")):
        refused = api(method, path, json={})
        assert refused.status_code == 403, (method, path)
        assert "rules file" in refused.json()["errors"][0]["message"]
    for answer in (api("GET", "/registries"), api("GET", "/replication/policies")):
        assert DR_PASSWORD not in answer.text


def test_a_manual_run_through_the_api(running, receiver, dest, image):
    sidecar, api, project = running
    layout, digest = image(tag="v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/{project}/app:v1")
    policy = next(p for p in api("GET", "/replication/policies").json()
                  if p["name"] == "nightly")

    assert api("POST", "/replication/executions", json={"policy_id": 999}).status_code == 404
    off = next(p for p in api("GET", "/replication/policies").json() if p["name"] == "off")
    refused = api("POST", "/replication/executions", json={"policy_id": off["id"]})
    assert refused.status_code == 412
    assert refused.json()["errors"][0]["message"] == f"the policy {off['id']} is disabled"
    assert api("POST", "/replication/executions", json={}).status_code == 422

    started = api("POST", "/replication/executions", json={"policy_id": policy["id"]})
    assert started.status_code == 201
    location = started.headers["Location"]
    execution_id = int(location.rsplit("/", 1)[1])
    assert location == f"/api/v2.0/replication/executions/{execution_id}"
    done = poll(lambda: api("GET", f"/replication/executions/{execution_id}").json(),
                lambda e: e["status"] != "InProgress", timeout=30)
    assert done["status"] == "Succeed", done
    assert (done["policy_id"], done["trigger"], done["total"], done["succeed"]) == (
        policy["id"], "manual", 1, 1)
    assert done["status_text"] == "" and STRFMT.fullmatch(done["end_time"])
    target = f"copies/{project}/app"
    assert clients.inspect(f"{dest.netloc}/{target}:v1",
                           creds=f"robot:{DR_PASSWORD}")["Digest"] == digest

    listed = api("GET", "/replication/executions", params={"policy_id": policy["id"],
                                                           "status": "Succeed"})
    assert [e["id"] for e in listed.json()] == [execution_id]
    assert api("GET", "/replication/executions", params={"trigger": "event_based"}).json() \
        == []
    [task] = api("GET", f"/replication/executions/{execution_id}/tasks").json()
    assert task["status"] == "Succeed" and task["operation"] == "copy"
    assert task["src_resource"] == f"{project}/app [1 item(s) in total]"
    assert task["dst_resource"] == f"{target} [1 item(s) in total]"
    assert task["resource_type"] == "artifact" and task["job_id"] == str(task["id"])
    log = api("GET", f"/replication/executions/{execution_id}/tasks/{task['id']}/log")
    assert log.headers["Content-Type"].startswith("text/plain")
    assert f"{target}:v1 copied" in log.text and "bytes copied" in log.text
    missing = api("GET", f"/replication/executions/{execution_id}/tasks/99999/log")
    assert missing.json()["errors"][0]["message"] == \
        f"execution {execution_id} contains no task with ID 99999"
    assert api("GET", "/replication/executions/99999").status_code == 404

    status = requests.get(f"{sidecar.url}/sidecar/status", timeout=10,
                          headers=sidecar.admin_headers()).json()["replication"]
    assert status["tasks"]["Success"] == 1
    assert status["recent_executions"][0]["bytes"] > 0
    assert {r["name"]: r["credential"] for r in status["registries"]} == {
        "dr": "configured", "nowhere": "anonymous"}
    page = requests.get(f"{sidecar.url}/sidecar/status?format=html", timeout=10,
                        headers=sidecar.admin_headers()).text
    assert "Replication" in page and "nightly" in page
    for text in (page, str(status), sidecar.log()):
        assert DR_PASSWORD not in text
    metrics = requests.get(f"{sidecar.url}/sidecar/metrics", timeout=10).text
    assert 'sidecar_replication_tasks_total{outcome="succeeded"} 1.0' in metrics
    assert re.search(r"^sidecar_replication_bytes_total [1-9]", metrics, re.M)


def test_a_stopped_run_stops_its_task_and_says_so(running, receiver, image):
    sidecar, api, project = running
    layout, _ = image(tag="v1", layers=2, layer_size=400 * 1024)
    clients.push(layout, "v1", f"{sidecar.netloc}/{project}/big:v1")
    slow = next(p for p in api("GET", "/replication/policies").json() if p["name"] == "slow")
    started = api("POST", "/replication/executions", json={"policy_id": slow["id"]})
    execution_id = int(started.headers["Location"].rsplit("/", 1)[1])
    poll(lambda: api("GET", f"/replication/executions/{execution_id}/tasks").json(),
         lambda tasks: tasks and tasks[0]["status"] == "InProgress", timeout=30)
    receiver.wait_for(1)  # Running

    assert api("PUT", f"/replication/executions/{execution_id}").status_code == 200
    stopped = poll(lambda: api("GET", f"/replication/executions/{execution_id}").json(),
                   lambda e: e["status"] != "InProgress", timeout=30)
    assert stopped["status"] == "Stopped" and stopped["stopped"] == 1
    events = [r.json()["event_data"]["replication"] for r in receiver.wait_for(2)]
    assert [e["job_status"] for e in events] == ["Running", "Stopped"]
    assert events[1]["trigger_type"] == "MANUAL"


def test_the_replications_page(running, tmp_path, image):
    sidecar, api, project = running
    layout, _ = image(tag="v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/{project}/app:v1")
    with chromium_context(tmp_path / "profile") as context:
        page = context.pages[0] if context.pages else context.new_page()
        ui = f"{sidecar.url}/sidecar/ui"
        page.goto(f"{ui}/")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.click("text=Replications")
        assert page.url == f"{ui}/replications"
        rows = page.locator("tr.replication-policy")
        assert rows.count() == 3
        nightly = rows.filter(has_text="nightly")
        assert "manual copy" in nightly.inner_text()
        assert nightly.locator("button.replicate").count() == 1
        assert rows.filter(has_text="off").locator("button.replicate").count() == 0
        nightly.locator("button.replicate").click()
        assert "started" in page.locator(".flash").inner_text()

        def finished():
            page.reload()
            return page.locator("tr.execution").first.inner_text()

        text = poll(finished, lambda t: "Success" in t, timeout=30)
        assert "nightly" in text
        assert DR_PASSWORD not in page.content()
