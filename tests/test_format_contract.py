"""One contract every payload format keeps, run against each row of the formats table (the
shape of huey's StorageTests: the same tests, once per registered format).

A new format passes this without a line added here: its module defines `FORMAT`, and its
golden (tests/fixtures/formats/<name>.http, the exact requests it sends for the samples below)
is written once with SIDECAR_WRITE_GOLDENS=1 and read before it is committed.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import os
import time
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from sidecar.dispatch import formats
from sidecar.dispatch.render import Context
from sidecar.dispatch.render import min_interval
from sidecar.dispatch.render import needs_project_id
from sidecar.dispatch.render import render
from sidecar.events.families import payload_for
from sidecar.events.model import DELETE_CHART
from sidecar.events.model import EVENT_TYPES
from sidecar.events.model import PULL_ARTIFACT
from sidecar.events.model import PUSH_ARTIFACT
from sidecar.events.model import UPLOAD_CHART
from sidecar.events.model import ArtifactEvent
from sidecar.events.model import ChartEvent
from sidecar.rules.policy import parse_policy
from sidecar.rules.target import Target

GOLDENS = Path(__file__).parent / "fixtures" / "formats"
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
AUTH = "Bearer contract-token-1234"
ADDRESS = "https://receiver.example/hooks/harbor"
DIGEST = "sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8"
CONTEXT = Context(delivery_uid="msg_00112233445566778899aabbccddeeff", now=1755763201.0,
                  policy_id=15, project_id=2, request_id="51c0b694-0168-4f3c-b0db-282565455d7b")

#: name -> a Default payload of each event family, with what receivers trip on (escapes,
#: non-ASCII, an anonymous operator, several resources)
SAMPLES = {
    "push_artifact": payload_for(
        ArtifactEvent(type=PUSH_ARTIFACT, repository="library/nginx", digest=DIGEST,
                      operator="alice", occur_at=1755763200, tags=("1.25",), size=2457),
        hostname="harbor.example.com", public=True, date_created=1755700000),
    "pull_artifact": payload_for(
        ArtifactEvent(type=PULL_ARTIFACT, repository="team/tools/runner", digest=DIGEST,
                      operator="robot$team+ci", occur_at=1755763300, tags=(),
                      extra={"note": "<b> & jürgen's \u2028"}),
        hostname="https://Registry.Example.com:8443/", public=False, date_created=None),
    "upload_chart": payload_for(
        ChartEvent(type=UPLOAD_CHART, repository="library/app", chart="app",
                   versions=("1.0.0",), operator="alice", occur_at=1755763400,
                   host="harbor.example.com", download_base="/chartrepo/library/charts/",
                   size=3918),
        hostname="harbor.example.com", public=True),
    "delete_chart": payload_for(
        ChartEvent(type=DELETE_CHART, repository="library/app", chart="app",
                   versions=("1.0.0", "1.1.0"), operator="", occur_at=1755763500,
                   host="harbor.example.com", download_base="/chartrepo/library/charts/"),
        hostname="harbor.example.com", public=False),
}


def variants(fmt: formats.Format) -> list[tuple[tuple[str, str], ...]]:
    """Every combination of the format's option values (CloudEvents: structured, binary)."""
    names = list(fmt.options)
    return [tuple(zip(names, values, strict=True))
            for values in itertools.product(*(fmt.options[n] for n in names))]


def target(fmt: formats.Format, options=(), **changes) -> Target:
    """A target of this format with every field it accepts set."""
    fields = dict(type=fmt.type, address=ADDRESS, payload_format=fmt.payload_format,
                  auth_header=AUTH if fmt.accepts("auth_header") else "",
                  secret=SECRET if fmt.accepts("secret") else "", options=tuple(options))
    fields.update(changes)
    return Target(**fields)


def golden_text(fmt: formats.Format) -> str:
    """The requests this format sends for every sample and variant, as HTTP-ish text."""
    sections = []
    for name, options in itertools.product(SAMPLES, variants(fmt)):
        request = render(SAMPLES[name], target(fmt, options), CONTEXT)
        title = " ".join([name, *(f"{k}={v}" for k, v in options)])
        headers = "".join(f"{k}: {v}\n" for k, v in request.headers.items())
        sections.append(f"### {title}\nPOST {request.url}\n{headers}\n"
                        f"{request.body.decode('utf-8')}\n")
    return "\n".join(sections)


@pytest.mark.parametrize("fmt", formats.FORMATS, ids=lambda f: f.name)
class TestEveryFormat:
    def requests(self, fmt, context=CONTEXT, **changes):
        for name, options in itertools.product(SAMPLES, variants(fmt)):
            yield name, render(SAMPLES[name], target(fmt, options, **changes), context)

    def test_renders_bytes_with_a_content_type_and_our_user_agent(self, fmt):
        for _, request in self.requests(fmt):
            assert isinstance(request.body, bytes) and request.body
            content_type = request.headers["Content-Type"]
            if "json" in content_type:
                json.loads(request.body)  # strict: raw newlines or tabs in strings fail
            assert request.headers["User-Agent"] == "registry-webhook-sidecar"
            assert request.url == ADDRESS

    def test_auth_header_is_sent_verbatim_only_by_formats_that_use_it(self, fmt):
        for _, request in self.requests(fmt, auth_header=AUTH):
            if "auth_header" in fmt.uses:
                assert request.headers["Authorization"] == AUTH
            else:  # Slack: Harbor ignores it, and so do we
                assert "Authorization" not in request.headers
            assert AUTH.encode() not in request.body

    def test_signing_formats_sign_with_the_reference_scheme(self, fmt):
        now = dataclasses.replace(CONTEXT, now=time.time())  # verifiers refuse old timestamps
        for _, request in self.requests(fmt, now, secret=SECRET):
            signed = any(name.startswith("webhook-") for name in request.headers)
            assert signed == ("secret" in fmt.uses)
            if signed:
                Webhook(SECRET).verify(request.body, request.headers)
            assert SECRET.encode() not in request.body

    def test_no_signature_without_a_secret(self, fmt):
        for _, request in self.requests(fmt, secret=""):
            assert not any(name.startswith("webhook-") for name in request.headers)

    def test_a_retry_repeats_body_and_ids(self, fmt):
        for name, options in itertools.product(SAMPLES, variants(fmt)):
            first = render(SAMPLES[name], target(fmt, options), CONTEXT)
            retry = render(SAMPLES[name], target(fmt, options),
                           dataclasses.replace(CONTEXT, now=CONTEXT.now + 90))
            assert retry.body == first.body
            for header in ("webhook-id", "ce-id"):
                assert retry.headers.get(header) == first.headers.get(header)

    def test_renders_when_no_ids_are_known(self, fmt):
        for options in variants(fmt):  # a policy deleted since the event: no ids to name
            assert render(SAMPLES["push_artifact"], target(fmt, options), "msg_x").body

    def test_every_event_type_renders(self, fmt):
        base = SAMPLES["push_artifact"]
        for event_type in EVENT_TYPES:
            render({**base, "type": event_type}, target(fmt), CONTEXT)

    def test_tls_verification_follows_the_target(self, fmt):
        assert render(SAMPLES["push_artifact"], target(fmt), CONTEXT).verify_tls is True
        insecure = target(fmt, skip_cert_verify=True)
        assert render(SAMPLES["push_artifact"], insecure, CONTEXT).verify_tls is False

    def test_rules_accept_its_fields_and_the_stored_form_renders_the_same(self, fmt):
        for options in variants(fmt):
            typed = target(fmt, options)
            raw = typed.as_dict()
            policy, problems = parse_policy({"name": "p", "event_types": ["PUSH_ARTIFACT"],
                                             "targets": [raw]})
            assert problems == []
            assert policy.targets[0] == typed
            assert Target.from_dict(json.loads(json.dumps(raw))) == typed
            assert formats.format_for(raw) is formats.format_for(typed) is fmt

    def test_rules_refuse_fields_it_does_not_take(self, fmt):
        for name in ("secret", *formats.option_owners()):
            if fmt.accepts(name):
                continue
            value = SECRET if name == "secret" else "x"
            raw = {**target(fmt).as_dict(), name: value}
            _, problems = parse_policy({"name": "p", "event_types": ["PUSH_ARTIFACT"],
                                        "targets": [raw]})
            assert [p.path for p in problems] == [("targets", 0, name)]

    def test_pacing_and_project_lookup_are_data(self, fmt):
        typed = target(fmt)
        assert min_interval(typed) == fmt.min_interval >= 0
        assert min_interval(typed.as_dict()) == fmt.min_interval
        assert needs_project_id(typed) == fmt.needs_project_id

    def test_requests_match_the_golden(self, fmt):
        golden = GOLDENS / f"{fmt.name}.http"
        actual = golden_text(fmt)
        if os.environ.get("SIDECAR_WRITE_GOLDENS") == "1":
            golden.write_text(actual, encoding="utf-8")
        if not golden.exists():
            pytest.fail(f"{golden.relative_to(Path(__file__).parent)} is missing: write it "
                        "with SIDECAR_WRITE_GOLDENS=1 and read it before committing",
                        pytrace=False)
        expected = golden.read_text(encoding="utf-8")
        assert actual == expected, (
            f"the requests of format {fmt.name} changed: receivers parse them byte for byte. "
            f"If intended, rewrite {golden.name} (SIDECAR_WRITE_GOLDENS=1) and review the diff")


def test_every_golden_belongs_to_a_format():
    names = {fmt.name for fmt in formats.FORMATS}
    assert {path.stem for path in GOLDENS.glob("*.http")} <= names


def test_harbors_names_come_first_in_harbors_order():
    assert formats.target_types()[:2] == ("http", "slack")
    assert formats.payload_formats("http")[:2] == ("Default", "CloudEvents")
    assert formats.payload_formats("slack") == ()
    assert formats.default_payload_format("http") == "Default"
