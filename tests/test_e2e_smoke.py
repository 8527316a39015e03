"""A push, pull and delete through the sidecar reach a real receiver as Harbor payloads."""

from __future__ import annotations

import pytest

from tests.conftest import webhook_rules
from tests.support import clients

pytestmark = pytest.mark.e2e


def test_push_pull_delete_are_delivered(sidecar_factory, receiver, image, tmp_path):
    sidecar = sidecar_factory(webhook_rules(receiver.url), env={"CI_TOKEN": "s3cret"})
    layout, digest = image("v1")
    ref = f"{sidecar.netloc}/proj/app:v1"
    clients.push(layout, "v1", ref)
    clients.pull(ref, tmp_path / "out")
    clients.delete(ref)
    # skopeo delete resolves the tag with a GET first: Harbor reports that as a pull too
    received = receiver.wait_for(4)
    types = sorted(r.json()["type"] for r in received)
    assert types == ["DELETE_ARTIFACT", "PULL_ARTIFACT", "PULL_ARTIFACT", "PUSH_ARTIFACT"]
    for request in received:
        assert request.headers["authorization"] == "Bearer s3cret"
        assert request.headers["content-type"] == "application/json"
        resource = request.json()["event_data"]["resources"][0]
        assert resource["digest"] == digest
        assert resource["tag"] == "v1"
        assert resource["resource_url"] == f"{sidecar.netloc}/proj/app:v1"
