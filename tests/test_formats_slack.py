"""Slack targets: Harbor's Block Kit message as valid JSON, cut to Slack's limits, paced per URL."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sidecar.dispatch.formats.slack import SECTION_LIMIT
from sidecar.dispatch.ratelimit import IntervalLimiter
from sidecar.dispatch.render import Context
from sidecar.dispatch.render import render
from sidecar.events.model import PUSH_ARTIFACT
from sidecar.events.model import ArtifactEvent
from sidecar.events.payload import artifact_payload

DIGEST = "sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8"
SLACK = {"type": "slack", "address": "https://hooks.slack.example/services/T0/B0/xyz",
         "auth_header": "Bearer must-not-be-sent", "skip_cert_verify": False}

#: Harbor's SlackBodyTemplate (src/pkg/notifier/handler/notification/slack_handler.go),
#: verbatim with its whitespace; rendered below exactly as Harbor's text/template does.
HARBOR_TEMPLATE = (Path(__file__).parent / "fixtures" / "harbor_slack_template.txt").read_text()


def harbor_slack_body(payload: dict) -> str:
    """What Harbor's SlackHandler sends: the template filled with its escapeEventData."""
    indented = json.dumps(payload["event_data"], indent="\t")  # json.MarshalIndent(v, "", "\t")
    escaped = indented.replace('"', '\\"').replace('\\\\"', '\\\\\\"')
    return (HARBOR_TEMPLATE.replace("{{.Type}}", payload["type"])
            .replace("{{.OccurAt}}", str(payload["occur_at"]))
            .replace("{{.Operator}}", payload["operator"])
            .replace("{{.EventData}}", "```" + escaped + "```"))


def push_payload(**extra) -> dict:
    event = ArtifactEvent(type=PUSH_ARTIFACT, repository="library/nginx", digest=DIGEST,
                          operator="alice", occur_at=1755763200, tags=("1.25",), **extra)
    return artifact_payload(event, hostname="harbor.example.com", public=True,
                            date_created=1755700000)


def slack_request(payload: dict, target: dict = SLACK):
    return render(payload, target, Context(delivery_uid="msg_" + "a" * 32, now=1755763201.0))


def test_body_is_valid_json_with_harbors_blocks_and_text():
    payload = push_payload()
    request = slack_request(payload)
    ours = json.loads(request.body)  # strict: Harbor's own body would fail here
    harbor = json.loads(harbor_slack_body(payload), strict=False)  # Slack's lenient reading
    assert ours == harbor
    texts = [block["text"]["text"] for block in ours["blocks"]]
    assert texts[:5] == [
        "*Harbor webhook events*", "*event_type:* PUSH_ARTIFACT",
        "*occur_at:* <!date^1755763200^{date} at {time}|February 18th, 2014 at 6:39 AM PST>",
        "*operator:* alice", "*event_data:*"]
    assert texts[5].startswith('```{\n\t"resources": [\n\t\t{\n\t\t\t"digest": "sha256:8a9e')
    assert list(ours) == ["blocks"]  # no top-level text, as Harbor


def test_headers_have_no_authorization_and_tls_choice_is_kept():
    request = slack_request(push_payload())
    assert request.headers["Content-Type"] == "application/json"
    assert "Authorization" not in request.headers
    assert not any(name.lower().startswith("webhook-") for name in request.headers)
    assert request.verify_tls is True
    insecure = slack_request(push_payload(), {**SLACK, "skip_cert_verify": True})
    assert insecure.verify_tls is False
    assert request.url == SLACK["address"]


def test_long_event_data_is_cut_to_slacks_section_limit_with_a_marker():
    payload = push_payload(extra={f"label{i:03d}": "x" * 40 for i in range(200)})
    blocks = json.loads(slack_request(payload).body)["blocks"]
    text = blocks[5]["text"]["text"]
    assert len(text) <= SECTION_LIMIT
    assert text.startswith("```{") and text.endswith("```")
    assert "[cut:" in text and f"at most {SECTION_LIMIT}" in text
    for block in blocks:
        assert len(block["text"]["text"]) <= SECTION_LIMIT


def test_short_event_data_is_not_marked():
    text = json.loads(slack_request(push_payload()).body)["blocks"][5]["text"]["text"]
    assert "[cut:" not in text


def test_mrkdwn_control_characters_in_values_are_escaped():
    payload = push_payload(extra={"note": "a<b & c>d"})
    payload["operator"] = "<!channel>"
    blocks = json.loads(slack_request(payload).body)["blocks"]
    assert blocks[3]["text"]["text"] == "*operator:* &lt;!channel&gt;"
    assert '"note": "a&lt;b &amp; c&gt;d"' in blocks[5]["text"]["text"]


def test_cut_never_leaves_half_an_entity():
    payload = push_payload(extra={"note": "&" * 5000})
    text = json.loads(slack_request(payload).body)["blocks"][5]["text"]["text"]
    head = text.split("\n…")[0]
    assert re.search(r"&(?!amp;|lt;|gt;)", head) is None  # every & starts a whole entity


class TestPacing:
    URL = "https://hooks.slack.example/a"

    def test_one_slot_per_interval_per_url(self):
        limiter = IntervalLimiter(interval=1.0, max_wait=5.0)
        slots = [limiter.reserve(self.URL, f"d{i}", now=100.0) for i in range(3)]
        assert [s.at for s in slots] == [100.0, 101.0, 102.0]
        assert [s.wait for s in slots] == [0.0, 1.0, 2.0]
        other = limiter.reserve("https://hooks.slack.example/b", "e", now=100.0)
        assert other.wait == 0.0  # another webhook URL has its own pace

    def test_a_far_slot_is_booked_and_the_delivery_requeued_until_just_before_it(self):
        limiter = IntervalLimiter(interval=1.0, max_wait=1.0)
        assert not limiter.reserve(self.URL, "a", 100.0).postpone
        assert not limiter.reserve(self.URL, "b", 100.0).postpone  # 1 s away: wait
        far = limiter.reserve(self.URL, "c", 100.0)
        assert far.postpone and far.at == 102.0 and far.requeue_at == 101.0
        assert limiter.reserve(self.URL, "d", 100.0).at == 103.0  # c's slot stays c's
        back = limiter.reserve(self.URL, "c", 101.3)  # c is claimed again: waits for its slot
        assert not back.postpone and back.at == 102.0 and back.wait == pytest.approx(0.7)

    def test_a_booking_missed_is_not_honoured_in_the_past(self):
        limiter = IntervalLimiter(interval=1.0, max_wait=1.0)
        limiter.reserve(self.URL, "a", 100.0)
        limiter.reserve(self.URL, "b", 100.0)
        assert limiter.reserve(self.URL, "c", 100.0).at == 102.0  # booked
        assert limiter.reserve(self.URL, "d", 101.9).at == 103.0  # d waits for 103
        late = limiter.reserve(self.URL, "c", 102.6)  # c back too late for 102
        assert late.at == 104.0  # a fresh slot after d's, so no gap is shorter than 1 s

    def test_retry_after_pauses_the_url_even_for_a_sender_already_waiting(self):
        limiter = IntervalLimiter(interval=1.0, max_wait=1.0)
        clock = [100.0]

        def sleep(seconds):
            limiter.defer(self.URL, 130.0)  # a 429 for "a" arrives while "b" sleeps
            clock[0] += seconds

        assert limiter.turn(self.URL, "a", clock=lambda: clock[0], sleep=sleep) is None
        assert limiter.turn(self.URL, "b", clock=lambda: clock[0], sleep=sleep) == 130.0
        slot = limiter.reserve(self.URL, "c", 100.5)
        assert slot.postpone and slot.at == 130.0
