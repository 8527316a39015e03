"""The Webhooks page in a real browser (headless Debian chromium) against `sidecar serve`.

What a person does in Harbor's portal: log in, open a project's Webhooks tab, add a webhook
(and see Harbor's message for a bad URL), test the endpoint, push and watch the last trigger
appear, disable the webhook, switch webhooks off for the whole system, replay a failed
delivery. Plus what keeps the page safe: CSRF tokens, escaped user input, secrets never shown,
a login that every gunicorn worker honours. Screenshots go to test-output/ui/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from tests.support import clients
from tests.support.browser import chromium_context
from tests.support.ports import poll
from tests.support.receiver import Reply
from tests.support.recorded import deliveries_for_tag

pytestmark = pytest.mark.e2e

PASSWORD = "ui-Admin-pw-7731"
SECRET = "Bearer ui-token-5ecret-0451"
XSS_NAME = "<script>alert(1)</script>"
SHOTS = Path(__file__).resolve().parent.parent / "test-output" / "ui"


@pytest.fixture
def browser(tmp_path):
    with chromium_context(tmp_path / "chromium-profile") as context:
        page = context.pages[0] if context.pages else context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.dialogs = dialogs  # any alert() that ran: XSS
        yield page


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def rules_doc(address: str) -> dict:
    """A project with a policy from the rules file: the page shows it read-only."""
    return {"projects": [{"name": "proj", "public": False, "webhooks": [{
        "name": "from-rules", "enabled": True, "event_types": ["PUSH_ARTIFACT"],
        "targets": [{"type": "http", "address": address, "payload_format": "Default"}],
    }]}]}


def start(sidecar_factory, rules_address: str, **kwargs):
    return sidecar_factory(rules_doc(rules_address),
                           config={"harbor_admin_password": PASSWORD}, **kwargs)


def log_in(page, ui: str) -> None:
    page.goto(f"{ui}/")
    assert "/sidecar/ui/login" in page.url
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    assert page.url == f"{ui}/projects"


def policy_section(page, name: str):
    return page.locator("section.policy").filter(
        has=page.locator("h2.name", has_text=re.compile(f"^{re.escape(name)}$")))


#: A connection left open by the test would hold the sidecar's graceful stop for 20 seconds.
CLOSE = {"Connection": "close"}


def api(sidecar, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{sidecar.url}/api/v2.0{path}", auth=("admin", PASSWORD),
                            timeout=10, headers=CLOSE, **kwargs)


def test_webhooks_page_workflow(sidecar_factory, receiver_factory, image, browser):
    from_rules = receiver_factory()
    hook = receiver_factory()
    sidecar = start(sidecar_factory, from_rules.url)
    ui = f"{sidecar.url}/sidecar/ui"
    page = browser

    # log in: a wrong password is refused on the form, the right one opens the projects list
    page.goto(f"{ui}/")
    assert "/sidecar/ui/login" in page.url
    shot(page, "01-login")
    page.fill("#password", "wrong")
    page.click("button[type=submit]")
    assert page.inner_text("#login-error") == "Invalid user name or password."
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    assert page.url == f"{ui}/projects"
    row = page.locator("tr.project", has_text="proj")
    assert "rules file" in row.inner_text()
    shot(page, "02-projects")

    # the project's Webhooks page: the rules-file policy is read-only and says why
    row.locator("a").click()
    rules_policy = policy_section(page, "from-rules")
    assert "Managed by the rules file" in rules_policy.locator(".rules-note").inner_text()
    assert rules_policy.locator("a", has_text="Edit").count() == 0
    assert rules_policy.locator("a", has_text="Delete").count() == 0

    # add: Harbor's messages next to the fields they are about
    page.click("#new-webhook")
    page.fill("#name", "ci-hook")
    page.fill("#description", "tell CI")
    page.fill("#address", "ftp://ci.example.com/hook")
    page.fill("#auth_header", SECRET)
    page.click("#save")
    assert page.inner_text("#address-error") == "invalid scheme: ftp"
    assert page.inner_text("#event_types-error") == "empty event type"
    assert page.input_value("#name") == "ci-hook"  # what was typed stays
    shot(page, "03-validation")

    # Test Endpoint: one sample event to the real receiver, with the auth header; nothing saved
    page.fill("#address", hook.url)
    page.check("input[name=event_types][value=PUSH_ARTIFACT]")
    page.click("#test-endpoint")
    assert re.search(r"answered 200 in \d+ ms", page.inner_text("#test-result"))
    (probe,) = hook.wait_for(1)
    assert probe.headers["authorization"] == SECRET
    assert probe.json()["type"] == "PUSH_ARTIFACT"
    assert api(sidecar, "GET", "/projects/proj/webhook/policies").json()[0]["name"] == \
        "from-rules"
    shot(page, "04-test-endpoint")

    page.click("#save")
    assert page.url.startswith(f"{ui}/projects/")
    assert "Webhook ci-hook added." in page.inner_text(".flash.ok")
    section = policy_section(page, "ci-hook")
    assert "enabled" in section.locator(".badge").first.inner_text()
    assert "auth header ***" in section.locator(".targets").inner_text()
    push_row = section.locator("tr.trigger[data-event-type=PUSH_ARTIFACT]")
    assert push_row.locator(".last-trigger").inner_text() == "never"
    assert "ui-token-5ecret" not in page.content()

    # a push through the sidecar: delivered, and the page shows when and how it went
    layout, digest = image("v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1")
    delivered = hook.wait_for(2)[1]
    assert delivered.headers["authorization"] == SECRET
    assert delivered.json()["event_data"]["resources"][0]["digest"] == digest

    def push_outcome():
        page.reload()
        row = policy_section(page, "ci-hook").locator("tr.trigger[data-event-type=PUSH_ARTIFACT]")
        return row.locator(".last-trigger").inner_text(), row.locator(".outcome").inner_text()

    last, outcome = poll(push_outcome, lambda v: "delivered" in v[1])
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\d+s ago\)", last)
    assert "200" in outcome
    shot(page, "05-webhooks")

    # its deliveries: one, delivered with 200 on the first attempt
    policy_section(page, "ci-hook").locator("a", has_text="Deliveries").click()
    rows = page.locator("tr.delivery")
    assert rows.count() == 1
    assert rows.first.get_attribute("data-status") == "delivered"
    assert "1 of 3" in rows.first.inner_text() and "200" in rows.first.inner_text()
    assert rows.locator("button.replay").count() == 0  # only failed ones replay
    shot(page, "06-deliveries")
    page.go_back()

    # disable, after a confirmation step; the next push is not delivered to it
    policy_section(page, "ci-hook").locator("a", has_text="Disable").click()
    assert page.inner_text("h1") == "Disable webhook “ci-hook”?"
    shot(page, "07-confirm-disable")
    page.click("#confirm")
    assert "Webhook ci-hook disabled." in page.inner_text(".flash.ok")
    assert "disabled" in policy_section(page, "ci-hook").locator(".badge").first.inner_text()
    layout2, _ = image("v2")
    clients.push(layout2, "v2", f"{sidecar.netloc}/proj/app:v2")
    from_rules.wait_for(2)  # the same push reached the rules-file policy
    sidecar.wait_status(lambda s: s["queue"]["depth"] == 0)
    assert len(hook.requests) == 2
    assert deliveries_for_tag(sidecar.database, "v2") == 1  # only from-rules'

    # edit: the auth header shows masked, and saving without retyping it keeps it
    policy_section(page, "ci-hook").locator("a", has_text="Edit").click()
    assert page.input_value("#auth_header") == "***"
    assert not page.is_checked("#enabled")
    page.check("#enabled")
    page.fill("#description", "tell CI, edited")
    page.click("#save")
    assert "Webhook ci-hook saved." in page.inner_text(".flash.ok")
    assert policy_section(page, "ci-hook").locator(".description").inner_text() == \
        "tell CI, edited"

    # the global switch: off -> a push makes no delivery at all, on -> delivered again
    page.click("text=System settings")
    assert page.is_checked("#notification_enable")
    page.uncheck("#notification_enable")
    page.click("#save")
    assert "off" in page.inner_text("#switch-state")
    shot(page, "08-settings")
    assert api(sidecar, "GET", "/configurations").json()["notification_enable"]["value"] is False
    layout3, _ = image("v3")
    clients.push(layout3, "v3", f"{sidecar.netloc}/proj/app:v3")
    assert poll(lambda: deliveries_for_tag(sidecar.database, "v3"),
                lambda count: count is not None) == 0
    page.goto(f"{ui}/projects")
    page.locator("tr.project a", has_text="proj").click()
    assert "switched off for the whole system" in page.inner_text("#switched-off")
    page.click("text=System settings")
    page.check("#notification_enable")
    page.click("#save")
    assert "on" in page.inner_text("#switch-state")
    layout4, _ = image("v4")
    clients.push(layout4, "v4", f"{sidecar.netloc}/proj/app:v4")
    third = hook.wait_for(3)[2]
    assert third.headers["authorization"] == SECRET  # kept through the edit
    assert third.json()["event_data"]["resources"][0]["tag"] == "v4"

    # delete, after a confirmation step
    page.goto(f"{ui}/projects")
    page.locator("tr.project a", has_text="proj").click()
    policy_section(page, "ci-hook").locator("a", has_text="Delete").click()
    page.click("#confirm")
    assert "Webhook ci-hook deleted." in page.inner_text(".flash.ok")
    assert policy_section(page, "ci-hook").count() == 0
    names = [p["name"] for p in api(sidecar, "GET", "/projects/proj/webhook/policies").json()]
    assert names == ["from-rules"]
    assert page.dialogs == []


def test_failed_delivery_shows_attempts_and_replays(sidecar_factory, receiver_factory, image,
                                                    browser):
    from_rules = receiver_factory()
    flaky = receiver_factory([Reply(500), Reply(500), Reply(500), Reply(200)])
    sidecar = start(sidecar_factory, from_rules.url)
    created = api(sidecar, "POST", "/projects/proj/webhook/policies", json={
        "name": "flaky", "enabled": True, "event_types": ["PUSH_ARTIFACT"],
        "targets": [{"type": "http", "address": flaky.url, "auth_header": SECRET}]})
    assert created.status_code == 201, created.text
    layout, _ = image("v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1")
    sidecar.wait_status(lambda s: s["deliveries"]["failed"] == 1, timeout=30)

    page = browser
    ui = f"{sidecar.url}/sidecar/ui"
    log_in(page, ui)
    page.locator("tr.project a", has_text="proj").click()
    outcome = policy_section(page, "flaky").locator("tr.trigger .outcome").inner_text()
    assert "failed" in outcome and "500" in outcome
    policy_section(page, "flaky").locator("a", has_text="Deliveries").click()
    row = page.locator("tr.delivery").first
    assert row.get_attribute("data-status") == "failed"
    attempts = row.locator("ol.attempts li")
    assert attempts.count() == 3
    assert all("500" in attempts.nth(i).inner_text() for i in range(3))
    assert "abnormal response code: 500" in row.inner_text()
    shot(page, "09-failed-delivery")

    row.locator("button.replay").click()
    assert "queued again" in page.inner_text(".flash.ok")
    assert flaky.wait_for(4)[3].headers["authorization"] == SECRET

    def status():
        page.reload()
        return page.locator("tr.delivery").first.get_attribute("data-status")

    poll(status, lambda s: s == "delivered")
    row = page.locator("tr.delivery").first
    assert row.locator("ol.attempts li").count() == 4  # the history is kept
    assert row.locator("button.replay").count() == 0
    assert page.locator("tr.delivery").count() == 1
    shot(page, "10-replayed")


def test_forms_refuse_cross_site_posts_and_escape_input(sidecar_factory, receiver_factory,
                                                         browser):
    sidecar = start(sidecar_factory, receiver_factory().url)
    ui = f"{sidecar.url}/sidecar/ui"
    page = browser

    # not logged in: pages send to the login form, changes are refused
    anonymous = requests.get(f"{ui}/settings", allow_redirects=False, timeout=10,
                             headers=CLOSE)
    assert anonymous.status_code == 302
    assert anonymous.headers["Location"].startswith("/sidecar/ui/login?next=")
    assert requests.post(f"{ui}/settings", timeout=10, headers=CLOSE).status_code == 401

    log_in(page, ui)
    # the browser's own session, but no token or a wrong one: refused, nothing changes
    for form in ({"notification_enable": ""}, {"notification_enable": "", "csrf_token": "x"}):
        refused = page.request.post(f"{ui}/settings", form=form)
        assert refused.status == 400
        assert "CSRF token" in refused.text()
    # HTTP Basic logs in too, and needs the token all the same
    basic = requests.post(f"{ui}/settings", data={}, auth=("admin", PASSWORD), timeout=10,
                          headers=CLOSE)
    assert basic.status_code == 400
    assert api(sidecar, "GET", "/configurations").json()["notification_enable"]["value"] is True

    # the rules file's policy cannot be changed here either, with the store's reason
    page.locator("tr.project a", has_text="proj").click()
    project_path = page.url.split("/sidecar/ui", 1)[1]
    rules_id = api(sidecar, "GET", "/projects/proj/webhook/policies").json()[0]["id"]
    page.goto(f"{ui}{project_path}/{rules_id}/edit")
    assert page.locator("fieldset[disabled]").count() == 1
    assert page.locator("#save").count() == 0
    token = page.get_attribute("input[name=csrf_token]", "value")
    forced = page.request.post(f"{ui}{project_path}/{rules_id}/edit", form={
        "csrf_token": token, "action": "save", "name": "from-rules", "address": "http://x.test/",
        "event_types": "PUSH_ARTIFACT", "notify_type": "http", "payload_format": "Default"})
    assert forced.status == 403
    assert "managed by the rules file" in forced.text()

    # what a user types is shown as text, never run: in the list, a flash and an error message
    page.goto(f"{ui}{project_path}/new")
    page.fill("#name", XSS_NAME)
    page.fill("#description", '"><img src=x onerror=alert(2)>')
    page.check("input[name=event_types][value=PULL_ARTIFACT]")
    page.fill("#address", 'http://a b/"><script>alert(3)</script>')
    page.click("#save")
    assert "<script>alert(3)</script>" in page.inner_text("#address-error")
    assert page.input_value("#name") == XSS_NAME
    page.fill("#address", "http://127.0.0.1:9/hook")
    page.click("#save")
    assert XSS_NAME in page.inner_text(".flash.ok")
    assert policy_section(page, XSS_NAME).count() == 1
    assert policy_section(page, XSS_NAME).locator(".description").inner_text() == \
        '"><img src=x onerror=alert(2)>'
    html = page.content()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html and "<img src=x" not in html
    shot(page, "11-escaped")
    policy_id = int(page.url.rsplit("#policy-", 1)[1])
    page.goto(f"{ui}{project_path}/{policy_id}/delete")
    assert XSS_NAME in page.inner_text("h1")
    assert page.dialogs == []

    response = page.request.get(f"{ui}/projects")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


def test_login_holds_across_workers_and_restarts(sidecar_factory, receiver_factory):
    sidecar = start(sidecar_factory, receiver_factory().url, workers=2)
    ui = f"{sidecar.url}/sidecar/ui"

    def logged_in(cookies) -> bool:
        # a fresh connection each time, so both workers get to check the cookie
        answer = requests.get(f"{ui}/projects", cookies=cookies, allow_redirects=False,
                              timeout=10, headers=CLOSE)
        return answer.status_code == 200

    form = requests.get(f"{ui}/login", timeout=10, headers=CLOSE)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    done = requests.post(f"{ui}/login", cookies=form.cookies, allow_redirects=False, timeout=10,
                         headers=CLOSE,
                         data={"csrf_token": token, "username": "admin", "password": PASSWORD})
    assert done.status_code == 302
    cookies = done.cookies
    assert cookies.get("sidecar_ui_session")
    assert all(logged_in(cookies) for _ in range(20))

    # the signing key lives in the store: a restart keeps browsers logged in...
    sidecar.stop()
    sidecar.start()
    assert logged_in(cookies)
    # ...and a new admin password logs them out
    sidecar.stop()
    sidecar.config_path.write_text(
        sidecar.config_path.read_text().replace(PASSWORD, "another-Password-1"))
    sidecar.start()
    assert not logged_in(cookies)
