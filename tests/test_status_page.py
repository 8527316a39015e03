"""The status page as a person sees it in a real browser (headless Debian chromium).

A failing endpoint is listed first with its error, the last triggers per policy are there, and
no secret (auth header, query token, userinfo password) appears anywhere in the page.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest

from tests.support import clients
from tests.support.receiver import Reply

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("SIDECAR_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]
OUTPUT = Path(__file__).resolve().parent.parent / "test-output"

AUTH_TOKEN = "tok-AUTH-5ecret-9f3a"
QUERY_TOKEN = "tok-QUERY-5ecret-77c1"
PASSWORD = "pw-USERINFO-5ecret"


@pytest.fixture
def browser_page(tmp_path):
    """A page in a fresh headless chromium profile; fails plainly if chromium is absent."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the status page test needs the `playwright` package: pip install -e '.[test]'")
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.fail("the status page test needs Debian's chromium: scripts/install-deps "
                    "installs it")
    executable = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=executable, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def _rules(broken: str, good: str) -> dict:
    def policy(name, address, events, auth=None):
        target = {"type": "http", "address": address, "skip_cert_verify": False,
                  "payload_format": "Default"}
        if auth:
            target["auth_header"] = auth
        return {"name": name, "enabled": True, "event_types": events, "targets": [target]}

    return {"projects": [{"name": "proj", "public": False, "webhooks": [
        policy("broken", broken, ["PUSH_ARTIFACT"], auth="Bearer ${HOOK_TOKEN}"),
        policy("good", good, ["PUSH_ARTIFACT", "PULL_ARTIFACT"]),
    ]}]}


def test_status_page_in_a_browser(sidecar_factory, receiver_factory, image, tmp_path,
                                  browser_page):
    # The failing receiver echoes the secrets back: they must not reach the page that way either.
    broken = receiver_factory([Reply(500, body=f"denied {AUTH_TOKEN} {QUERY_TOKEN}".encode())])
    good = receiver_factory()
    broken_address = broken.url.replace("http://", f"http://ops:{PASSWORD}@") + \
        f"?token={QUERY_TOKEN}"
    sidecar = sidecar_factory(_rules(broken_address, good.url),
                              env={"HOOK_TOKEN": AUTH_TOKEN})
    layout, _ = image("v1")
    ref = f"{sidecar.netloc}/proj/app:v1"
    clients.push(layout, "v1", ref)
    sidecar.wait_status(lambda s: s["deliveries"]["failed"] == 1, timeout=30)
    assert len(broken.requests) == 3  # webhook_job_max_retry attempts, all answered 500
    # the healthy endpoint's latest attempt comes after the failure: it still lists second
    clients.pull(ref, tmp_path / "out")
    sidecar.wait_status(lambda s: s["queue"]["depth"] == 0 and s["deliveries"]["delivered"] >= 2)

    page = browser_page
    # the status page is the admin's: a browser without a session is sent to the UI's login
    # form, and comes back to the page after it
    page.goto(f"{sidecar.url}/sidecar/status")
    assert "/sidecar/ui/login" in page.url
    page.fill("#password", "Harbor12345")
    with page.expect_navigation():
        page.click("button[type=submit]")
    response = page.goto(f"{sidecar.url}/sidecar/status")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "status-page.png"), full_page=True)

    visible = page.inner_text("body")
    assert "Webhook sidecar status" in visible
    assert "reachable" in page.inner_text("#upstream")
    assert page.inner_text("#queue").split()[2] == "0"  # "Queue depth 0 ..."

    rows = page.locator("tr.endpoint")
    assert rows.count() == 2
    first, second = rows.nth(0).inner_text(), rows.nth(1).inner_text()
    broken_shown = f"http://127.0.0.1:{broken.port}/hook?token=***"
    assert broken_shown in first
    assert "failing" in first
    assert "500" in first and "abnormal response code: 500" in first
    assert good.url in second and "ok" in second
    # failing first on screen too, not only in document order
    assert rows.nth(0).bounding_box()["y"] < rows.nth(1).bounding_box()["y"]

    policies = page.locator("div.policy", has_text="proj / good").inner_text()
    assert "proj / good" in policies
    pull_row = [line for line in policies.splitlines() if line.startswith("PULL_ARTIFACT")]
    assert pull_row and "never" not in pull_row[0] and "delivered" in pull_row[0]

    # the failed delivery with each attempt's code, in the attention list
    attention = page.inner_text("#attention + table")
    assert "PUSH_ARTIFACT" in attention and "proj / broken" in attention
    assert "gave up after 3 attempts" in attention
    page.locator("#attention + table summary").first.click()  # open the attempt history
    attempts = page.locator("#attention + table ol.attempts li")
    assert attempts.count() == 3
    assert all("500" in attempts.nth(i).inner_text() for i in range(3))

    source = page.content()
    for secret in (AUTH_TOKEN, QUERY_TOKEN, PASSWORD, "Bearer tok"):
        assert secret not in source, f"{secret!r} leaked into the status page"


def test_status_answers_json_unless_html_is_preferred(sidecar_factory, receiver):
    sidecar = sidecar_factory({"projects": []})
    for accept in (None, "*/*", "application/json", "application/json, text/html;q=0.5"):
        request = urllib.request.Request(f"{sidecar.url}/sidecar/status",
                                         headers=sidecar.admin_headers())
        if accept:
            request.add_header("Accept", accept)
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["Content-Type"] == "application/json", accept
            assert "queue" in json.loads(response.read())
    request = urllib.request.Request(f"{sidecar.url}/sidecar/status",
                                     headers={"Accept": "text/html", **sidecar.admin_headers()})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/html")
        # the answer depends on Accept, and on the UI session that may authorize it
        assert response.headers["Vary"] in ("Accept", "Accept, Cookie")
