"""Endpoint health on a real `sidecar serve`: Slack's pace held across gunicorn workers."""

from __future__ import annotations

import uuid

from tests.support import clients


def _rules(target: dict) -> dict:
    return {"projects": [{"name": "proj", "public": False, "webhooks": [
        {"name": "chat", "enabled": True, "event_types": ["PUSH_ARTIFACT"],
         "targets": [target]}]}]}


def test_slack_pace_is_one_per_second_across_workers(sidecar_factory, receiver_factory, image):
    hook = receiver_factory()
    sidecar = sidecar_factory(_rules({"type": "slack", "address": hook.url}), workers=3)
    repo = f"pace-{uuid.uuid4().hex[:8]}"
    layout, _ = image("v1")
    tags = [f"v{i}" for i in range(6)]
    for tag in tags:
        clients.push(layout, "v1", f"{sidecar.netloc}/proj/{repo}:{tag}")
    received = hook.wait_for(len(tags), timeout=60)
    times = sorted(r.at for r in received)
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    # one message a second to the URL, whichever worker sends (per-process pacing let three
    # workers send three at once); a little slack for a sender woken late on a busy machine
    assert min(gaps) >= 0.75, gaps
    assert times[-1] - times[0] >= len(tags) - 1 - 0.2, gaps
    status = sidecar.wait_status(lambda s: s["queue"]["depth"] == 0, timeout=30)
    assert status["deliveries"]["delivered"] == len(tags)
