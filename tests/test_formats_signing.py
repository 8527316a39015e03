"""Standard Webhooks signatures, checked with the reference `standardwebhooks` library."""

from __future__ import annotations

import base64
import json

import pytest
from standardwebhooks.webhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from sidecar.dispatch.render import Context
from sidecar.dispatch.render import render
from sidecar.rules.load import RulesError
from sidecar.rules.load import parse_rules
from sidecar.rules.policy import parse_policy

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
UID = "msg_00112233445566778899aabbccddeeff"
PAYLOAD = {"type": "PUSH_ARTIFACT", "occur_at": 1755763200, "operator": "alice",
           "event_data": {"resources": [{"digest": "sha256:" + "1" * 64, "tag": "v1"}]}}


def signed(target_extra: dict | None = None, now: float | None = None, uid: str = UID):
    import time

    target = {"type": "http", "address": "http://127.0.0.1:9/hook", "secret": SECRET,
              **(target_extra or {})}
    return render(PAYLOAD, target, Context(delivery_uid=uid, now=now or time.time(),
                                           policy_id=1, project_id=1, request_id="r"))


@pytest.mark.parametrize("extra", [{}, {"payload_format": "CloudEvents"},
                                   {"payload_format": "CloudEvents", "cloudevents_mode": "binary"},
                                   {"auth_header": "Bearer x"}])
def test_every_format_verifies_with_the_reference_library(extra):
    request = signed(extra)
    verified = Webhook(SECRET).verify(request.body, request.headers)
    assert verified == json.loads(request.body)
    assert request.headers["webhook-signature"].startswith("v1,")


def test_webhook_id_is_the_delivery_uid_on_every_attempt_and_timestamp_is_the_attempts():
    first = signed(now=1_900_000_000.7)
    retry = signed(now=1_900_000_060.2)
    assert first.headers["webhook-id"] == retry.headers["webhook-id"] == UID
    assert first.headers["webhook-timestamp"] == "1900000000"
    assert retry.headers["webhook-timestamp"] == "1900000060"
    assert first.headers["webhook-signature"] != retry.headers["webhook-signature"]


def test_a_changed_body_or_a_wrong_secret_fails_verification():
    request = signed()
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(request.body.replace(b"alice", b"mallory"), request.headers)
    other = "whsec_" + base64.b64encode(b"\x07" * 32).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(request.body, request.headers)


def test_unsigned_targets_carry_no_signature_headers():
    request = render(PAYLOAD, {"type": "http", "address": "http://x/h"},
                     Context(delivery_uid=UID, now=1.0))
    assert not any(name.startswith("webhook-") for name in request.headers)


@pytest.mark.parametrize("secret, message", [
    ("s3cret-s3cret-s3cret-s3cret", "secret must start with whsec_"),
    ("whsec_not base64!", "secret must be whsec_ followed by base64"),
    ("whsec_" + base64.b64encode(b"short").decode(), "secret must encode 24 to 64 bytes, not 5"),
])
def test_malformed_secrets_are_refused_without_being_quoted(secret, message):
    policy, problems = parse_policy({"name": "p", "event_types": ["PUSH_ARTIFACT"],
                                     "targets": [{"address": "http://x/h", "secret": secret}]})
    assert policy is None
    [problem] = problems
    assert problem.path == ("targets", 0, "secret")
    assert problem.message.startswith(message)
    assert secret not in problem.message


def test_slack_targets_refuse_a_secret():
    _, problems = parse_policy({"name": "p", "event_types": ["PUSH_ARTIFACT"],
                                "targets": [{"type": "slack", "address": "https://h/x",
                                             "secret": SECRET}]})
    assert [p.message for p in problems] == ["set secret is not allowed for slack"]


def test_rules_file_reads_the_secret_from_the_environment_and_hides_it():
    text = ("projects:\n- name: proj\n  webhooks:\n  - name: signed\n"
            "    event_types: [PUSH_ARTIFACT]\n    targets:\n"
            "    - {type: http, address: 'http://x/h', secret: '${HOOK_SECRET}'}\n")
    rules = parse_rules(text, "rules.yaml", {"HOOK_SECRET": SECRET})
    [target] = rules.projects[0].policies[0].targets
    assert target.secret == SECRET
    assert target.as_dict()["secret"] == SECRET  # stored for the sender
    assert SECRET not in repr(rules)  # but never printed
    with pytest.raises(RulesError) as refused:
        parse_rules(text, "rules.yaml", {"HOOK_SECRET": "plain"})
    assert str(refused.value).startswith("rules.yaml:7: secret must start with whsec_")
    assert "plain" not in str(refused.value)
