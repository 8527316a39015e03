"""The rules file as an operator lives with it: refused at start with file and line, picked up
when it changes, and a broken edit is refused while the last good rules stay in force."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.conftest import webhook_rules
from tests.support import clients
from tests.support.sidecar import Sidecar

pytestmark = pytest.mark.e2e

BROKEN = """\
projects:
  - name: proj
    webhooks:
      - name: ci
        event_types: [PUSH_ARTIFACT, PUSH_ARTEFACT]
        targets:
          - type: http
            address: http://127.0.0.1:9/hook
"""


def test_serve_refuses_a_broken_rules_file_with_file_line_and_reason(tmp_path, registry):
    sidecar = Sidecar(tmp_path / "sc", registry.url, rules=BROKEN)
    result = subprocess.run(sidecar.command(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{sidecar.rules_path}:5: unsupported event type PUSH_ARTEFACT" in result.stderr


def test_changes_are_picked_up_and_a_broken_edit_keeps_the_last_good_rules(
        sidecar_factory, receiver_factory, image):
    _edits_are_picked_up(sidecar_factory, receiver_factory, image)


@pytest.mark.postgres
def test_changes_are_picked_up_on_postgresql(
        postgres_database, sidecar_factory, receiver_factory, image):
    """The child process that reads an edit gets the database URL, password included."""
    url = postgres_database.replace("@", ":not-shown-pw@", 1)  # trust auth ignores it
    assert ":not-shown-pw@" in url
    sidecar = _edits_are_picked_up(sidecar_factory, receiver_factory, image, database=url,
                                   workers=2)
    assert "not-shown-pw" not in sidecar.log()


def _edits_are_picked_up(sidecar_factory, receiver_factory, image, **options):
    first, second = receiver_factory(), receiver_factory()
    sidecar = sidecar_factory(webhook_rules(first.url, auth_header=None,
                                            event_types=["PUSH_ARTIFACT"]), **options)
    layout, _ = image("v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1")
    first.wait_for(1)

    # a valid edit: the policy now points at the second receiver
    sidecar.write_rules(webhook_rules(second.url, auth_header=None,
                                      event_types=["PUSH_ARTIFACT"]))
    sidecar.wait_status(lambda s: any(
        t["address"] == second.url for p in s["policies"] for t in p["targets"]))
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v2")
    second.wait_for(1)

    # a broken edit is refused, says where and why, and the second receiver keeps getting events
    sidecar.write_rules(BROKEN)
    status = sidecar.wait_status(lambda s: s["rules"]["error"])
    refused = status["rules"]["error"]
    assert f"{sidecar.rules_path}:5: unsupported event type PUSH_ARTEFACT" in refused
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v3")
    second.wait_for(2)
    assert len(first.requests) == 1
    assert "unsupported event type PUSH_ARTEFACT" in sidecar.log()

    # fixed again: the error goes away
    sidecar.write_rules(yaml.safe_dump(webhook_rules(first.url, auth_header=None,
                                                     event_types=["PUSH_ARTIFACT"])))
    sidecar.wait_status(lambda s: s["rules"]["error"] is None and any(
        t["address"] == first.url for p in s["policies"] for t in p["targets"]))
    return sidecar
