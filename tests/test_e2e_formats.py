"""Slack, CloudEvents, signatures, filters and pull de-duplication through `sidecar serve`.

Real registry, real clients (skopeo, curl), and receivers that check what they get the way
the real consumers do: a fake Slack that refuses invalid JSON, a CloudEvents receiver using the
`cloudevents` SDK, a Standard Webhooks verifier using the `standardwebhooks` library.
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import subprocess
import uuid

import pytest
from cloudevents.core.bindings.http import HTTPMessage
from cloudevents.core.bindings.http import from_http_event
from standardwebhooks.webhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.support import clients
from tests.support.auth import bearer
from tests.support.receiver import Received
from tests.support.receiver import Reply

pytestmark = pytest.mark.e2e

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SECRET = "whsec_" + base64.b64encode(b"e2e-signing-key-of-32-bytes-long").decode()


def _repo(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _curl_pull(url: str, operator: str | None = None, request_id: str | None = None) -> None:
    args = ["curl", "-sS", "--fail", "--max-time", "30", "-o", "/dev/null",
            "-H", f"Accept: {OCI_MANIFEST}"]
    if operator:
        args += ["-H", f"Authorization: {bearer({'sub': operator})}"]
    if request_id:
        args += ["-H", f"X-Request-Id: {request_id}"]
    clients.run([*args, url])


def _policy(name: str, address: str, event_types=("PUSH_ARTIFACT",), **extra) -> dict:
    target = {"type": "http", "address": address, "skip_cert_verify": False,
              **extra.pop("target", {})}
    return {"name": name, "enabled": True, "event_types": list(event_types),
            "targets": [target], **extra}


def _rules(*policies: dict, project: str = "proj") -> dict:
    return {"projects": [{"name": project, "public": False, "webhooks": list(policies)}]}


def _settled(sidecar) -> dict:
    return sidecar.wait_status(lambda s: s["queue"]["depth"] == 0)


# -- receivers that judge what they get ------------------------------------------------------------

def fake_slack(request: Received) -> Reply:
    """Answers as Slack's incoming webhooks do: 400 invalid_payload unless strict JSON blocks."""
    try:
        body = json.loads(request.body)
        assert isinstance(body["blocks"], list) and body["blocks"]
        assert all(len(b["text"]["text"]) <= 3000 for b in body["blocks"])
    except (ValueError, KeyError, TypeError, AssertionError):
        return Reply(400, body=b"invalid_payload")
    return Reply(200, body=b"ok")


def cloudevents_receiver(request: Received) -> Reply:
    try:
        from_http_event(HTTPMessage(headers=request.headers, body=request.body))
    except Exception:
        return Reply(400, body=b"not a CloudEvent")
    return Reply(200)


def signature_verifier(request: Received) -> Reply:
    try:
        Webhook(SECRET).verify(request.body, request.headers)
    except WebhookVerificationError:
        return Reply(401, body=b"bad signature")
    return Reply(200)


# -- Slack -----------------------------------------------------------------------------------------

def test_slack_gets_harbors_blocks_as_valid_json_at_most_one_per_second(
        sidecar_factory, receiver_factory, image):
    first = [True]

    def slack(request: Received) -> Reply:
        if first[0]:  # Slack's rate limit answer, once
            first[0] = False
            return Reply(429, headers={"Retry-After": "2"}, body=b"rate_limited")
        return fake_slack(request)

    hook = receiver_factory(slack)
    sidecar = sidecar_factory(_rules(_policy(
        "chat", hook.url, target={"type": "slack", "auth_header": "Bearer never-sent"})))
    repo = _repo("slack")
    layout, digest = image("v1")
    for tag in ("v1", "v2", "v3"):
        clients.push(layout, "v1", f"{sidecar.netloc}/proj/{repo}:{tag}")
    received = hook.wait_for(4, timeout=30)  # three pushes, one of them sent twice (429)
    status = _settled(sidecar)
    assert status["deliveries"]["delivered"] == 3 and status["deliveries"]["failed"] == 0

    times = [r.at for r in received]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.9, gaps  # one message per second to one webhook URL
    assert times[1] - times[0] >= 1.9, gaps  # after the 429, nothing for Retry-After seconds
    for request in received:
        assert "authorization" not in request.headers
        assert request.headers["content-type"] == "application/json"
    tags = set()
    for request in received[1:]:
        blocks = json.loads(request.body)["blocks"]
        texts = [b["text"]["text"] for b in blocks]
        assert texts[0] == "*Harbor webhook events*"
        assert texts[1] == "*event_type:* PUSH_ARTIFACT"
        assert re.fullmatch(r"\*occur_at:\* <!date\^\d+\^\{date\} at \{time\}\|.+>", texts[2])
        assert texts[3] == "*operator:* "  # anonymous push
        data = json.loads(texts[5].strip("`"))  # the event data, indented JSON in a code block
        assert data["resources"][0]["digest"] == digest
        tags.add(data["resources"][0]["tag"])
    assert tags == {"v1", "v2", "v3"}


# -- CloudEvents -----------------------------------------------------------------------------------

def test_cloudevents_structured_and_binary(sidecar_factory, receiver_factory, image, tmp_path):
    structured = receiver_factory(cloudevents_receiver)
    binary = receiver_factory(cloudevents_receiver)
    types = ("PUSH_ARTIFACT", "PULL_ARTIFACT")
    sidecar = sidecar_factory(_rules(
        _policy("ce", structured.url, types, target={"payload_format": "CloudEvents",
                                                     "auth_header": "Bearer ce"}),
        _policy("ce-binary", binary.url, types,
                target={"payload_format": "CloudEvents", "cloudevents_mode": "binary"}),
    ))
    repo = _repo("ce")
    layout, digest = image("v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/{repo}:v1")
    _curl_pull(f"{sidecar.url}/v2/proj/{repo}/manifests/v1", operator="alice",
               request_id="req-from-client-1")
    structured.wait_for(2)
    binary.wait_for(2)
    status = _settled(sidecar)
    assert status["deliveries"]["delivered"] == 4  # every one accepted by the SDK receivers

    db = sqlite3.connect(sidecar.database.split(":///", 1)[1])
    ids = dict(db.execute("SELECT name, id FROM policy").fetchall())
    [project_id] = db.execute("SELECT id FROM project WHERE name = 'proj'").fetchone()
    db.close()

    for receiver, name in ((structured, "ce"), (binary, "ce-binary")):
        events = {}
        for request in receiver.wait_for(2):
            event = from_http_event(HTTPMessage(headers=request.headers, body=request.body))
            events[event.get_type()] = (event, request)
        assert set(events) == {"harbor.artifact.pushed", "harbor.artifact.pulled"}
        pushed, push_request = events["harbor.artifact.pushed"]
        pulled, _ = events["harbor.artifact.pulled"]
        assert pushed.get_source() == f"/projects/{project_id}/webhook/policies/{ids[name]}"
        assert pushed.get_data()["resources"][0]["digest"] == digest
        assert pushed.get_data()["repository"]["repo_full_name"] == f"proj/{repo}"
        assert pushed.get_extension("operator") == ""
        uuid.UUID(pushed.get_extension("requestid"))  # none from skopeo: one was generated
        assert pulled.get_extension("operator") == "alice"
        assert pulled.get_extension("requestid") == "req-from-client-1"
        uuid.UUID(pushed.get_id())
        if name == "ce":
            assert push_request.headers["content-type"] == "application/cloudevents+json"
            assert push_request.headers["authorization"] == "Bearer ce"
        else:
            assert push_request.headers["content-type"] == "application/json"
            assert push_request.headers["ce-specversion"] == "1.0"
            assert json.loads(push_request.body) == pushed.get_data()


# -- Standard Webhooks -----------------------------------------------------------------------------

def test_signed_deliveries_verify_and_keep_their_id_across_retries(
        sidecar_factory, receiver_factory, image):
    calls = []

    def flaky_verifier(request: Received) -> Reply:
        calls.append(request)
        if len(calls) == 1:
            return Reply(503)  # the first attempt fails: the retry must carry the same id
        return signature_verifier(request)

    hook = receiver_factory(flaky_verifier)
    rules = _rules(_policy("signed", hook.url, target={"secret": "${HOOK_SECRET}",
                                                       "payload_format": "CloudEvents"}))
    sidecar = sidecar_factory(rules, env={"HOOK_SECRET": SECRET})
    layout, _ = image("v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/{_repo('signed')}:v1")
    first, retry = hook.wait_for(2)
    status = _settled(sidecar)
    assert status["deliveries"]["delivered"] == 1
    assert first.headers["webhook-id"] == retry.headers["webhook-id"]
    assert first.body == retry.body  # the same CloudEvent (same id) on every attempt
    for request in (first, retry):
        assert Webhook(SECRET).verify(request.body, request.headers)["type"] == (
            "harbor.artifact.pushed")
    assert SECRET not in json.dumps(status)
    assert SECRET[6:] not in sidecar.log()


def test_a_wrong_secret_is_refused_by_the_verifier(sidecar_factory, receiver_factory, image):
    hook = receiver_factory(signature_verifier)
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    sidecar = sidecar_factory(_rules(_policy("signed", hook.url, target={"secret": other})),
                              config={"notification": {"webhook_job_max_retry": 1}})
    layout, _ = image("v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/{_repo('wrong')}:v1")
    hook.wait_for(1)
    status = _settled(sidecar)
    assert status["deliveries"]["failed"] == 1
    assert status["recent_failures"][0]["last_status_code"] == 401


# -- filters and pull de-duplication ---------------------------------------------------------------

def test_filters_ignore_an_operator_and_unmatched_tags(sidecar_factory, receiver_factory, image):
    everything = receiver_factory()
    filtered = receiver_factory()
    types = ("PUSH_ARTIFACT", "PULL_ARTIFACT")
    sidecar = sidecar_factory(_rules(
        _policy("all", everything.url, types),
        _policy("releases", filtered.url, types,
                filters={"tags": ["v*"], "ignore_operators": ["robot$scanner*"]}),
    ))
    repo = _repo("filters")
    layout, _ = image("v1")
    base = f"{sidecar.netloc}/proj/{repo}"
    clients.push(layout, "v1", f"{base}:dev")                    # tag filtered out
    _curl_pull(f"http://{base.replace('/proj/', '/v2/proj/', 1)}/manifests/dev", "alice")
    clients.push(layout, "v1", f"{base}:v1")                     # passes
    _curl_pull(f"{sidecar.url}/v2/proj/{repo}/manifests/v1", "robot$scanner-trivy")  # ignored
    _curl_pull(f"{sidecar.url}/v2/proj/{repo}/manifests/v1", "alice")                # passes
    everything.wait_for(5)
    _settled(sidecar)
    got = [(e["type"], e["event_data"]["resources"][0]["tag"], e["operator"])
           for e in filtered.events()]
    assert sorted(got) == [("PULL_ARTIFACT", "v1", "alice"), ("PUSH_ARTIFACT", "v1", "")]


def test_repeated_pulls_in_the_window_make_one_delivery(sidecar_factory, receiver_factory,
                                                         image):
    every_pull = receiver_factory()
    deduped = receiver_factory()
    sidecar = sidecar_factory(_rules(
        _policy("every", every_pull.url, ("PULL_ARTIFACT",)),
        _policy("once", deduped.url, ("PULL_ARTIFACT",), pull_dedup_seconds=300),
    ), workers=2)  # the window holds across worker processes
    repo = _repo("dedup")
    layout, _ = image("v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/{repo}:v1")
    url = f"{sidecar.url}/v2/proj/{repo}/manifests/v1"
    for _ in range(4):
        _curl_pull(url, "ci-bot")
    _curl_pull(url, "alice")
    every_pull.wait_for(5)
    _settled(sidecar)
    assert sorted(e["operator"] for e in deduped.events()) == ["alice", "ci-bot"]


def test_rules_with_bad_filters_are_refused_by_check_rules(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("projects:\n- name: proj\n  webhooks:\n  - name: p\n"
                    "    event_types: [PULL_ARTIFACT]\n    targets: [{address: 'http://x/h'}]\n"
                    "    pull_dedup_seconds: soon\n")
    result = subprocess.run(["sidecar", "check-rules", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert f"{path}:7: pull_dedup_seconds must be a whole number" in result.stdout + result.stderr
