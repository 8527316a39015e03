"""Tag retention run by `sidecar serve` against a real registry (issue 12): tags pushed and
pulled through the sidecar with skopeo, runs started with `sidecar retention run`, what
remains read back with `skopeo list-tags`, TAG_RETENTION at a real receiver.

Each test has its own project, so the session's registry is shared.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import time
import uuid

import pytest
import requests

from tests.support import clients
from tests.support import recorded
from tests.support.bad_registry import BadRegistry
from tests.support.sidecar import sidecar_command

pytestmark = pytest.mark.e2e

DAY = 86400
ALL_TAGS = [{"kind": "doublestar", "decoration": "matches", "pattern": "**",
             "extras": '{"untagged":true}'}]
ALL_REPOS = {"repository": [{"kind": "doublestar", "decoration": "repoMatches",
                             "pattern": "**"}]}


def _project() -> str:
    return f"r{uuid.uuid4().hex[:10]}"


def _rules(project: str, address: str, template: str, value: int | None = None,
           schedule: str | None = None, tag_selectors=None) -> dict:
    rule = {"template": template, "params": {template: value} if value is not None else {},
            "tag_selectors": tag_selectors or ALL_TAGS, "scope_selectors": ALL_REPOS}
    retention: dict = {"rules": [rule]}
    if schedule:
        retention["schedule"] = schedule
    return {"projects": [{"name": project, "retention": retention, "webhooks": [{
        "name": "ret", "enabled": True,
        "event_types": ["TAG_RETENTION", "DELETE_ARTIFACT"],
        "targets": [{"type": "http", "address": address}]}]}]}


def _push_tags(sidecar, image, repository: str, tags: list[str], gap: float = 1.05
               ) -> dict[str, str]:
    """Push one distinct image per tag, `gap` seconds apart (push times are whole seconds)."""
    digests = {}
    for index, tag in enumerate(tags):
        if index:
            time.sleep(gap)
        layout, digest = image(tag=tag, layers=1, layer_size=4096)
        clients.push(layout, tag, f"{sidecar.netloc}/{repository}:{tag}")
        digests[tag] = digest
    return digests


def _pull(sidecar, tmp_path, repository: str, tag: str) -> None:
    clients.pull(f"{sidecar.netloc}/{repository}:{tag}", tmp_path / f"pull-{uuid.uuid4().hex}")


def _settle(sidecar, repository: str, tag: str) -> None:
    """Wait until every event before now is recorded (a barrier pull), then leave the run's
    first second: a push in the second a run starts counts as pushed during the run."""
    recorded.until_barrier(sidecar, repository, tag)
    time.sleep(1.1)


def _tags(registry, repository: str) -> list[str]:
    result = clients.skopeo("list-tags", "--tls-verify=false",
                            f"docker://{registry.netloc}/{repository}", check=False)
    if result.returncode != 0:
        return []
    return sorted(json.loads(result.stdout)["Tags"] or [])


def _run(sidecar, project: str, dry_run: bool = False, timeout: float = 90) -> dict:
    args = [*sidecar_command(), "retention", "run", project, "--wait", "--json",
            "--timeout", str(timeout), "--database", sidecar.database]
    if dry_run:
        args.append("--dry-run")
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 30)
    assert result.returncode == 0, result.stdout + result.stderr + sidecar.log()[-3000:]
    return json.loads(result.stdout)


def _backdate(sidecar, repository: str, seconds: int, tags: list[str], pulls: bool = False
              ) -> None:
    """Move the recorded push (or pull) times of some tags' artifacts into the past, as if
    they had happened `seconds` earlier."""
    path = sidecar.database.removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=10) as conn:
        digests = [row[0] for row in conn.execute(
            f"SELECT digest FROM tag_activity WHERE repository = ? AND tag IN "
            f"({','.join('?' * len(tags))})", (repository, *tags))]
        assert len(digests) == len(tags), digests
        marks = ",".join("?" * len(digests))
        column = "pulled_at" if pulls else "pushed_at"
        conn.execute(f"UPDATE artifact_activity SET {column} = {column} - ? "
                     f"WHERE repository = ? AND digest IN ({marks})",
                     (seconds, repository, *digests))
        if not pulls:
            conn.execute(f"UPDATE tag_activity SET pushed_at = pushed_at - ? "
                         f"WHERE repository = ? AND digest IN ({marks})",
                         (seconds, repository, *digests))


def _retention_payloads(receiver, count: int) -> list[dict]:
    return [r.json() for r in receiver.wait_for(count) if r.json()["type"] == "TAG_RETENTION"]


def test_latest_pushed_k_keeps_the_newest_and_reports_what_it_deleted(
        sidecar_factory, receiver, registry, image):
    project = _project()
    repository = f"{project}/app"
    sidecar = sidecar_factory(_rules(project, receiver.url, "latestPushedK", 2))
    digests = _push_tags(sidecar, image, repository, ["v1", "v2", "v3", "v4"])
    _settle(sidecar, repository, "v4")

    dry = _run(sidecar, project, dry_run=True)
    assert dry["status"] == "Success" and dry["dry_run"] is True
    assert [(t["repository"], t["total"], t["retained"], t["deleted"])
            for t in dry["task_list"]] == [("app", 4, 2, 0)]
    assert _tags(registry, repository) == ["v1", "v2", "v3", "v4"]  # a dry run deletes nothing

    run = _run(sidecar, project)
    assert run["status"] == "Success" and run["deleted"] == 2
    assert _tags(registry, repository) == ["v3", "v4"]

    # 2 DELETE_ARTIFACT, then one TAG_RETENTION (the dry run sent none)
    delivered = [r.json() for r in receiver.wait_for(3)]
    assert [d["type"] for d in delivered].count("DELETE_ARTIFACT") == 2
    [payload] = [d for d in delivered if d["type"] == "TAG_RETENTION"]
    retention = payload["event_data"]["retention"]
    assert payload["operator"] == "admin"
    assert retention["total"] == 4 and retention["retained"] == 2
    assert retention["project_name"] == project
    assert retention["result"] == "SUCCESS"
    assert retention["retention_rule"][0]["template"] == "latestPushedK"
    assert retention["retention_rule"][0]["params"] == {"latestPushedK": 2}
    assert sorted(a["name_tag"] for a in retention["deleted_artifact"]) == ["app:v1", "app:v2"]
    assert all(a == {"type": "image", "status": "SUCCESS", "name_tag": a["name_tag"]}
               for a in retention["deleted_artifact"])
    deletes = [d for d in delivered if d["type"] == "DELETE_ARTIFACT"]
    assert sorted(d["event_data"]["resources"][0]["digest"] for d in deletes) == \
        sorted([digests["v1"], digests["v2"]])
    assert {d["operator"] for d in deletes} == {"harbor-jobservice"}

    again = _run(sidecar, project)  # nothing left to delete: no event
    assert again["deleted"] == 0 and _tags(registry, repository) == ["v3", "v4"]
    time.sleep(1)
    assert [e["type"] for e in receiver.events()].count("TAG_RETENTION") == 1


def test_latest_pulled_n_counts_the_pulls_through_the_sidecar(
        sidecar_factory, receiver, registry, image, tmp_path):
    project = _project()
    repository = f"{project}/app"
    sidecar = sidecar_factory(_rules(project, receiver.url, "latestPulledN", 1))
    _push_tags(sidecar, image, repository, ["a", "b", "c"], gap=0)
    _pull(sidecar, tmp_path, repository, "b")
    _settle(sidecar, repository, "b")  # the barrier is a pull of b too
    _run(sidecar, project)
    assert _tags(registry, repository) == ["b"]


def test_n_days_since_last_push_uses_the_recorded_push_times(
        sidecar_factory, receiver, registry, image):
    project = _project()
    repository = f"{project}/app"
    sidecar = sidecar_factory(_rules(project, receiver.url, "nDaysSinceLastPush", 7))
    _push_tags(sidecar, image, repository, ["old1", "old2", "new"], gap=0)
    _settle(sidecar, repository, "new")
    _backdate(sidecar, repository, 10 * DAY, ["old1", "old2"])
    run = _run(sidecar, project)
    assert run["deleted"] == 2
    assert _tags(registry, repository) == ["new"]


def test_n_days_since_last_pull_counts_never_pulled_as_old(
        sidecar_factory, receiver, registry, image, tmp_path):
    project = _project()
    repository = f"{project}/app"
    sidecar = sidecar_factory(_rules(project, receiver.url, "nDaysSinceLastPull", 7))
    _push_tags(sidecar, image, repository, ["recent", "stale", "never"], gap=0)
    _pull(sidecar, tmp_path, repository, "recent")
    _pull(sidecar, tmp_path, repository, "stale")
    recorded.until_barrier(sidecar, repository, "recent")
    _backdate(sidecar, repository, 10 * DAY, ["stale"], pulls=True)
    time.sleep(1.1)
    _run(sidecar, project)
    assert _tags(registry, repository) == ["recent"]


@pytest.mark.parametrize(("template", "left"), [("always", ["a", "b"]), ("nothing", [])])
def test_always_keeps_everything_and_nothing_deletes_everything(
        sidecar_factory, receiver, registry, image, template, left):
    project = _project()
    repository = f"{project}/app"
    sidecar = sidecar_factory(_rules(project, receiver.url, template))
    _push_tags(sidecar, image, repository, ["a", "b"], gap=0)
    _settle(sidecar, repository, "a")
    dry = _run(sidecar, project, dry_run=True)
    assert dry["task_list"][0]["retained"] == len(left)
    assert _tags(registry, repository) == ["a", "b"]
    _run(sidecar, project)
    assert _tags(registry, repository) == left


def test_tag_selectors_and_repository_scope_limit_what_a_rule_sees(
        sidecar_factory, receiver, registry, image):
    """Harbor's "or" processor: artifacts no selector picks are deleted too; a repository no
    rule selects is never touched."""
    project = _project()
    rules = _rules(project, receiver.url, "always", tag_selectors=[
        {"kind": "doublestar", "decoration": "matches", "pattern": "release-*"}])
    rules["projects"][0]["retention"]["rules"][0]["scope_selectors"] = {"repository": [
        {"kind": "doublestar", "decoration": "repoExcludes", "pattern": "keep/**"}]}
    sidecar = sidecar_factory(rules)
    _push_tags(sidecar, image, f"{project}/app", ["release-1", "dev-1"], gap=0)
    _push_tags(sidecar, image, f"{project}/keep/x", ["dev-2"], gap=0)
    _settle(sidecar, f"{project}/app", "release-1")
    run = _run(sidecar, project)
    assert [t["repository"] for t in run["task_list"]] == ["app"]
    assert _tags(registry, f"{project}/app") == ["release-1"]
    assert _tags(registry, f"{project}/keep/x") == ["dev-2"]


def test_a_schedule_starts_runs(sidecar_factory, receiver, registry, image):
    """Harbor's cron fires at second 0 at most; the scheduler catches up the last minute's
    fire time when the schedule appears, so the run starts within a scheduler tick."""
    project = _project()
    repository = f"{project}/app"
    sidecar = sidecar_factory(_rules(project, receiver.url, "latestPushedK", 1),
                              config={"sidecar": {"rules_poll_seconds": 0.2}})
    _push_tags(sidecar, image, repository, ["v1", "v2"])
    _settle(sidecar, repository, "v2")
    rules = _rules(project, receiver.url, "latestPushedK", 1, schedule="0 * * * * *")
    sidecar.write_rules(rules)
    deadline = time.monotonic() + 60
    while _tags(registry, repository) != ["v2"]:
        assert time.monotonic() < deadline, sidecar.log()[-3000:]
        time.sleep(0.5)
    [payload] = _retention_payloads(receiver, 2)
    assert payload["operator"] == "harbor-jobservice"
    policy_id = payload["event_data"]["retention"]["retention_policy_id"]
    executions = requests.get(f"{sidecar.url}/api/v2.0/retentions/{policy_id}/executions",
                              auth=("admin", sidecar.admin_password), timeout=10).json()
    assert any(e["trigger"] == "Schedule" for e in executions)


def test_harbors_retention_api_runs_and_reports(sidecar_factory, receiver, registry, image):
    project = _project()
    repository = f"{project}/app"
    sidecar = sidecar_factory(_rules(project, receiver.url, "latestPushedK", 1))
    api = requests.Session()
    api.auth = ("admin", sidecar.admin_password)
    base = f"{sidecar.url}/api/v2.0"
    _push_tags(sidecar, image, repository, ["v1", "v2", "v3"])
    _settle(sidecar, repository, "v3")

    found = api.get(f"{base}/projects/{project}", timeout=10).json()
    policy_id = int(found["metadata"]["retention_id"])
    policy = api.get(f"{base}/retentions/{policy_id}", timeout=10).json()
    assert policy["algorithm"] == "or" and policy["scope"] == {"level": "project",
                                                                 "ref": found["project_id"]}
    assert policy["rules"][0]["template"] == "latestPushedK"
    assert policy["rules"][0]["params"] == {"latestPushedK": 1}
    assert api.put(f"{base}/retentions/{policy_id}", json=policy, timeout=10).status_code == 403
    assert api.get(f"{base}/retentions/999999", timeout=10).status_code == 404

    started = api.post(f"{base}/retentions/{policy_id}/executions", json={"dry_run": True},
                       timeout=10)
    assert started.status_code == 201, started.text
    location = started.headers["Location"]
    assert location.startswith(f"/api/v2.0/retentions/{policy_id}/executions/")
    dry_id = int(location.rsplit("/", 1)[1])

    def ended(execution_id: int) -> dict:
        deadline = time.monotonic() + 60
        while True:
            rows = api.get(f"{base}/retentions/{policy_id}/executions", timeout=10).json()
            [row] = [r for r in rows if r["id"] == execution_id]
            if row["status"] != "Running":
                return row
            assert time.monotonic() < deadline, rows
            time.sleep(0.3)

    dry = ended(dry_id)
    assert dry["status"] == "Success" and dry["dry_run"] is True
    assert dry["trigger"] == "MANUAL"
    [task] = api.get(f"{base}/retentions/{policy_id}/executions/{dry_id}/tasks",
                     timeout=10).json()
    assert (task["repository"], task["total"], task["retained"], task["status"]) == \
        ("app", 3, 1, "Success")
    log = api.get(f"{base}/retentions/{policy_id}/executions/{dry_id}/tasks/{task['id']}",
                  timeout=10)
    assert log.headers["Content-Type"].startswith("text/plain")
    assert "Dry Run: true" in log.text and log.text.count("DEL") == 2
    assert _tags(registry, repository) == ["v1", "v2", "v3"]

    real = api.post(f"{base}/retentions/{policy_id}/executions", json={"dry_run": False},
                    timeout=10)
    real_id = int(real.headers["Location"].rsplit("/", 1)[1])
    row = ended(real_id)
    assert row["status"] == "Success" and "dry_run" not in row
    assert _tags(registry, repository) == ["v3"]
    assert api.patch(f"{base}/retentions/{policy_id}/executions/{real_id}",
                     json={"action": "pause"}, timeout=10).status_code == 400
    assert api.patch(f"{base}/retentions/{policy_id}/executions/{real_id}",
                     json={"action": "stop"}, timeout=10).status_code == 200  # ended: a no-op
    assert api.get(f"{base}/retentions/{policy_id}/executions/999999/tasks",
                   timeout=10).status_code == 404
    paged = api.get(f"{base}/retentions/{policy_id}/executions",
                    params={"page": 1, "page_size": 1}, timeout=10)
    assert paged.headers["X-Total-Count"] == "2"
    assert [e["id"] for e in paged.json()] == [real_id]
    assert 'rel="next"' in paged.headers["Link"]

    status = sidecar.status()["retention"]
    [listed] = [p for p in status["policies"] if p["project"] == project]
    assert listed["id"] == policy_id and listed["schedule"] == ""
    assert listed["last_run"]["id"] == real_id and listed["last_run"]["deleted"] == 2
    assert [(e["id"], e["dry_run"], e["deleted"]) for e in status["recent_executions"]] == \
        [(real_id, False, 2), (dry_id, True, 0)]
    page = requests.get(f"{sidecar.url}/sidecar/status",
                        headers={"Accept": "text/html", **sidecar.admin_headers()},
                        timeout=10).text
    assert "Tag retention" in page and "would delete 2" in page
    text = subprocess.run([*sidecar_command(), "status", "--database", sidecar.database],
                          capture_output=True, text=True, timeout=60).stdout
    assert "TAG RETENTION" in text and "RECENT RETENTION RUNS" in text
    assert "would 2" in text


def _jobs(sidecar, kind: str) -> list[dict]:
    path = sidecar.database.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(
            "SELECT * FROM job WHERE kind = ? ORDER BY id", (kind,))]


def test_kill_9_mid_run_resumes_and_deletes_nothing_twice(
        sidecar_factory, receiver, registry, image):
    project = _project()
    repository = f"{project}/app"
    sidecar = sidecar_factory(_rules(project, receiver.url, "latestPushedK", 1),
                              config={"sidecar": {"jobs": {"lease_seconds": 5,
                                                           "backoff_seconds": 0.2,
                                                           "backoff_max_seconds": 0.5}}})
    tags = [f"v{i}" for i in range(6)]
    _push_tags(sidecar, image, repository, tags, gap=0)
    _settle(sidecar, repository, "v0")
    # from now on every DELETE takes half a second: long enough to kill the run mid-way
    slow = BadRegistry("slow-delete", upstream=registry.url, delay=0.5).start()
    try:
        sidecar.stop()
        sidecar.upstream = slow.url
        sidecar.start()
        subprocess.run([*sidecar_command(), "retention", "run", project, "--database",
                        sidecar.database], check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while True:
            tasks = _jobs(sidecar, "retention-task")
            if tasks and json.loads(tasks[0]["state_json"]).get("deleted"):
                break  # one deletion saved, the next under way
            assert time.monotonic() < deadline, sidecar.log()[-3000:]
            time.sleep(0.05)
        sidecar.kill()
        [task] = _jobs(sidecar, "retention-task")
        assert task["status"] == "running", "killed mid-run"
        done_before = len(json.loads(task["state_json"])["deleted"])
        assert done_before < 5

        sidecar.start()
        deadline = time.monotonic() + 60
        while _jobs(sidecar, "retention-task")[0]["status"] != "succeeded":
            assert time.monotonic() < deadline, sidecar.log()[-3000:]
            time.sleep(0.2)
    finally:
        slow.stop()
    assert len(_tags(registry, repository)) == 1
    deletes = [a for a in slow.answers if a[0] == "DELETE"]
    accepted = [path for _, path, status in deletes if status == 202]
    assert len(accepted) == 5 and len(set(accepted)) == 5  # each artifact deleted once
    events = recorded.events(sidecar)
    assert [e["type"] for e in events].count("DELETE_ARTIFACT") == 5
    [retention] = [e["payload"]["event_data"]["retention"] for e in events
                   if e["type"] == "TAG_RETENTION"]
    assert (retention["total"], retention["retained"]) == (6, 1)
    assert len(retention["deleted_artifact"]) == 5



def test_the_projects_page_shows_retention_and_runs_it(sidecar_factory, receiver, registry,
                                                       image):
    project = _project()
    repository = f"{project}/app"
    sidecar = sidecar_factory(_rules(project, receiver.url, "nothing",
                                     schedule="0 0 3 * * *"))
    _push_tags(sidecar, image, repository, ["a", "b"], gap=0)
    _settle(sidecar, repository, "a")
    project_id = requests.get(f"{sidecar.url}/api/v2.0/projects/{project}",
                              auth=("admin", sidecar.admin_password),
                              timeout=10).json()["project_id"]
    ui = f"{sidecar.url}/sidecar/ui"
    browser = requests.Session()
    form = browser.get(f"{ui}/login", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    assert browser.post(f"{ui}/login", data={"csrf_token": token, "username": "admin",
                                             "password": sidecar.admin_password},
                        timeout=10).status_code == 200
    page = browser.get(f"{ui}/projects/{project_id}/webhooks", timeout=10).text
    assert 'id="retention"' in page and "<code>nothing</code>" in page
    assert "0 0 3 * * *" in page and "next run" in page
    assert 'id="retains-nothing"' in page  # the rules delete everything: said up front
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    run_url = f"{ui}/projects/{project_id}/retention/run"

    refused = browser.post(run_url, data={"dry_run": "true"}, timeout=10)
    assert refused.status_code == 400  # no CSRF token: refused, nothing run

    done = browser.post(run_url, data={"csrf_token": token, "dry_run": "true"}, timeout=10)
    assert done.status_code == 200 and "Dry run" in done.text
    deadline = time.monotonic() + 60
    while "would delete 2" not in browser.get(f"{ui}/projects/{project_id}/webhooks",
                                              timeout=10).text:
        assert time.monotonic() < deadline, sidecar.log()[-3000:]
        time.sleep(0.3)
    assert _tags(registry, repository) == ["a", "b"]

    browser.post(run_url, data={"csrf_token": token, "dry_run": "false"}, timeout=10)
    deadline = time.monotonic() + 60
    while _tags(registry, repository):
        assert time.monotonic() < deadline, sidecar.log()[-3000:]
        time.sleep(0.3)
    page = browser.get(f"{ui}/projects/{project_id}/webhooks", timeout=10).text
    assert re.search(r'class="num deleted">\s*2\s*<', page), page


def test_two_sidecars_on_postgresql_run_a_project_once_at_a_time(
        postgres_database, sidecar_factory, receiver, registry, image):
    project = _project()
    repository = f"{project}/app"
    rules = _rules(project, receiver.url, "latestPushedK", 1)
    first = sidecar_factory(rules, database=postgres_database)
    second = sidecar_factory(rules, database=postgres_database)
    _push_tags(first, image, repository, ["v1", "v2", "v3", "v4"])
    time.sleep(2)  # the pushes recorded (a lone event is committed at once), the second over

    def queue() -> int:
        result = subprocess.run([*sidecar_command(), "retention", "run", project, "--json",
                                 "--database", postgres_database],
                                capture_output=True, text=True, timeout=60, check=True)
        return json.loads(result.stdout)["execution_id"]

    ids = [queue(), queue()]
    deadline = time.monotonic() + 90
    while True:
        status = json.loads(subprocess.run(
            [*sidecar_command(), "status", "--json", "--database", postgres_database],
            capture_output=True, text=True, timeout=60, check=True).stdout)
        runs = {e["id"]: e for e in status["retention"]["recent_executions"]}
        if all(runs.get(i, {}).get("status") not in (None, "Running") for i in ids):
            break
        assert time.monotonic() < deadline, (runs, first.log()[-2000:], second.log()[-2000:])
        time.sleep(0.5)
    assert [runs[i]["status"] for i in ids] == ["Success", "Success"]
    assert [runs[i]["deleted"] for i in ids] == [3, 0]  # the second ran after the first
    assert _tags(registry, repository) == ["v4"]
    api = requests.Session()
    api.auth = ("admin", first.admin_password)
    policy_id = status["retention"]["policies"][0]["id"]
    [done] = api.get(f"{second.url}/api/v2.0/retentions/{policy_id}/executions/{ids[0]}/tasks",
                     timeout=10).json()
    [later] = api.get(f"{first.url}/api/v2.0/retentions/{policy_id}/executions/{ids[1]}/tasks",
                      timeout=10).json()
    assert later["start_time"] >= done["end_time"]


def test_an_artifact_pushed_while_the_run_goes_is_not_deleted(
        sidecar_factory, receiver, registry, image):
    project = _project()
    repository = f"{project}/app"
    slow = BadRegistry("slow-delete", upstream=registry.url, delay=1.0).start()
    try:
        sidecar = sidecar_factory(_rules(project, receiver.url, "latestPushedK", 1),
                                  upstream=slow.url)
        layouts = {}
        for tag in ("v0", "v1", "v2", "v3"):
            layouts[tag], _ = image(tag=tag, layers=1, layer_size=4096)
            clients.push(layouts[tag], tag, f"{sidecar.netloc}/{repository}:{tag}")
        _settle(sidecar, repository, "v0")
        subprocess.run([*sidecar_command(), "retention", "run", project, "--database",
                        sidecar.database], check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while True:  # the decision is saved before the first (slow) delete
            tasks = _jobs(sidecar, "retention-task")
            plan = json.loads(tasks[0]["state_json"]).get("delete") if tasks else None
            if plan:
                break
            assert time.monotonic() < deadline, sidecar.log()[-3000:]
            time.sleep(0.05)
        assert len(plan) == 3
        digest, [old_tag] = plan[-1]  # the last to go: tag it again now, during the run
        clients.push(layouts[old_tag], old_tag, f"{sidecar.netloc}/{repository}:fresh")
        deadline = time.monotonic() + 60
        while _jobs(sidecar, "retention-task")[0]["status"] != "succeeded":
            assert time.monotonic() < deadline, sidecar.log()[-3000:]
            time.sleep(0.2)
    finally:
        slow.stop()
    [task] = _jobs(sidecar, "retention-task")
    assert json.loads(task["result_json"]) == {"total": 4, "retained": 2, "deleted": 2}
    assert "pushed since the run started: kept" in task["log_text"]
    remaining = _tags(registry, repository)
    assert "fresh" in remaining and old_tag in remaining and len(remaining) == 3
    assert clients.inspect_raw(f"{registry.netloc}/{repository}:fresh") is not None
    assert digest not in [path.rsplit("/", 1)[1] for m, path, status in slow.answers
                          if m == "DELETE"]


def _api(sidecar) -> tuple[requests.Session, str]:
    api = requests.Session()
    api.auth = ("admin", sidecar.admin_password)
    return api, f"{sidecar.url}/api/v2.0"


def _start_run(api, base: str, project: str) -> tuple[int, int]:
    """A real run of the project's policy through Harbor's API: (policy id, execution id)."""
    found = api.get(f"{base}/projects/{project}", timeout=10).json()
    policy_id = int(found["metadata"]["retention_id"])
    started = api.post(f"{base}/retentions/{policy_id}/executions", json={"dry_run": False},
                       timeout=10)
    assert started.status_code == 201, started.text
    return policy_id, int(started.headers["Location"].rsplit("/", 1)[1])


def _execution(api, base: str, policy_id: int, execution_id: int, until, timeout: float = 60
               ) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        rows = api.get(f"{base}/retentions/{policy_id}/executions", timeout=10).json()
        [row] = [r for r in rows if r["id"] == execution_id]
        if until(row):
            return row
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)


def test_stopping_a_running_execution_stops_its_deletions(
        sidecar_factory, receiver, registry, image):
    project = _project()
    repository = f"{project}/app"
    slow = BadRegistry("slow-delete", upstream=registry.url, delay=1.5).start()
    try:
        sidecar = sidecar_factory(_rules(project, receiver.url, "latestPushedK", 1),
                                  upstream=slow.url)
        _push_tags(sidecar, image, repository, ["v1", "v2", "v3", "v4", "v5"])
        _settle(sidecar, repository, "v5")
        api, base = _api(sidecar)
        policy_id, execution_id = _start_run(api, base, project)
        deadline = time.monotonic() + 30
        while not [a for a in slow.answers if a[0] == "DELETE"]:  # the first delete is under way
            assert time.monotonic() < deadline, sidecar.log()[-3000:]
            time.sleep(0.05)
        stop = api.patch(f"{base}/retentions/{policy_id}/executions/{execution_id}",
                         json={"action": "stop"}, timeout=10)
        assert stop.status_code == 200, stop.text
        row = _execution(api, base, policy_id, execution_id,
                         lambda r: r["status"] not in ("Running", "InProgress", "Pending"))
    finally:
        slow.stop()
    assert row["status"] == "Stopped"
    [task] = api.get(f"{base}/retentions/{policy_id}/executions/{execution_id}/tasks",
                     timeout=10).json()
    assert task["status"] == "Stopped"
    deletes = [a for a in slow.answers if a[0] == "DELETE"]
    assert 1 <= len(deletes) < 4, deletes  # stopped before the plan's four deletions
    remaining = _tags(registry, repository)
    assert "v5" in remaining and len(remaining) == 5 - len(deletes)


def test_a_registry_refusing_deletes_fails_the_run_and_says_how_to_allow_them(
        tmp_path, sidecar_factory, receiver, image):
    from tests.support.registry import Registry

    no_deletes = Registry(tmp_path / "no-deletes", deletes=False).start()
    try:
        project = _project()
        repository = f"{project}/app"
        sidecar = sidecar_factory(_rules(project, receiver.url, "latestPushedK", 1),
                                  upstream=no_deletes.url)
        _push_tags(sidecar, image, repository, ["v1", "v2"], gap=1.05)
        _settle(sidecar, repository, "v2")
        api, base = _api(sidecar)
        policy_id, execution_id = _start_run(api, base, project)
        row = _execution(api, base, policy_id, execution_id,
                         lambda r: r["status"] not in ("Running", "InProgress", "Pending"))
        assert row["status"] == "Error"  # Harbor's word for a failed execution and task
        [task] = api.get(f"{base}/retentions/{policy_id}/executions/{execution_id}/tasks",
                         timeout=10).json()
        assert task["status"] == "Error"
        assert _tags(no_deletes, repository) == ["v1", "v2"]  # nothing deleted
        status = sidecar.status()["retention"]
        assert "storage.delete.enabled" in json.dumps(status) or \
            "storage.delete.enabled" in sidecar.log()
    finally:
        no_deletes.stop()
