"""TAG_RETENTION: Harbor's Default payload byte for byte, and the event that carries it.

The goldens in tests/fixtures/harbor_retention/ were written by hand from Harbor's structs
(goharbor/harbor `src/controller/event/model/event.go` `Retention`, `RetentionRule`,
`ArtifactInfo`; `src/pkg/retention/policy/rule/models.go` `Selector`) and the handler that fills
them (`src/controller/event/handler/webhook/artifact/retention.go` `constructRetentionPayload`):
Go field order, omitempty members left out, selectors always with all four keys, params and
scope_selectors map keys sorted, `&` written as \\u0026. The first is harbor-webhooks.md 1.3.10's
example. Harbor v2.10+ also writes `"references": null` per deleted artifact; we send no null
(B15) and leave it out, as Harbor up to v2.9 did.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecar.events.families import PAYLOAD_BUILDERS
from sidecar.events.families import payload_for
from sidecar.events.model import TAG_RETENTION
from sidecar.events.payload import encode
from sidecar.events.retention import DeletedArtifact
from sidecar.events.retention import TagRetentionEvent
from sidecar.events.retention import harbor_hostname
from sidecar.events.retention import retention_payload
from sidecar.record.recorder import build_records
from sidecar.rules.load import parse_rules
from sidecar.rules.policy import Filters
from sidecar.store.policies import ProjectPolicies
from sidecar.store.policies import StoredPolicy
from tests.consumer_rules import assert_harbor_compatible

FIXTURES = Path(__file__).parent / "fixtures" / "harbor_retention"
ALPINE = "sha256:2bb501e6173d9d006e56de5bce2720eb06396803300fe1687b58a7ff32bf4c14"


def rules_of(yaml_section: str) -> tuple[dict, ...]:
    """The policy's rules as the event carries them, read through the rules file."""
    text = "projects:\n  - name: p\n    retention:\n" + yaml_section
    policy = parse_rules(text, "rules.yaml", {}).project("p").retention
    return tuple(rule.as_harbor() for rule in policy.rules)


GOLDEN = {
    "latest_pushed_manual": (
        TagRetentionEvent(
            project="library", occur_at=1755764200, operator="admin", policy_id=2,
            total=3, retained=1,
            deleted=(DeletedArtifact("alpine", "sha256:" + "1" * 64, ("3.8", "3.8.1")),
                     DeletedArtifact("alpine", ALPINE)),
            rules=rules_of("""\
      rules:
        - template: latestPushedK
          params: {latestPushedK: 1}
          tag_selectors: [{kind: doublestar, decoration: matches, pattern: "**", extras: '{"untagged":true}'}]
          scope_selectors: {repository: [{kind: doublestar, decoration: repoMatches, pattern: "**"}]}
""")),  # noqa: E501
        "harbor.example.com"),
    "scheduled_nested_two_rules": (
        TagRetentionEvent(
            project="team", occur_at=1755850600, operator="harbor-jobservice", policy_id=12,
            total=4, retained=3,
            deleted=(DeletedArtifact("apps/web", "sha256:" + "2" * 64, ("dev-41", "dev-latest")),),
            rules=rules_of("""\
      schedule: "0 0 0 * * *"
      rules:
        - template: always
          tag_selectors:
            - {kind: doublestar, decoration: excludes, pattern: "{dev,qa}-*&x", extras: '{"untagged":true}'}
          scope_selectors: {repository: [{kind: doublestar, decoration: repoExcludes, pattern: "tools/**"}]}
        - template: nDaysSinceLastPull
          disabled: true
          params: {nDaysSinceLastPull: 7}
          tag_selectors: [{kind: doublestar, decoration: matches}]
""")),  # noqa: E501
        "https://Harbor.Example.com:8443/"),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_payload_matches_golden_bytes(name):
    event, hostname = GOLDEN[name]
    actual = encode(payload_for(event, hostname=hostname, public=False))
    fixture = FIXTURES / f"{name}.json"
    expected = fixture.read_bytes().rstrip(b"\n")
    if actual != expected:
        pytest.fail(f"TAG_RETENTION payload changed ({name}).\n  expected: {expected.decode()}\n"
                    f"  actual:   {actual.decode()}", pytrace=False)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_goldens_pass_the_consumer_rules(name):
    text = (FIXTURES / f"{name}.json").read_text().rstrip("\n")
    assert json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False) == \
        text.replace("\\u0026", "&")
    assert_harbor_compatible(text)
    assert {f.stem for f in FIXTURES.glob("*.json")} == set(GOLDEN)


def test_the_event_is_a_project_wide_family_with_a_registered_builder():
    """events/model.py's contract: repository "" for a project-wide event, project set."""
    event, _ = GOLDEN["latest_pushed_manual"]
    assert PAYLOAD_BUILDERS[TagRetentionEvent] is retention_payload
    assert (event.type, event.repository, event.project, event.name, event.tags,
            event.digest, event.request_id) == (TAG_RETENTION, "", "library", "", (), "", "")


def test_name_tag_is_the_first_tag_or_the_digest_without_the_project():
    assert DeletedArtifact("a/b", ALPINE, ("v2", "v1")).name_tag == "a/b:v2"
    assert DeletedArtifact("a/b", ALPINE).name_tag == f"a/b@{ALPINE}"


@pytest.mark.parametrize(("configured", "host"), [
    ("harbor.example.com", "harbor.example.com"),
    ("https://harbor.example.com", "harbor.example.com"),
    ("http://harbor.example.com:8080", "harbor.example.com"),  # Harbor splits ExtURL at ':'
    ("https://Harbor.Example.com:8443/", "harbor.example.com"),
    ("10.0.0.5:5000", "10.0.0.5"),
    ("", ""),
])
def test_harbor_hostname_has_no_scheme_and_no_port(configured, host):
    assert harbor_hostname(configured) == host


def test_optional_members_are_left_out_not_null():
    """omitempty: no hostname configured, policy id 0, no rules -> those keys are absent."""
    event = TagRetentionEvent(project="p", occur_at=1, operator="", policy_id=0, total=1,
                              retained=0, deleted=(DeletedArtifact("app", ALPINE),))
    retention = retention_payload(event, hostname="")["event_data"]["retention"]
    assert list(retention) == ["total", "retained", "project_name", "result",
                               "deleted_artifact"]
    assert_harbor_compatible(encode(retention_payload(event, hostname="")))


@pytest.mark.parametrize(("mutate", "rule"), [
    (lambda r: r["deleted_artifact"][0].update(references=None), "B15"),
    (lambda r: r.update(extra=1), "R2"),
    (lambda r: r.update(retained=r["total"] + 1), "R2"),
    (lambda r: r.update(harbor_hostname="harbor.example.com:443"), "R3"),
    (lambda r: r["retention_rule"][0]["tag_selectors"][0].pop("extras"), "R4"),
    (lambda r: r.update(result="Success"), "R5"),
    (lambda r: r["deleted_artifact"].pop(), "R6"),
    (lambda r: r["deleted_artifact"][0].update(name_tag="alpine"), "R6"),
])
def test_the_consumer_rules_catch_what_a_go_decoder_would_not_take(mutate, rule):
    payload = json.loads((FIXTURES / "latest_pushed_manual.json").read_text())
    mutate(payload["event_data"]["retention"])
    with pytest.raises(AssertionError, match=f"^{rule}:"):
        assert_harbor_compatible(payload)


def test_the_recorder_matches_and_records_it_like_any_family():
    """A project-wide event: a policy's repository and tag filters do not apply to it, as
    Harbor's GetRelatedPolices matches TAG_RETENTION by project and event type only."""
    event, _ = GOLDEN["latest_pushed_manual"]
    hook = {"type": "http", "address": "http://127.0.0.1:9/hook"}
    subscribed = StoredPolicy(id=1, project="library", name="ops", enabled=True,
                              event_types=(TAG_RETENTION,), targets=(hook,),
                              filters=Filters(repositories=("web/**",), tags=("v*",)))
    pushes_only = StoredPolicy(id=2, project="library", name="ci", enabled=True,
                               event_types=("PUSH_ARTIFACT",), targets=(hook,))
    projects = {"library": ProjectPolicies("library", False, (subscribed, pushes_only))}
    (record,) = build_records([event], projects, {}, "harbor.example.com", True)
    assert (record.type, record.project, record.repository, record.operator) == \
        (TAG_RETENTION, "library", "", "admin")
    assert [d.policy_id for d in record.deliveries] == [1]
    assert encode(record.payload) == \
        (FIXTURES / "latest_pushed_manual.json").read_bytes().rstrip(b"\n")
