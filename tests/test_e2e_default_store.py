"""What a sidecar with the default settings keeps: events a policy wants, with their deliveries,
and every artifact's pull time for tag retention; not a row for every pull nobody asked for.

The other end-to-end tests turn `sidecar.record_unmatched_events` on to read what was inferred
from the store; this one runs `sidecar serve` as harbor.yml.example leaves it.
"""

from __future__ import annotations

import sqlite3
import time
import uuid

import pytest
import requests

from tests.support import clients

pytestmark = pytest.mark.e2e


def _rules(project: str, address: str) -> dict:
    return {"projects": [
        {"name": project, "webhooks": [{
            "name": "pulls", "event_types": ["PULL_ARTIFACT"],
            "targets": [{"type": "http", "address": address}]}]},
        {"name": f"quiet-{project}"},
    ]}


def _rows(sidecar, sql: str) -> list[tuple]:
    path = sidecar.database.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        return conn.execute(sql).fetchall()


def test_only_wanted_events_are_rows_and_every_pull_time_is_kept(
        sidecar_factory, receiver, image, tmp_path):
    project = f"p{uuid.uuid4().hex[:8]}"
    watched, quiet = f"{project}/app", f"quiet-{project}/app"
    sidecar = sidecar_factory(_rules(project, receiver.url), record_unmatched=False)
    layout, digest = image("v1", layers=1)
    for repository in (watched, quiet):
        clients.push(layout, "v1", f"{sidecar.netloc}/{repository}:v1")
    clients.pull(f"{sidecar.netloc}/{watched}:v1", tmp_path / "watched")
    [hook] = receiver.wait_for(1)
    clients.pull(f"{sidecar.netloc}/{quiet}:v1", tmp_path / "quiet")  # only gathered
    resource = hook.json()["event_data"]["resources"][0]
    assert (hook.json()["type"], resource["digest"]) == ("PULL_ARTIFACT", digest)
    assert hook.json()["event_data"]["repository"]["repo_full_name"] == watched

    sidecar.stop()  # a graceful stop writes the pull times still gathered in memory
    assert _rows(sidecar, "SELECT type, repository FROM event") == [("PULL_ARTIFACT", watched)]
    pulled = dict(_rows(sidecar, "SELECT repository, pulled_at FROM artifact_activity "
                                 f"WHERE digest = '{digest}'"))
    assert set(pulled) == {watched, quiet} and all(pulled.values()), pulled


def test_a_pull_policy_made_through_the_api_gets_the_very_next_pull(
        sidecar_factory, receiver, image, tmp_path):
    """The workers read their policy index before the policy exists: pulls nobody wanted
    wait (up to 50 ms) to be checked in a batch, and the check sees the new policy.

    As in Harbor, whose handler looks policies up when it handles an event, a pull still
    waiting when the policy is stored may be delivered too (a worker building its admin
    plane for the POST holds its pulls that long); the next pull always is. So the pulls
    before are by tag and the next one by digest, which its payload tells apart."""
    project = f"p{uuid.uuid4().hex[:8]}"
    repository = f"{project}/app"
    sidecar = sidecar_factory({"projects": [{"name": project}]}, workers=2,
                              record_unmatched=False)
    layout, digest = image("v1", layers=1)
    clients.push(layout, "v1", f"{sidecar.netloc}/{repository}:v1")
    manifest = f"{sidecar.url}/v2/{repository}/manifests/v1"
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    for _ in range(20):  # both workers: index read, nothing subscribed to pulls
        assert requests.get(manifest, headers=accept, timeout=10).status_code == 200

    created = requests.post(
        f"{sidecar.url}/api/v2.0/projects/{project}/webhook/policies", timeout=10,
        auth=("admin", sidecar.admin_password), json={
            "name": "pulls", "enabled": True, "event_types": ["PULL_ARTIFACT"],
            "targets": [{"type": "http", "address": receiver.url}]})
    assert created.status_code == 201, created.text
    by_digest = f"{sidecar.url}/v2/{repository}/manifests/{digest}"
    assert requests.get(by_digest, headers=accept, timeout=10).status_code == 200

    deadline = time.monotonic() + 20
    while not any(hook["event_data"]["resources"][0]["tag"] == digest  # pulled by digest
                  for hook in receiver.events()):
        assert time.monotonic() < deadline, receiver.events()
        receiver.wait_for(len(receiver.requests) + 1, timeout=deadline - time.monotonic())
    hooks = receiver.events()
    assert {hook["type"] for hook in hooks} == {"PULL_ARTIFACT"}
    assert {hook["event_data"]["resources"][0]["digest"] for hook in hooks} == {digest}
