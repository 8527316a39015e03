"""The Harbor-compatible API on a real `sidecar serve`: policies made through it deliver real
pushes, their history shows up as executions, tasks and logs, and the global switch stops new
deliveries. The test endpoint and `sidecar test-endpoint` against real receivers.
"""

from __future__ import annotations

import subprocess

import pytest
import requests

from tests.support import clients
from tests.support.ports import poll
from tests.support.receiver import Reply
from tests.support.recorded import deliveries_for_tag
from tests.support.sidecar import sidecar_command

pytestmark = pytest.mark.e2e

PASSWORD = "e2e-Admin-pw"
SECRET = "Bearer e2e-token-0451"


class HarborClient:
    """What a script using Harbor's API does: HTTP Basic as admin, JSON in and out."""

    def __init__(self, base: str):
        self.base = f"{base}/api/v2.0"
        self.session = requests.Session()
        self.session.auth = ("admin", PASSWORD)

    def __getattr__(self, method):
        def call(path: str, **kwargs):
            return self.session.request(method.upper(), self.base + path, timeout=30, **kwargs)
        return call


def test_policy_made_through_the_api_delivers_and_reports(sidecar_factory, receiver, image):
    sidecar = sidecar_factory(config={"harbor_admin_password": PASSWORD})
    api = HarborClient(sidecar.url)
    assert requests.get(f"{sidecar.url}/api/v2.0/projects", timeout=10).status_code == 401

    created = api.post("/projects", json={"project_name": "proj", "metadata": {"public": "false"}})
    assert created.status_code == 201, created.text
    response = api.post("/projects/proj/webhook/policies", json={
        "name": "ci", "description": "tell CI", "enabled": True,
        "event_types": ["PUSH_ARTIFACT"],
        "targets": [{"type": "http", "address": receiver.url, "auth_header": SECRET,
                     "skip_cert_verify": False, "payload_format": "Default"}],
    })
    assert response.status_code == 201, response.text
    location = response.headers["Location"]
    policy_id = int(location.rsplit("/", 1)[1])
    assert location == f"/api/v2.0/projects/proj/webhook/policies/{policy_id}"

    layout, digest = image("v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1")
    (delivered,) = receiver.wait_for(1)
    assert delivered.headers["authorization"] == SECRET
    event = delivered.json()
    assert event["type"] == "PUSH_ARTIFACT"
    assert event["event_data"]["resources"][0]["digest"] == digest

    triggers = api.get("/projects/proj/webhook/lasttrigger").json()
    assert [(t["policy_name"], t["event_type"]) for t in triggers] == [("ci", "PUSH_ARTIFACT")]
    assert not triggers[0]["last_trigger_time"].startswith("0001")

    executions_path = f"/projects/proj/webhook/policies/{policy_id}/executions"
    executions = poll(lambda: api.get(executions_path).json(),
                      lambda rows: rows and rows[0]["status"] == "Success")
    (execution,) = executions
    assert execution["vendor_type"] == "WEBHOOK" and execution["vendor_id"] == policy_id
    assert execution["extra_attrs"]["payload"].encode() == delivered.body  # byte for byte
    tasks = api.get(f"{executions_path}/{execution['id']}/tasks")
    (task,) = tasks.json()
    assert tasks.headers["X-Total-Count"] == "1"
    assert (task["status"], task["run_count"]) == ("Success", 1)
    log = api.get(f"{executions_path}/{execution['id']}/tasks/{task['id']}/log")
    assert log.status_code == 200
    assert "success to run webhook job" in log.text
    policy = api.get(f"/projects/proj/webhook/policies/{policy_id}").json()
    assert policy["targets"][0]["auth_header"] == "***"
    listed = api.get("/projects/proj/webhook/policies")
    for response in (log, tasks, api.get(executions_path), listed):
        assert "e2e-token-0451" not in response.text
    assert "e2e-token-0451" not in sidecar.log()

    # the global switch: off -> a push is recorded with no delivery; on again -> delivered
    off = api.put("/configurations", json={"notification_enable": False})
    assert off.status_code == 200, off.text
    assert api.get("/configurations").json() == {
        "notification_enable": {"value": False, "editable": True}}
    layout2, _ = image("v2")
    clients.push(layout2, "v2", f"{sidecar.netloc}/proj/app:v2")
    assert poll(lambda: deliveries_for_tag(sidecar.database, "v2"),
                lambda count: count is not None) == 0
    assert api.put("/configurations", json={"notification_enable": True}).status_code == 200
    layout3, _ = image("v3")
    clients.push(layout3, "v3", f"{sidecar.netloc}/proj/app:v3")
    received = receiver.wait_for(2)
    assert [r.json()["event_data"]["resources"][0]["tag"] for r in received] == ["v1", "v3"]
    assert api.get(executions_path).headers["X-Total-Count"] == "2"


def test_api_test_endpoint_on_a_running_sidecar(sidecar_factory, receiver_factory):
    sidecar = sidecar_factory(config={"harbor_admin_password": PASSWORD})
    api = HarborClient(sidecar.url)
    assert api.post("/projects", json={"project_name": "proj"}).status_code == 201
    good = receiver_factory()
    bad = receiver_factory([Reply(status=404)])
    response = api.post("/projects/proj/webhook/policies/test", json={
        "name": "probe",
        "targets": [{"type": "http", "address": good.url, "auth_header": SECRET,
                     "payload_format": "CloudEvents"},
                    {"type": "http", "address": bad.url}],
    })
    assert response.status_code == 400
    body = response.json()
    assert body["errors"] == [{"code": "BAD_REQUEST",
                               "message": "notification policy probe test failed"}]
    ok, failed = body["results"]
    assert (ok["ok"], ok["status_code"], failed["ok"], failed["status_code"]) == (
        True, 200, False, 404)
    (sent,) = good.wait_for(1)
    assert sent.headers["authorization"] == SECRET
    assert sent.headers["content-type"].startswith("application/cloudevents+json")
    assert sent.json()["type"] == "harbor.artifact.pushed"
    assert "e2e-token-0451" not in response.text
    assert "e2e-token-0451" not in sidecar.log()


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([*sidecar_command(), "test-endpoint", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_cli_test_endpoint_reports_status_and_latency(receiver_factory):
    receiver = receiver_factory()
    result = run_cli(receiver.url, "--auth-header-env", "HOOK_AUTH",
                     env={"HOOK_AUTH": SECRET})
    assert result.returncode == 0, result.stderr
    assert f"POST {receiver.url} (http, Default): 200 in " in result.stdout
    assert result.stdout.rstrip().endswith(" ms")
    assert "e2e-token-0451" not in result.stdout + result.stderr
    (sent,) = receiver.wait_for(1)
    assert sent.headers["authorization"] == SECRET
    assert sent.json()["type"] == "PUSH_ARTIFACT"


def test_cli_test_endpoint_fails_on_errors(receiver_factory):
    failing = receiver_factory([Reply(status=503)])
    result = run_cli(failing.url)
    assert result.returncode == 1
    assert "503 FAILED" in result.stdout
    assert "abnormal response code: 503" in result.stdout

    slack = receiver_factory()
    result = run_cli(slack.url, "--type", "slack")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(slack)" in result.stdout
    assert "authorization" not in slack.wait_for(1)[0].headers

    from tests.support.ports import free_port

    closed = f"http://127.0.0.1:{free_port()}/hook"
    result = run_cli(closed, "--timeout", "2")
    assert result.returncode == 1
    assert "connection failed" in result.stdout

    result = run_cli("ftp://example.com/hook")
    assert result.returncode == 2
    assert "invalid scheme: ftp" in result.stderr
    result = run_cli("https://hooks.slack.com/x", "--type", "slack", "--format", "Default")
    assert result.returncode == 2
    assert "set payload format is not allowed for slack" in result.stderr
