"""The web form <-> WebhookPolicy mapping: what saving the form keeps, where messages go."""

from __future__ import annotations

from werkzeug.datastructures import MultiDict

from sidecar.api.ui.forms import GENERAL
from sidecar.api.ui.forms import PolicyForm
from sidecar.api.ui.forms import field_errors
from sidecar.api.ui.forms import raw_policy
from sidecar.redact import MASK
from sidecar.rules.policy import parse_policy
from sidecar.rules.target import Target
from sidecar.store.views import PolicyView

SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"  # 24 bytes


def stored_policy(**changes) -> PolicyView:
    fields = dict(
        id=7, project_id=1, project="proj", name="ci", description="d", enabled=True,
        event_types=("PUSH_ARTIFACT",),
        targets=(
            Target("http", "https://ci.example/hook", auth_header="Bearer t",
                   payload_format="CloudEvents", options=(("cloudevents_mode", "binary"),),
                   secret=SECRET),
            Target("slack", "https://hooks.slack.example/x", payload_format=""),
        ),
        source="api", creator="admin", created_at=1.0, updated_at=1.0,
        options={"filters": {"tags": ["v*"]}, "pull_dedup_seconds": 60},
    )
    fields.update(changes)
    return PolicyView(**fields)


def posted(**values) -> MultiDict:
    base = {"name": "ci", "description": "d", "notify_type": "http",
            "payload_format": "CloudEvents", "address": "https://ci.example/hook",
            "auth_header": MASK, "verify_cert": "on", "enabled": "on"}
    base.update(values)
    form = MultiDict(base)
    form.setlist("event_types", values.get("event_types", ["PUSH_ARTIFACT", "PULL_ARTIFACT"]))
    return form


def test_saving_the_form_keeps_what_it_does_not_show():
    stored = stored_policy()
    form = PolicyForm.from_post(posted(description="new"))
    policy, problems = parse_policy(form.to_raw(stored), allow_unknown=True)
    assert problems == []
    assert policy.description == "new"
    assert policy.event_types == ("PUSH_ARTIFACT", "PULL_ARTIFACT")
    first, second = policy.targets
    assert (first.secret, first.option("cloudevents_mode")) == (SECRET, "binary")
    assert first.auth_header == MASK  # the store swaps it back for the stored one
    assert second.type == "slack"
    assert policy.pull_dedup_seconds == 60 and policy.filters.tags == ("v*",)
    assert PolicyForm.from_policy(stored).kept == [
        "1 more target(s)", "a signing secret", "CloudEvents binary mode", "filters",
        "pull de-duplication (60s)"]


def test_form_shows_a_stored_auth_header_masked_and_empty_removes_it():
    stored = stored_policy()
    assert PolicyForm.from_policy(stored).auth_header == MASK
    raw = PolicyForm.from_post(posted(auth_header="")).to_raw(stored)
    assert "auth_header" not in raw["targets"][0]


def test_switching_to_slack_drops_what_slack_cannot_have():
    raw = PolicyForm.from_post(posted(notify_type="slack", auth_header="Bearer x")).to_raw(
        stored_policy(targets=(Target("http", "https://a.example/", payload_format="CloudEvents",
                                      options=(("cloudevents_mode", "structured"),)),)))
    assert raw["targets"][0] == {"type": "slack", "address": "https://ci.example/hook",
                                 "skip_cert_verify": False}
    assert parse_policy(raw, allow_unknown=True)[1] == []


def test_unchecked_boxes_mean_false():
    form = PolicyForm.from_post(MultiDict({"name": "x", "address": "http://a.example/"}))
    assert (form.enabled, form.verify_cert, form.event_types) == (False, False, ())
    raw = form.to_raw()
    assert raw["enabled"] is False and raw["targets"][0]["skip_cert_verify"] is True


def test_harbor_messages_land_next_to_their_field():
    raw = PolicyForm.from_post(posted(name=" ", address="ftp://x.example/",
                                      payload_format="XML", event_types=["NOPE"])).to_raw()
    _, problems = parse_policy(raw, allow_unknown=True)
    assert field_errors(problems) == {
        "name": ["policy name is required"],
        "event_types": ["unsupported event type NOPE"],
        "address": ["invalid scheme: ftp"],
        "payload_format": ["unsupported payload format type: XML"],
    }


def test_problems_of_targets_the_form_does_not_show_are_general_and_say_which():
    raw = raw_policy(stored_policy(), targets=[
        {"type": "http", "address": "https://ok.example/"},
        {"type": "http", "address": ""},
    ])
    _, problems = parse_policy(raw, allow_unknown=True)
    assert field_errors(problems) == {GENERAL: ["target 2: empty URL"]}


def test_raw_policy_sends_the_whole_policy_back_with_a_change():
    raw = raw_policy(stored_policy(), enabled=False)
    policy, problems = parse_policy(raw, allow_unknown=True)
    assert problems == [] and policy.enabled is False
    assert policy.targets[0].auth_header == "Bearer t" and len(policy.targets) == 2
