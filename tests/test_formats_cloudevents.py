"""CloudEvents targets: Harbor's structured event, and binary mode, read back by the SDK."""

from __future__ import annotations

import json
import uuid
from datetime import UTC
from datetime import datetime

import pytest
from cloudevents.core.bindings.http import HTTPMessage
from cloudevents.core.bindings.http import from_binary_event
from cloudevents.core.bindings.http import from_http_event
from cloudevents.core.bindings.http import from_structured_event

from sidecar.dispatch.formats.cloudevents import EVENT_TYPES
from sidecar.dispatch.render import Context
from sidecar.dispatch.render import render
from sidecar.events.model import EVENT_TYPES as POLICY_EVENT_TYPES
from sidecar.events.model import PULL_ARTIFACT
from sidecar.events.model import ArtifactEvent
from sidecar.events.payload import artifact_payload
from sidecar.rules.policy import parse_policy

UID = "msg_0123456789abcdef0123456789abcdef"
TARGET = {"type": "http", "address": "http://127.0.0.1:9/hook", "payload_format": "CloudEvents",
          "auth_header": "Bearer ce"}


def payload(operator: str = "robot$library+ci") -> dict:
    event = ArtifactEvent(type=PULL_ARTIFACT, repository="library/alpine",
                          digest="sha256:" + "9" * 64, operator=operator,
                          occur_at=1755763200, tags=("3.20",))
    return artifact_payload(event, hostname="harbor.example.com", public=False,
                            date_created=1755700000)


def context(**changes) -> Context:
    base = {"delivery_uid": UID, "now": 1755763201.0, "policy_id": 15, "project_id": 2,
            "request_id": "51c0b694-0168-4f3c-b0db-282565455d7b"}
    return Context(**{**base, **changes})


def test_structured_event_as_harbor_sends_it():
    body = payload()
    request = render(body, TARGET, context())
    assert request.headers["Content-Type"] == "application/cloudevents+json"
    assert request.headers["Authorization"] == "Bearer ce"
    assert not any(name.lower().startswith("ce-") for name in request.headers)
    event = from_structured_event(HTTPMessage(headers=request.headers, body=request.body))
    assert event.get_specversion() == "1.0"
    assert event.get_source() == "/projects/2/webhook/policies/15"
    assert event.get_type() == "harbor.artifact.pulled"
    assert event.get_datacontenttype() == "application/json"
    assert event.get_time() == datetime(2025, 8, 21, 8, 0, tzinfo=UTC)
    assert event.get_extension("operator") == "robot$library+ci"
    assert event.get_extension("requestid") == "51c0b694-0168-4f3c-b0db-282565455d7b"
    assert event.get_data() == body["event_data"]  # data is event_data only
    raw = json.loads(request.body)
    assert raw["time"] == "2025-08-21T08:00:00Z"  # RFC 3339, no fraction, as Harbor
    assert set(raw) == {"specversion", "id", "source", "type", "datacontenttype", "time",
                        "data", "requestid", "operator"}  # no subject, no dataschema


def test_id_is_a_uuid_fixed_per_delivery():
    first = json.loads(render(payload(), TARGET, context()).body)["id"]
    retry = json.loads(render(payload(), TARGET, context(now=1755769999.0)).body)["id"]
    other = json.loads(render(payload(), TARGET, context(delivery_uid="msg_" + "f" * 32)).body)
    assert first == retry == str(uuid.UUID(UID[4:]))
    assert other["id"] != first


def test_binary_mode_puts_attributes_in_headers_and_data_in_the_body():
    body = payload(operator="jürgen")
    target = {**TARGET, "cloudevents_mode": "binary"}
    request = render(body, target, context())
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["ce-type"] == "harbor.artifact.pulled"
    assert request.headers["ce-source"] == "/projects/2/webhook/policies/15"
    assert request.headers["ce-specversion"] == "1.0"
    assert json.loads(request.body) == body["event_data"]
    message = HTTPMessage(headers=request.headers, body=request.body)
    event = from_binary_event(message)
    assert event.get_extension("operator") == "jürgen"  # percent-encoded on the wire
    assert request.headers["ce-operator"].isascii()
    assert from_http_event(message).get_id() == event.get_id()  # auto-detected as binary


def test_anonymous_operator_and_missing_ids_still_make_a_valid_event():
    request = render(payload(operator=""), TARGET, context(policy_id=None, project_id=None,
                                                           request_id=""))
    event = from_http_event(HTTPMessage(headers=request.headers, body=request.body))
    assert event.get_extension("operator") == ""  # present even when empty, as Harbor
    assert event.get_source() == "/projects/0/webhook/policies/0"


def test_every_subscribable_event_type_has_a_cloudevents_type():
    assert set(POLICY_EVENT_TYPES) <= set(EVENT_TYPES)
    assert EVENT_TYPES["PUSH_ARTIFACT"] == "harbor.artifact.pushed"
    assert EVENT_TYPES["DELETE_ARTIFACT"] == "harbor.artifact.deleted"
    assert EVENT_TYPES["REPLICATION"] == "harbor.replication.status.changed"


@pytest.mark.parametrize("target, message", [
    ({"type": "http", "address": "http://x/h", "cloudevents_mode": "binary"},
     "cloudevents_mode needs payload_format CloudEvents"),
    ({"type": "http", "address": "http://x/h", "payload_format": "CloudEvents",
      "cloudevents_mode": "batch"},
     "unsupported cloudevents_mode batch (expected structured or binary)"),
    ({"type": "slack", "address": "http://x/h", "payload_format": "CloudEvents"},
     "set payload format is not allowed for slack"),
])
def test_mode_validation(target, message):
    policy, problems = parse_policy({"name": "p", "event_types": ["PUSH_ARTIFACT"],
                                     "targets": [target]})
    assert policy is None
    assert [p.message for p in problems] == [message]
