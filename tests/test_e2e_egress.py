"""Outbound safety on a real `sidecar serve`: with Harbor's
`network.allow_private_network_access: false` a webhook to a loopback receiver (by address or by
a name that resolves there) is not sent and fails at once with the reason, in the status and
in the API's task log; `sidecar.webhook_allowed_networks` lets it through; the test endpoint
obeys the same rule; a CIDR that does not parse stops the start."""

from __future__ import annotations

import subprocess

import pytest
import requests

from tests.conftest import webhook_rules
from tests.support import clients
from tests.support.ports import poll
from tests.support.sidecar import sidecar_command

pytestmark = pytest.mark.e2e

PASSWORD = "egress-Admin-pw"
STRICT = {"harbor_admin_password": PASSWORD, "network": {"allow_private_network_access": False}}


def push(sidecar, image, tag: str = "v1") -> str:
    layout, digest = image(tag)
    clients.push(layout, tag, f"{sidecar.netloc}/proj/app:{tag}")
    return digest


def api(sidecar, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{sidecar.url}/api/v2.0{path}", auth=("admin", PASSWORD),
                            timeout=30, **kwargs)


def failed_delivery(sidecar) -> dict:
    status = sidecar.wait_status(lambda s: s["deliveries"]["failed"] == 1)
    return status["recent_failures"][0]


def task_log(sidecar) -> str:
    (policy,) = api(sidecar, "GET", "/projects/proj/webhook/policies").json()
    executions = f"/projects/proj/webhook/policies/{policy['id']}/executions"
    (execution,) = poll(lambda: api(sidecar, "GET", executions).json(),
                        lambda rows: rows and rows[0]["status"] == "Error")
    (task,) = api(sidecar, "GET", f"{executions}/{execution['id']}/tasks").json()
    return api(sidecar, "GET", f"{executions}/{execution['id']}/tasks/{task['id']}/log").text


def test_a_loopback_receiver_is_refused_and_the_delivery_fails_saying_why(
        sidecar_factory, receiver, image):
    sidecar = sidecar_factory(webhook_rules(receiver.url, event_types=["PUSH_ARTIFACT"]),
                              config=STRICT, env={"CI_TOKEN": "t"})
    push(sidecar, image)
    failure = failed_delivery(sidecar)
    assert failure["attempts"] == 1  # final: a retry would be refused the same way
    assert failure["last_error"].startswith(
        "refused: 127.0.0.1 is a loopback address (network.allow_private_network_access is "
        "false; list the receiver's network in sidecar.webhook_allowed_networks to allow it)")
    assert failure["last_error"].endswith("(not retried)")
    assert "refused: 127.0.0.1 is a loopback address" in task_log(sidecar)
    assert receiver.requests == []


def test_a_name_that_resolves_to_loopback_is_refused(sidecar_factory, receiver, image):
    by_name = receiver.url.replace("127.0.0.1", "localhost")
    sidecar = sidecar_factory(webhook_rules(by_name, event_types=["PUSH_ARTIFACT"],
                                            auth_header=None), config=STRICT)
    push(sidecar, image)
    failure = failed_delivery(sidecar)
    assert failure["last_error"].startswith("refused: localhost resolves to ")
    assert "a loopback address" in failure["last_error"]
    assert receiver.requests == []


def test_an_allowed_network_is_delivered(sidecar_factory, receiver, image):
    config = {**STRICT, "sidecar": {"webhook_allowed_networks": ["127.0.0.0/8"]}}
    sidecar = sidecar_factory(webhook_rules(receiver.url, event_types=["PUSH_ARTIFACT"],
                                            auth_header=None), config=config)
    digest = push(sidecar, image)
    [request] = receiver.wait_for(1)
    assert request.json()["event_data"]["resources"][0]["digest"] == digest
    sidecar.wait_status(lambda s: s["deliveries"]["delivered"] == 1)


def test_the_test_endpoint_is_refused_too(sidecar_factory, receiver):
    sidecar = sidecar_factory(config=STRICT)
    assert api(sidecar, "POST", "/projects", json={"project_name": "proj"}).status_code == 201
    response = api(sidecar, "POST", "/projects/proj/webhook/policies/test", json={
        "name": "probe", "targets": [{"type": "http", "address": receiver.url}]})
    assert response.status_code == 400
    (result,) = response.json()["results"]
    assert result["ok"] is False and result["status_code"] is None
    assert result["error"].startswith("refused: 127.0.0.1 is a loopback address")
    assert receiver.requests == []


def test_the_cli_test_endpoint_reads_the_policy_from_the_config(tmp_path, receiver):
    config = tmp_path / "harbor.yml"
    config.write_text("network:\n  allow_private_network_access: false\n")
    result = subprocess.run([*sidecar_command(), "test-endpoint", receiver.url,
                             "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "FAILED" in result.stdout and "refused: 127.0.0.1 is a loopback" in result.stdout
    assert receiver.requests == []


def test_a_network_that_does_not_parse_stops_the_start(sidecar_factory):
    sidecar = sidecar_factory(start=False, config={
        "network": {"allow_private_network_access": False},
        "sidecar": {"webhook_allowed_networks": ["10.0.0.0/8", "10.0.0.0/33"]}})
    result = subprocess.run(sidecar.command(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "sidecar.webhook_allowed_networks: '10.0.0.0/33' is not a CIDR network" in \
        result.stderr
