"""Endpoint health on a real `sidecar serve`: Slack's pace held across gunicorn workers."""

from __future__ import annotations

import json
import re
import time
import uuid

import requests

from tests.support import clients


def _csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


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


def test_a_target_failing_too_long_is_disabled_skipped_and_replayed(
        sidecar_factory, receiver_factory, image, tmp_path):
    from tests.support.receiver import Reply

    healthy = [False]
    hook = receiver_factory(lambda request: Reply(200 if healthy[0] else 500))
    sidecar = sidecar_factory(
        _rules({"type": "http", "address": hook.url + "?token=hush-77"}),
        config={"notification": {"webhook_job_max_retry": 1},
                "sidecar": {"delivery": {"auto_disable_after": "2s"}}})
    admin = sidecar.admin_headers()
    repo = f"down-{uuid.uuid4().hex[:8]}"
    layout, _ = image("v1")

    def push(tag: str) -> None:
        clients.push(layout, "v1", f"{sidecar.netloc}/proj/{repo}:{tag}")

    push("a")
    sidecar.wait_status(lambda s: s["deliveries"]["failed"] == 1)
    time.sleep(2.5)
    push("b")  # still failing, now for longer than 2 s: the target is disabled
    status = sidecar.wait_status(lambda s: s["disabled_targets"])
    [disabled] = status["disabled_targets"]
    assert disabled["policy"] == "chat" and disabled["address"].endswith("?token=***")
    assert "every delivery failed since" in disabled["reason"]
    assert "500" in disabled["reason"] and "hush-77" not in json.dumps(status)
    html = requests.get(f"{sidecar.url}/sidecar/status?format=html", headers=admin,
                        timeout=10).text
    assert 'id="disabled"' in html and "hush-77" not in html
    received = len(hook.requests)
    push("c")  # recorded, not sent
    status = sidecar.wait_status(lambda s: s["deliveries"]["skipped"] == 1)
    assert len(hook.requests) == received

    [policy] = requests.get(f"{sidecar.url}/api/v2.0/projects/proj/webhook/policies",
                            headers=admin, timeout=10).json()
    base = f"{sidecar.url}/api/v2.0/projects/proj/webhook/policies/{policy['id']}/health"
    [target] = requests.get(base, headers=admin, timeout=10).json()["targets"]
    assert target["disabled"] and target["skipped_deliveries"] == 1 and target["disabled_at"]
    page = requests.get(f"{sidecar.url}/sidecar/ui/projects/{policy['project_id']}/webhooks/"
                        f"{policy['id']}", headers=admin, timeout=10).text
    assert 'id="reenable"' in page and "is disabled since" in page

    healthy[0] = True
    # the UI's button: log in with the form, then post the policy page's re-enable form
    browser = requests.Session()
    login = browser.get(f"{sidecar.url}/sidecar/ui/login", timeout=10).text
    browser.post(f"{sidecar.url}/sidecar/ui/login", timeout=10, data={
        "csrf_token": _csrf(login), "username": "admin", "password": "Harbor12345"})
    ui_page = f"{sidecar.url}/sidecar/ui/projects/{policy['project_id']}/webhooks/{policy['id']}"
    page = browser.get(ui_page, timeout=10).text
    done = browser.post(f"{ui_page}/reenable", data={"csrf_token": _csrf(page)}, timeout=10)
    assert done.status_code == 200 and "1 endpoint(s) re-enabled; 1 skipped deliveries queued" \
        in done.text
    # nothing left for the API to re-enable
    answer = requests.post(f"{base}/reenable", headers=admin, timeout=10).json()
    assert answer == {"reenabled": 0, "replayed": 0}
    sidecar.wait_status(lambda s: s["deliveries"]["delivered"] == 1
                        and s["deliveries"]["skipped"] == 0 and not s["disabled_targets"])
    assert len(hook.requests) == received + 1
    push("d")  # enabled again: sent as usual
    sidecar.wait_status(lambda s: s["deliveries"]["delivered"] == 2)
