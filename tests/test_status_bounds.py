"""The status report stays a summary at any size (issue 17): 10,000 policies once made a 5 MB
/sidecar/status. Its size must not grow with the number of policies or failing endpoints;
the detail comes a page at a time, asked for by project or policy.

The store-level tests fill a real SQLite store (rules synced as the sidecar does, deliveries
that failed against a distinct endpoint per policy) and read the report the way /sidecar/status
and `sidecar status` do. The end-to-end test pages through a running sidecar's report with
Harbor's page/page_size, X-Total-Count and Link, and searches the UI's lists.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests
import yaml

from sidecar.api.ops.report import status_json
from sidecar.cli.report_text import status_text
from sidecar.rules.load import load_rules
from sidecar.store import db as store_db
from sidecar.store.models import FAILED
from sidecar.store.models import Attempt
from sidecar.store.models import Delivery
from sidecar.store.models import Event
from sidecar.store.models import Policy
from sidecar.store.models import database
from sidecar.store.policies import sync_rules
from sidecar.store.status_report import ENDPOINT_LIMIT
from sidecar.store.status_report import ENDPOINT_WINDOW
from sidecar.store.status_report import PolicyQuery
from sidecar.store.status_report import status_report
from sidecar.store.views import Page

SECRET = "tok-5ecret-in-query"
PER_PROJECT = 10


def rules_dict(policies: int, address: str = "http://hooks.example/{p}/{n}") -> dict:
    projects = []
    for p in range(max(policies // PER_PROJECT, 1)):
        hooks = [{"name": f"hook-{n}", "event_types": ["PUSH_ARTIFACT"],
                  "targets": [{"type": "http",
                               "address": address.format(p=p, n=n) + f"?token={SECRET}"}]}
                 for n in range(min(PER_PROJECT, policies))]
        projects.append({"name": f"team-{p:04d}", "webhooks": hooks})
    return {"projects": projects}


def fill_store(url: str, tmp_path, policies: int) -> None:
    """`policies` policies, and per policy one delivery that failed 3 times with a long error."""
    path = tmp_path / f"rules-{policies}.yaml"
    path.write_text(yaml.safe_dump(rules_dict(policies)))
    store_db.bind(url)
    with database.connection_context():
        sync_rules(load_rules(str(path)))
        now = time.time()
        rows = list(Policy.select(Policy.id, Policy.name, Policy.project, Policy.targets_json))
        with database.atomic():
            event = Event.create(type="PUSH_ARTIFACT", occur_at=int(now), project="team-0000",
                                 repository="team-0000/app", payload_json="{}", created_at=now)
            deliveries = [{
                "uid": f"u{row.id}", "event": event.id, "policy": row.id,
                "policy_name": row.name, "project": f"p{row.project_id}",
                "event_type": "PUSH_ARTIFACT", "target_json": json.dumps(row.targets[0]),
                "status": FAILED, "attempts": 3, "max_attempts": 3, "next_attempt_at": now,
                "last_status_code": 500, "last_error": "abnormal response code: 500 " + "x" * 900,
                "created_at": now, "updated_at": now + row.id, "finished_at": now + row.id,
            } for row in rows]
            for start in range(0, len(deliveries), 200):
                Delivery.insert_many(deliveries[start:start + 200]).execute()
            attempts = [{"delivery": d.id, "number": n, "started_at": now, "duration_ms": 5,
                         "status_code": 500, "error": "refused " + "y" * 900}
                        for d in Delivery.select(Delivery.id) for n in (1, 2, 3)]
            for start in range(0, len(attempts), 300):
                Attempt.insert_many(attempts[start:start + 300]).execute()


def report(url: str, query: PolicyQuery | None = None) -> dict:
    store_db.bind(url)
    with database.connection_context():
        return status_json(status_report(policies=query))


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[int, str]:
    """Stores with 50 and with 2,000 policies, each policy failing to its own endpoint."""
    out = {}
    for count in (50, 2000):
        tmp = tmp_path_factory.mktemp(f"store{count}")
        out[count] = f"sqlite:///{tmp / 'store.db'}"
        fill_store(out[count], tmp, count)
    return out


def test_summary_size_does_not_grow_with_policies(stores):
    small, large = report(stores[50]), report(stores[2000])
    small_size, large_size = len(json.dumps(small)), len(json.dumps(large))
    assert large_size <= 256 * 1024
    # same lists, same lengths: a few bytes more for longer numbers, nothing per policy
    assert large_size <= small_size * 1.05 + 2048, (small_size, large_size)
    assert len(large["endpoints"]) == ENDPOINT_LIMIT
    assert large["endpoints_total"] == ENDPOINT_WINDOW  # what the recent window holds
    assert large["endpoint_states"]["failing"] == ENDPOINT_WINDOW
    assert all(e["state"] == "failing" for e in large["endpoints"])
    assert large["policy_counts"] == {"projects": 200, "policies": 2000, "enabled": 2000}
    assert len(large["policies"]) == 20 and large["policies_page"]["total"] == 2000
    assert len(large["recent_failures"]) == 20
    # a long error text is cut, not carried whole into every list
    assert all(len(d["last_error"]) <= 500 for d in large["recent_failures"])
    assert all(len(a["error"]) <= 500 for d in large["recent_failures"] for a in d["history"])
    assert SECRET not in json.dumps(large)


def test_policy_detail_by_project_and_policy_a_page_at_a_time(stores):
    url = stores[2000]
    first = report(url, PolicyQuery(project="team-0042", page=Page(1, 4)))
    assert first["policies_page"]["total"] == PER_PROJECT
    assert [p["name"] for p in first["policies"]] == ["hook-0", "hook-1", "hook-2", "hook-3"]
    assert {p["project"] for p in first["policies"]} == {"team-0042"}
    last = report(url, PolicyQuery(project="team-0042", page=Page(3, 4)))
    assert [p["name"] for p in last["policies"]] == ["hook-8", "hook-9"]
    # each policy's last trigger per event type, as before
    assert last["policies"][0]["triggers"][0]["status"] == FAILED

    one = report(url, PolicyQuery(policy="team-0007/hook-3"))
    assert one["policies_page"]["total"] == 1
    assert (one["policies"][0]["project"], one["policies"][0]["name"]) == ("team-0007",
                                                                          "hook-3")
    every_project = report(url, PolicyQuery(policy="hook-3", page=Page(1, 100)))
    assert every_project["policies_page"]["total"] == 200
    assert len(every_project["policies"]) == 100
    nothing = report(url, PolicyQuery(project="no-such-project"))
    assert nothing["policies"] == [] and nothing["policies_page"]["total"] == 0


def test_cli_text_says_what_it_left_out(stores):
    text = status_text(report(stores[2000]))
    assert f"the worst {ENDPOINT_LIMIT} of {ENDPOINT_WINDOW}" in text
    assert "policies      2000 in 200 projects (2000 enabled)" in text
    assert "1-20 of 2000: --page 2 for more" in text
    assert len(text) < 64 * 1024


# -- end to end ----------------------------------------------------------------------------

PASSWORD = "Bounds-Password-1"


@pytest.mark.e2e
def test_status_and_ui_page_through_many_policies(sidecar_factory):
    rules = rules_dict(1200, address="http://127.0.0.1:9/{p}/{n}")
    sidecar = sidecar_factory(rules, config={"harbor_admin_password": PASSWORD})
    status_url = f"{sidecar.url}/sidecar/status"

    admin = ("admin", PASSWORD)  # the status is the admin's
    summary = requests.get(status_url, auth=admin, timeout=30)
    assert summary.status_code == 200
    assert len(summary.content) < 64 * 1024
    body = summary.json()
    assert body["policy_counts"]["policies"] == 1200
    assert len(body["policies"]) == 20
    assert summary.headers["X-Total-Count"] == "1200"
    assert 'rel="next"' in summary.headers["Link"]

    page = requests.get(status_url, params={"project": "team-0119", "page": 2, "page_size": 3},
                        auth=admin, timeout=30)
    assert page.headers["X-Total-Count"] == "10"
    assert [p["name"] for p in page.json()["policies"]] == ["hook-3", "hook-4", "hook-5"]
    link = page.headers["Link"]
    assert "page=1" in link and 'rel="prev"' in link and "page=3" in link
    assert "project=team-0119" in link
    too_big = requests.get(status_url, params={"page_size": 500}, auth=admin, timeout=30)
    assert too_big.status_code == 422

    html = requests.get(status_url, params={"format": "html", "policy": "team-0003/hook-7"},
                        auth=admin, timeout=30)
    assert html.status_code == 200 and "team-0003 / hook-7" in html.text
    assert "team-0003 / hook-6" not in html.text
    assert len(requests.get(status_url, params={"format": "html"}, auth=admin,
                            timeout=30).content) < 128 * 1024

    # metrics: no series per policy or per target, however many there are
    scrape = requests.get(f"{sidecar.url}/sidecar/metrics", auth=admin, timeout=30).text
    series = [line for line in scrape.splitlines() if line and not line.startswith("#")]
    assert len(series) < 200
    assert not re.search(r'(policy|target|address|endpoint)="', scrape)

    # the UI: the project list is paged and searchable with Harbor's q
    ui = f"{sidecar.url}/sidecar/ui"
    form = requests.get(f"{ui}/login", timeout=30)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    cookies = requests.post(f"{ui}/login", cookies=form.cookies, allow_redirects=False,
                            timeout=30, data={"csrf_token": token, "username": "admin",
                                              "password": PASSWORD}).cookies
    listing = requests.get(f"{ui}/projects", cookies=cookies, timeout=30).text
    assert listing.count('class="project"') == 25
    assert "120 projects · page 1 of 5" in listing
    found = requests.get(f"{ui}/projects", params={"q": "name=~team-011"}, cookies=cookies,
                         timeout=30).text
    assert found.count('class="project"') == 10 and "team-0115" in found
    plain = requests.get(f"{ui}/projects", params={"q": "0042"}, cookies=cookies,
                         timeout=30).text
    assert plain.count('class="project"') == 1
    refused = requests.get(f"{ui}/projects", params={"q": "owner=x"}, cookies=cookies,
                           timeout=30)
    assert refused.status_code == 400 and "only name can be searched" in refused.text

    # a project's Webhooks page: 10 a page, searchable too
    project_id = re.search(r'/projects/(\d+)/webhooks">team-0042<', plain).group(1)
    hooks = requests.get(f"{ui}/projects/{project_id}/webhooks", cookies=cookies,
                         timeout=30).text
    assert hooks.count('class="policy"') == 10
    one = requests.get(f"{ui}/projects/{project_id}/webhooks", params={"q": "name=hook-4"},
                       cookies=cookies, timeout=30).text
    assert one.count('class="policy"') == 1 and 'id="policy-' in one
