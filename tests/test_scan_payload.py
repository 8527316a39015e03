"""Scan events on the wire: Harbor 2.10's SCANNING_* payloads byte for byte, the 2.11 shape as
an option, and the summaries inside them computed from adapter reports.

The goldens in tests/fixtures/harbor_scan/ were written by hand from Harbor's structs and the
examples of its webhook docs (payload 2.10: no `event_data.scan`; `"summary": null` of an
unfinished scan left out, as no null goes on our wire), not generated from this code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecar.dispatch.render import render
from sidecar.events.families import PAYLOAD_BUILDERS
from sidecar.events.families import payload_for
from sidecar.events.model import SCANNING_COMPLETED
from sidecar.events.model import SCANNING_FAILED
from sidecar.events.model import SCANNING_STOPPED
from sidecar.events.payload import encode
from sidecar.events.scan import EVENT_FOR_STATUS
from sidecar.events.scan import ScanEvent
from sidecar.events.scan import harbor_shape
from sidecar.events.scan import scan_payload
from sidecar.record.recorder import build_records
from sidecar.record.recorder import policies_for_event
from sidecar.rules.policy import Filters
from sidecar.rules.policy import parse_policy
from sidecar.scan import summary
from sidecar.scan.report import report_from
from sidecar.scan.spec import GENERIC_REPORT
from sidecar.scan.spec import NATIVE_REPORT
from sidecar.store.policies import ProjectPolicies
from sidecar.store.policies import StoredPolicy
from tests.consumer_rules import assert_harbor_compatible

FIXTURES = Path(__file__).parent / "fixtures" / "harbor_scan"
NGINX = "sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8"
CHILD = "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4"
ALPINE_FAILED = "sha256:dabea2944dcc2b86482b4f0b0fb62da80e0673e900c46c0e03b45919881a5d84"
ALPINE_STOPPED = "sha256:e802987f152d7826cf929ad4999fb3bb956ce7a30966aeb46c749f9120eaf22c"
TRIVY = {"name": "Trivy", "vendor": "Aqua Security", "version": "v0.58.1"}


def item(n: int, severity: str, fixed: bool, package: str = "pkg") -> dict:
    return {"id": f"CVE-2025-{n:04d}", "package": package, "version": "1.0",
            "fix_version": "1.1" if fixed else "", "severity": severity}


def nginx_report() -> dict:
    """12 distinct findings (2 High, 4 Medium, 6 Low; 7 fixable) and two repeats of one of
    them, which Harbor counts once."""
    items = ([item(n, "High", True) for n in range(2)]
             + [item(10 + n, "Medium", n < 3) for n in range(4)]
             + [item(20 + n, "Low", n < 2) for n in range(6)])
    repeats = [dict(items[5]), dict(items[5], description="seen in a second layer")]
    return {"generated_at": "2025-08-21T08:05:08Z", "scanner": TRIVY, "severity": "High",
            "vulnerabilities": items + repeats}


def completed_overview(report: dict, report_id: str, start: float, end: float) -> dict:
    return summary.completed(report_from(report), report_id=report_id, start_time=start,
                             end_time=end).as_dict()


def unfinished_overview(status: str, report_id: str, start: float, end: float) -> dict:
    return summary.unfinished(status, report_id=report_id, start_time=start,
                              end_time=end).as_dict()


# name -> (event, hostname, public)
GOLDEN = {
    "scanning_completed": lambda: (ScanEvent(
        type=SCANNING_COMPLETED, repository="library/nginx", digest=NGINX, operator="alice",
        occur_at=1755763500, tags=("1.25",),
        scan_overview={GENERIC_REPORT: completed_overview(
            nginx_report(), "af0546c1-67dc-4e9d-927e-372900ead0df", 1755763500, 1755763508)},
    ), "https://harbor.example.com", True),
    "scanning_completed_index_child": lambda: (ScanEvent(
        type=SCANNING_COMPLETED, repository="team/tools/app", digest=CHILD,
        operator="robot$team+ci", occur_at=1604653673,
        scan_overview={
            GENERIC_REPORT: completed_overview(
                {"scanner": {"name": "Clair", "vendor": "CoreOS", "version": "2.x"},
                 "vulnerabilities": None},
                "5d8c5a8e-2222-4b4a-9f55-0d5e0c7a2b02", 1604653671.9, 1604653672.12667),
            NATIVE_REPORT: completed_overview(
                {"scanner": {"name": "Clair", "vendor": "CoreOS", "version": "2.x"}},
                "5d8c5a8e-1111-4b4a-9f55-0d5e0c7a2b01", 1604653671.9, 1604653672.12667),
        },
    ), "Registry.Example.com:8443", False),
    "scanning_failed": lambda: (ScanEvent(
        type=SCANNING_FAILED, repository="library/alpine", digest=ALPINE_FAILED,
        operator="alice", occur_at=1755763700,
        scan_overview={GENERIC_REPORT: unfinished_overview(
            "Error", "a2573415-c727-4723-bc92-376c1d978637", 1755760275, 1755760285)},
    ), "harbor.example.com", False),
    "scanning_stopped": lambda: (ScanEvent(
        type=SCANNING_STOPPED, repository="library/alpine", digest=ALPINE_STOPPED,
        operator="alice", occur_at=1755763800,
        scan_overview={GENERIC_REPORT: unfinished_overview(
            "Stopped", "bf92700b-fa5e-4fe4-891c-42b730c81151", 1755756729, 1755756734)},
    ), "http://harbor.example.com", False),
}


def golden_bytes(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes().rstrip(b"\n")


def assert_golden(name: str, payload: dict) -> None:
    actual, expected = encode(payload), golden_bytes(name)
    if actual != expected:
        pytest.fail(f"scan payload format has changed ({name}).\n  expected: "
                    f"{expected.decode()}\n  actual:   {actual.decode()}\nStrict receivers (the "
                    "Jenkins plugin) compare keys, order and types.", pytrace=False)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_scan_payload_matches_golden_bytes(name):
    event, hostname, public = GOLDEN[name]()
    assert_golden(name, scan_payload(event, hostname=hostname, public=public))


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_default_scan_payloads_pass_every_strict_receiver_rule(name):
    assert_harbor_compatible(golden_bytes(name))


def test_the_2_11_shape_adds_event_data_scan_where_harbor_declares_it():
    event, hostname, public = GOLDEN["scanning_completed"]()
    stored = scan_payload(event, hostname=hostname, public=public)
    assert_golden("scanning_completed_2.11", harbor_shape(stored, "2.11"))
    assert harbor_shape(stored, "2.10") == stored
    assert "scan" not in stored["event_data"]  # the stored form is 2.10's


def test_the_2_11_shape_is_what_the_jenkins_plugin_refuses():
    """Why 2.10 is the default: Jenkins' EventData has no `scan` member (strict Jackson)."""
    with pytest.raises(AssertionError, match="B2: event_data keys outside"):
        assert_harbor_compatible(golden_bytes("scanning_completed_2.11"))


def test_2_11_scan_type_follows_the_overview_as_harbor_sets_it():
    event, hostname, public = GOLDEN["scanning_failed"]()
    stored = scan_payload(event, hostname=hostname, public=public)
    assert harbor_shape(stored, "2.11")["event_data"]["scan"] == {"scan_type": "vulnerability"}
    bare = json.loads(json.dumps(stored))
    del bare["event_data"]["resources"][0]["scan_overview"]
    # Harbor's scan-all events carry neither overview and an empty scan object
    assert harbor_shape(bare, "2.11")["event_data"]["scan"] == {}
    sbom = json.loads(json.dumps(bare))
    sbom["event_data"]["resources"][0]["sbom_overview"] = {"scan_status": "Success"}
    assert harbor_shape(sbom, "2.11")["event_data"]["scan"] == {"scan_type": "sbom"}


def test_2_11_leaves_other_events_alone_and_refuses_unknown_versions():
    push = json.loads((Path(__file__).parent / "fixtures" / "harbor" / "push_by_tag.json")
                      .read_text())
    assert harbor_shape(push, "2.11") == push
    with pytest.raises(ValueError, match="2.12"):
        harbor_shape(push, "2.12")


def test_golden_fixtures_are_compact_json_in_harbor_order():
    for fixture in FIXTURES.glob("*.json"):
        text = fixture.read_text().rstrip("\n")
        data = json.loads(text)
        assert json.dumps(data, separators=(",", ":"), ensure_ascii=False) == text, fixture
        assert list(data) == ["type", "occur_at", "operator", "event_data"], fixture
    assert {f.stem for f in FIXTURES.glob("*.json")} == {*GOLDEN, "scanning_completed_2.11"}


def test_event_type_follows_harbors_task_status():
    assert EVENT_FOR_STATUS == {"Success": SCANNING_COMPLETED, "Error": SCANNING_FAILED,
                                "Stopped": SCANNING_STOPPED}


# --- a scan event records like any other family ---------------------------------------------

def test_scan_events_are_registered_with_the_payload_table():
    event, hostname, public = GOLDEN["scanning_completed"]()
    assert ScanEvent in PAYLOAD_BUILDERS
    assert payload_for(event, hostname=hostname, public=public, date_created=1700000000) == \
        scan_payload(event, hostname=hostname, public=public)  # no date_created, as Harbor


def policy(pid: int, event_types: tuple[str, ...], filters: Filters | None = None,
           ) -> StoredPolicy:
    return StoredPolicy(id=pid, project="library", name=f"p{pid}", enabled=True,
                        event_types=event_types, filters=filters or Filters(),
                        targets=({"type": "http", "address": f"http://ci{pid}.example/h"},))


def test_the_recorder_matches_and_records_scan_events_by_type_repository_and_tag():
    event, hostname, public = GOLDEN["scanning_completed"]()
    project = ProjectPolicies(name="library", public=True, policies=(
        policy(1, (SCANNING_COMPLETED,)),
        policy(2, (SCANNING_FAILED,)),
        policy(3, (SCANNING_COMPLETED,), Filters(repositories=("nginx",), tags=("1.*",))),
        policy(4, (SCANNING_COMPLETED,), Filters(tags=("2.*",))),
        policy(5, (SCANNING_COMPLETED,), Filters(ignore_operators=("alice",))),
    ))
    assert [p.id for p in policies_for_event(event, project)] == [1, 3]
    [record] = build_records([event], {"library": project}, {}, hostname, True)
    assert record.type == SCANNING_COMPLETED and record.repository == "library/nginx"
    assert record.project == "library" and record.operator == "alice"
    assert [d.policy_id for d in record.deliveries] == [1, 3]
    assert encode(record.payload) == golden_bytes("scanning_completed")


def test_an_untagged_scan_matches_tag_filters_by_its_digest():
    event, _, _ = GOLDEN["scanning_failed"]()
    project = ProjectPolicies(name="library", public=False, policies=(
        policy(1, (SCANNING_FAILED,), Filters(tags=("sha256:*",))),
        policy(2, (SCANNING_FAILED,), Filters(tags=("latest",))),
    ))
    assert [p.id for p in policies_for_event(event, project)] == [1]


# -- payload_version: a target's choice, applied when the request is rendered -------------

def _completed_payload() -> dict:
    event, hostname, public = GOLDEN["scanning_completed"]()
    return scan_payload(event, hostname=hostname, public=public)


def test_a_target_gets_the_shape_of_the_harbor_version_it_asks_for():
    stored = _completed_payload()
    plain = render(stored, {"type": "http", "address": "http://x/hook"}, "msg_1")
    newer = render(stored, {"type": "http", "address": "http://x/hook",
                            "payload_version": "2.11"}, "msg_1")
    assert plain.body == golden_bytes("scanning_completed")
    assert newer.body == golden_bytes("scanning_completed_2.11")
    cloud = render(stored, {"type": "http", "address": "http://x/hook",
                            "payload_format": "CloudEvents", "payload_version": "2.11"}, "msg_1")
    assert json.loads(cloud.body)["data"]["scan"] == {"scan_type": "vulnerability"}
    slack = render(stored, {"type": "slack", "address": "http://x/hook",
                            "payload_version": "2.11"}, "msg_1")
    assert "scan_type" in slack.body.decode()


@pytest.mark.parametrize(("value", "problem"), [
    ("2.11", None),
    ("2.10", None),
    (2.1, "payload_version must be a string: quote it (\"2.10\"; YAML reads 2.10 as the "
          "number 2.1)"),
    ("2.12", "unsupported payload_version 2.12 (expected 2.10 or 2.11)"),
])
def test_payload_version_is_validated_with_the_policy(value, problem):
    policy, problems = parse_policy({
        "name": "p", "event_types": ["SCANNING_COMPLETED"],
        "targets": [{"type": "http", "address": "http://x/hook", "payload_version": value}]})
    if problem is None:
        assert not problems and policy.targets[0].as_dict()["payload_version"] == value
    else:
        assert [p.message for p in problems] == [problem]
