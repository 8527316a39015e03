"""The safe test endpoint (Harbor removed its own): one sample event to each target."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask import request

from sidecar.api.harbor.blueprint import bp
from sidecar.api.harbor.blueprint import project
from sidecar.api.harbor.blueprint import runtime
from sidecar.api.harbor.params import HarborError
from sidecar.api.harbor.params import bad_request
from sidecar.api.harbor.params import json_body
from sidecar.dispatch.probe import probe
from sidecar.dispatch.probe import sample_event
from sidecar.redact import redact_address
from sidecar.rules.policy import parse_policy
from sidecar.rules.target import Target


def _test_targets(raw: Any) -> tuple[str, tuple[Target, ...]]:
    """Only targets matter; they are validated exactly as for create."""
    if not isinstance(raw, dict):
        raise bad_request("a webhook policy must be a JSON object")
    name = raw.get("name") if isinstance(raw.get("name"), str) else ""
    candidate = {"name": name or "test", "event_types": ["PUSH_ARTIFACT"],
                 "targets": raw.get("targets")}
    policy, problems = parse_policy(candidate, allow_unknown=True)
    if problems:  # repeat with the real name, for Harbor's "... with policy <name>" wording
        _, named = parse_policy({**candidate, "name": name}, allow_unknown=True)
        messages = [p for p in named if p.path and p.path[0] == "targets"] or problems
        raise bad_request(messages[0].message)
    return name, policy.targets


@bp.post("/projects/<ref>/webhook/policies/test")
def test_policy(ref: str):
    name, targets = _test_targets(json_body(request.get_data(), "policy"))
    found = project(ref)
    settings = runtime().settings
    payload = sample_event(found.name, settings.hostname or request.host)
    results = []
    for target in targets:
        outcome = probe(target, payload, settings.webhook_job_http_client_timeout,
                        project_id=found.id, addresses=runtime().addresses)
        results.append({
            "type": target.type,
            "address": redact_address(target.address),
            "payload_format": target.payload_format,
            "ok": outcome.ok,
            "status_code": outcome.status_code,
            "latency_ms": outcome.latency_ms,
            "error": outcome.error,
        })
    if all(r["ok"] for r in results):
        return jsonify({"results": results})
    raise HarborError(400, "BAD_REQUEST", f"notification policy {name} test failed",
                      extra={"results": results})
