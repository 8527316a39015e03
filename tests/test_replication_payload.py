"""REPLICATION on the wire: Harbor's payload byte for byte, and who receives it.

The goldens in tests/fixtures/harbor_replication/ were written by hand from Harbor's
`Replication`, `ReplicationResource` and `ArtifactInfo` structs (key order, omitempty) and
`constructReplicationPayload` (push mode: the local side is `src_resource`, whose namespace
Harbor reads from the task's destination resource), not generated from this code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.events.families import payload_for
from sidecar.events.model import REPLICATION
from sidecar.events.payload import encode
from sidecar.events.replication import ERROR
from sidecar.events.replication import RUNNING
from sidecar.events.replication import STOPPED
from sidecar.events.replication import SUCCESS
from sidecar.events.replication import ReplicationEvent
from sidecar.events.replication import resource_name
from sidecar.record.recorder import build_records
from sidecar.rules.policy import Filters
from sidecar.store.policies import ProjectPolicies
from sidecar.store.policies import StoredPolicy
from tests.consumer_rules import assert_harbor_compatible

FIXTURES = Path(__file__).parent / "fixtures" / "harbor_replication"
NGINX = "sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8"


def event(**changes) -> ReplicationEvent:
    fields = dict(
        type=REPLICATION, repository="library/nginx", operator="alice", occur_at=1755764080,
        job_status=RUNNING, execution_id=12, task_id=34, trigger_type="EVENT",
        execution_timestamp=1755764079, references=("1.25",),
        source_resource=resource_name("library/nginx", 1),
        destination_resource=resource_name("library/nginx", 1), registry_name="dr",
        registry_type="docker-registry", registry_endpoint="https://dr.example.com",
        description="disaster recovery copy", authentication_type="basic",
        override_mode=True, policy_creator="rules")
    fields.update(changes)
    return ReplicationEvent(**fields)


GOLDEN = {
    "running_event": (event(), "https://harbor.example.com"),
    "success_manual": (event(
        operator="admin", occur_at=1755764100, job_status=SUCCESS, execution_id=13,
        task_id=40, trigger_type="MANUAL", execution_timestamp=1755764090,
        references=("1.25", "1.26"), source_resource=resource_name("library/nginx", 2),
        destination_resource=resource_name("mirror/nginx", 2), registry_name="central",
        registry_type="harbor", registry_endpoint="https://central.example.com",
        description="", authentication_type="", override_mode=False),
        "https://harbor.example.com:8443"),
    "error_scheduled": (event(
        repository="team/tools/app", operator="harbor-jobservice", occur_at=1755766800,
        job_status=ERROR, execution_id=14, task_id=41, trigger_type="SCHEDULE",
        execution_timestamp=1755766795, references=(NGINX,),
        source_resource=resource_name("team/tools/app", 1),
        destination_resource=resource_name("team/tools/app", 1), description="nightly copy"),
        "https://harbor.example.com"),
    "stopped": (event(
        operator="admin", occur_at=1755764200, job_status=STOPPED, execution_id=15,
        task_id=42, trigger_type="MANUAL", execution_timestamp=1755764190),
        "https://harbor.example.com"),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_payload_is_harbors_byte_for_byte(name):
    made, hostname = GOLDEN[name]
    body = encode(payload_for(made, hostname=hostname, public=False))
    golden = (FIXTURES / f"{name}.json").read_bytes()
    assert body == golden
    assert_harbor_compatible(golden)


def test_a_hostname_without_scheme_is_served_over_http():
    body = payload_for(event(), hostname="registry.local:8080", public=True)
    replication = body["event_data"]["replication"]
    assert replication["harbor_hostname"] == "registry.local"
    assert replication["src_resource"]["endpoint"] == "http://registry.local:8080"


def test_without_a_hostname_the_requests_host_names_the_local_side():
    body = payload_for(event(host="127.0.0.1:5001"), hostname="", public=True)
    assert body["event_data"]["replication"]["src_resource"]["endpoint"] == \
        "http://127.0.0.1:5001"


def test_running_and_stopped_carry_no_artifact_list():
    for status in (RUNNING, STOPPED):
        replication = payload_for(event(job_status=status), hostname="h.example",
                                  public=False)["event_data"]["replication"]
        assert "successful_artifact" not in replication
        assert "failed_artifact" not in replication


def _project(policies: tuple[StoredPolicy, ...]) -> ProjectPolicies:
    return ProjectPolicies("library", True, policies)


def _policy(pid: int, types: tuple[str, ...], filters: Filters | None = None) -> StoredPolicy:
    return StoredPolicy(id=pid, project="library", name=f"p{pid}", enabled=True,
                        event_types=types, targets=({"type": "http",
                                                     "address": f"http://x/{pid}"},),
                        filters=filters or Filters())


def test_the_source_projects_policies_receive_it():
    projects = {"library": _project((
        _policy(1, (REPLICATION,)),
        _policy(2, ("PUSH_ARTIFACT",)),
        _policy(3, (REPLICATION,), Filters(repositories=("web/**",))),
        _policy(4, (REPLICATION,), Filters(tags=("1.*",))),
    ))}
    [record] = build_records([event()], projects, {}, "harbor.example.com", True)
    assert record.project == "library" and record.repository == "library/nginx"
    assert [d.policy_id for d in record.deliveries] == [1, 4]
    assert record.payload["event_data"] == {"replication": record.payload["event_data"][
        "replication"]}


@pytest.mark.parametrize("change, rule", [
    (lambda r: r.update(extra="x"), "RP2"),
    (lambda r: r.update(override_mode=False), "RP2"),
    (lambda r: r.update(job_status="Done"), "RP3"),
    (lambda r: r["dest_resource"].pop("endpoint"), "RP4"),
    (lambda r: r.update(failed_artifact=r.pop("successful_artifact")), "RP5"),
    (lambda r: r["successful_artifact"][0].update(references=None), "B15"),
])
def test_consumer_rules_catch_a_broken_replication_payload(change, rule):
    import json

    payload = json.loads((FIXTURES / "success_manual.json").read_bytes())
    change(payload["event_data"]["replication"])
    with pytest.raises(AssertionError, match=rf"^{rule}:"):
        assert_harbor_compatible(payload)
