"""Storage quotas through Harbor's API, /sidecar/status, /sidecar/metrics and the web UI, on a
real `sidecar serve` in front of a real registry (issue 10)."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support import clients
from tests.support import quota
from tests.support.browser import chromium_context
from tests.support.sidecar import sidecar_command

pytestmark = pytest.mark.e2e

PASSWORD = "quota-Admin-pw"
SHOTS = Path(__file__).resolve().parent.parent / "test-output" / "ui"
KIB = 1024
CLOSE = {"Connection": "close"}


def api(sidecar, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{sidecar.url}/api/v2.0{path}", auth=("admin", PASSWORD),
                            timeout=30, headers=CLOSE, **kwargs)


def _name() -> str:
    return f"q{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sidecar(sidecar_factory):
    rules = {"projects": [{"name": "fromrules", "quota": {"storage": "10MiB"}}]}
    return sidecar_factory(rules, config={"harbor_admin_password": PASSWORD})


def _quota_of(sidecar, project_id: int) -> dict:
    listed = api(sidecar, "GET", f"/quotas?reference=project&reference_id={project_id}")
    assert listed.status_code == 200, listed.text
    [found] = listed.json()
    assert listed.headers["X-Total-Count"] == "1"
    return found


def test_storage_limit_of_a_new_project_is_its_quota_and_is_enforced(sidecar, image):
    name = _name()
    created = api(sidecar, "POST", "/projects", json={"project_name": name,
                                                      "storage_limit": 1024 * KIB})
    assert created.status_code == 201, created.text
    project_id = int(created.headers["Location"].rsplit("/", 1)[1])
    found = _quota_of(sidecar, project_id)
    assert found["ref"] == {"id": project_id, "name": name, "owner_name": "admin"}
    assert (found["hard"], found["used"]) == ({"storage": 1024 * KIB}, {"storage": 0})
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", found["update_time"])

    layout, _ = image(layers=1, layer_size=300 * KIB)
    clients.push(layout, "v1", f"{sidecar.netloc}/{name}/app:v1")
    quota.settled(sidecar.database, name)
    single = api(sidecar, "GET", f"/quotas/{found['id']}").json()
    assert single["used"] == {"storage": quota.size_of(layout)}
    assert single["update_time"] == "0001-01-01T00:00:00.000Z"  # as Harbor's single GET

    # lowered below usage: accepted, and the next push is refused
    lowered = api(sidecar, "PUT", f"/quotas/{found['id']}", json={"hard": {"storage": 100}})
    assert (lowered.status_code, lowered.text) == (200, "")
    more, _ = image(layers=1, layer_size=10 * KIB)
    pushed = clients.skopeo("copy", "--dest-tls-verify=false", f"oci:{more}:v1",
                            f"docker://{sidecar.netloc}/{name}/more:v1", check=False)
    assert pushed.returncode != 0
    assert "will exceed the configured upper limit of 100 B." in pushed.stderr, pushed.stderr

    # changed with the project, and gone with it
    assert api(sidecar, "PUT", f"/projects/{name}",
               json={"storage_limit": 2048 * KIB}).status_code == 200
    assert _quota_of(sidecar, project_id)["hard"] == {"storage": 2048 * KIB}
    assert api(sidecar, "DELETE", f"/projects/{name}").status_code == 200
    gone = api(sidecar, "GET", f"/quotas/{found['id']}")
    assert gone.status_code == 404
    assert gone.json() == {"errors": [{"code": "NOT_FOUND",
                                       "message": f"quota {found['id']} not found"}]}


def test_quota_requests_are_checked_in_harbors_words(sidecar):
    name = _name()
    refused = api(sidecar, "POST", "/projects", json={"project_name": name,
                                                      "storage_limit": -5})
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["message"] == \
        "invalid non-positive value for quota limit, value=-5"
    assert api(sidecar, "GET", f"/projects/{name}").status_code == 404  # nothing made

    created = api(sidecar, "POST", "/projects", json={"project_name": name})
    project_id = int(created.headers["Location"].rsplit("/", 1)[1])
    found = _quota_of(sidecar, project_id)
    assert found["hard"] == {"storage": -1}  # Harbor's default storage_per_project
    for body, status, message in [
        ({}, 400, "hard required in body"),
        ({"hard": {}}, 400, "hard required in body"),
        ({"hard": {"count": 5}}, 400, "resource count not support"),
        ({"hard": {"storage": 0}}, 400, "invalid non-positive value for quota limit, value=0"),
        ({"hard": {"storage": 2 ** 60}}, 400,
         f"exceeded 1024TB, which is 1125899906842624 Bytes, value={2 ** 60}"),
        ({"hard": {"storage": "10GiB"}}, 422, None),
    ]:
        answer = api(sidecar, "PUT", f"/quotas/{found['id']}", json=body)
        assert answer.status_code == status, (body, answer.text)
        if message:
            assert answer.json()["errors"][0]["message"] == message


def test_rules_file_quotas_are_read_only_and_lists_sort_as_harbors(sidecar):
    listed = api(sidecar, "GET", "/quotas?page_size=100").json()
    [from_rules] = [q for q in listed if q["ref"]["name"] == "fromrules"]
    refused = api(sidecar, "PUT", f"/quotas/{from_rules['id']}",
                  json={"hard": {"storage": 1024}})
    assert refused.status_code == 403
    assert "rules file" in refused.json()["errors"][0]["message"]
    assert api(sidecar, "GET", "/quotas?reference=user").json() == []

    unlimited = _name()
    api(sidecar, "POST", "/projects", json={"project_name": unlimited, "storage_limit": -1})
    by_hard = api(sidecar, "GET", "/quotas?sort=-hard.storage&page_size=100").json()
    assert by_hard[0]["hard"] == {"storage": -1}  # -1 sorts as the largest, as in Harbor
    first = api(sidecar, "GET", "/quotas?page=1&page_size=1")
    assert 'rel="next"' in first.headers["Link"]


def test_status_metrics_and_the_project_list_show_used_and_limit(sidecar, image, tmp_path):
    name = _name()
    api(sidecar, "POST", "/projects", json={"project_name": name, "storage_limit": 1024 * KIB})
    layout, _ = image(layers=1, layer_size=900 * KIB)  # past the 85% warning line
    clients.push(layout, "v1", f"{sidecar.netloc}/{name}/app:v1")
    used = quota.settled(sidecar.database, name)["used"]

    status = requests.get(f"{sidecar.url}/sidecar/status", timeout=10,
                          headers={**CLOSE, **sidecar.admin_headers()}).json()
    [row] = [q for q in status["quotas"] if q["project"] == name]
    assert (row["used"], row["limit"], row["state"], row["limit_text"]) == (
        used, 1024 * KIB, "warning", "1.0 MiB")
    page = requests.get(f"{sidecar.url}/sidecar/status?format=html", timeout=10,
                        headers={**CLOSE, **sidecar.admin_headers()}).text
    assert re.search(rf'<meter class="quota" min="0" max="{1024 * KIB}" value="{used}"', page)
    text = subprocess.run([*sidecar_command(), "status", "--database", sidecar.database],
                          capture_output=True, text=True, timeout=60).stdout
    [line] = [line for line in text.splitlines() if line.startswith(name)]
    assert "STORAGE QUOTAS" in text and "1.0 MiB" in line and "warning" in line

    scraped = requests.get(f"{sidecar.url}/sidecar/metrics", timeout=10, headers=CLOSE).text
    samples = {(s.name, s.labels.get("project")): s.value
               for family in text_string_to_metric_families(scraped) for s in family.samples}
    assert samples[("sidecar_quota_used_bytes", name)] == used
    assert samples[("sidecar_quota_limit_bytes", name)] == 1024 * KIB
    assert samples[("sidecar_quota_limit_bytes", "fromrules")] == 10 * 1024 * KIB

    with chromium_context(tmp_path / "profile") as context:
        browser = context.new_page()
        browser.goto(f"{sidecar.url}/sidecar/ui/login")
        browser.fill("#password", PASSWORD)
        browser.click("button[type=submit]")
        cell = browser.locator("tr.project", has_text=name).locator("td.quota")
        assert cell.locator("meter").get_attribute("value") == str(used)
        assert "of 1.0 MiB" in cell.inner_text() and "over 85%" in cell.inner_text()
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.screenshot(path=str(SHOTS / "quota-projects.png"), full_page=True)
        browser.goto(f"{sidecar.url}/sidecar/status?format=html")
        browser.screenshot(path=str(SHOTS / "quota-status.png"), full_page=True)
