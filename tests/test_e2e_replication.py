"""Replication through `sidecar serve` to real destination registries (Distribution with
htpasswd Basic auth, and with `auth: token` and its token service), checked with skopeo at the
destination, with REPLICATION events at a real receiver.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import time
import uuid
from typing import Any

import pytest
import requests

from tests.consumer_rules import assert_harbor_compatible
from tests.support import clients
from tests.support.auth import htpasswd_file
from tests.support.bad_registry import BadRegistry
from tests.support.images import make_index
from tests.support.ports import free_port
from tests.support.ports import poll
from tests.support.registry import Registry
from tests.support.sidecar import sidecar_command
from tests.support.tokens import Account

pytestmark = pytest.mark.e2e

DR_PASSWORD = f"dr-{secrets.token_hex(8)}"
TOKEN_PASSWORD = f"tk-{secrets.token_hex(8)}"
#: quick retries, short leases: a dead destination ends within seconds, a killed worker's
#: task is taken over within seconds
JOBS = {"sidecar": {"jobs": {"backoff_seconds": 0.2, "backoff_max_seconds": 0.5,
                             "lease_seconds": 5}}}


@pytest.fixture(scope="module")
def basic_dest(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dest-basic")
    passwords = htpasswd_file(workdir / "htpasswd", {"robot": DR_PASSWORD})
    registry = Registry(workdir, htpasswd=passwords).start()
    yield registry
    registry.stop()


def _repo(project: str = "proj") -> str:
    return f"{project}/app-{uuid.uuid4().hex[:8]}"


def rules_for(dest_url: str, receiver_url: str | None = None, *, project: str = "proj",
              policy: dict | None = None, registry: dict | None = None) -> dict:
    hooks = []
    if receiver_url:
        hooks = [{"name": "repl", "event_types": ["REPLICATION"],
                  "targets": [{"type": "http", "address": receiver_url}]}]
    return {
        "projects": [{"name": project, "public": False, "webhooks": hooks}],
        "registries": [{"name": "dr", "type": "docker-registry", "url": dest_url,
                        "credential": {"type": "basic", "access_key": "robot",
                                       "access_secret": "${DR_SECRET}"},
                        **(registry or {})}],
        "replication": [{"name": "to-dr", "description": "disaster recovery copy",
                         "dest_registry": "dr", "trigger": {"type": "event_based"},
                         "filters": [{"type": "name", "value": f"{project}/**"}],
                         **(policy or {})}],
    }


def dest_digest(netloc: str, ref: str, creds: str = f"robot:{DR_PASSWORD}") -> str:
    return clients.inspect(f"{netloc}/{ref}", creds=creds)["Digest"]


def replication_events(receiver, count: int, timeout: float = 30.0) -> list[dict]:
    return [r.json() for r in receiver.wait_for(count, timeout=timeout)]


def _replication(event: dict) -> dict:
    return event["event_data"]["replication"]


def test_push_is_replicated_with_its_digest_and_reported(sidecar_factory, receiver,
                                                         basic_dest, image):
    layout, digest = image(tag="v1")
    sidecar = sidecar_factory(rules_for(basic_dest.url, receiver.url), config=JOBS,
                              env={"DR_SECRET": DR_PASSWORD})
    repo = _repo()
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1")

    running, success = replication_events(receiver, 2)
    assert dest_digest(basic_dest.netloc, f"{repo}:v1") == digest
    for event in (running, success):
        assert_harbor_compatible(event)
        assert event["type"] == "REPLICATION"
    assert _replication(running)["job_status"] == "Running"
    assert "successful_artifact" not in _replication(running)
    done = _replication(success)
    assert done["job_status"] == "Success"
    assert done["trigger_type"] == "EVENT"
    assert done["artifact_type"] == "artifact"
    assert done["authentication_type"] == "basic"
    assert done["src_resource"] == {"registry_type": "harbor",
                                    "endpoint": f"http://{sidecar.netloc}",
                                    "namespace": "proj"}
    assert done["dest_resource"] == {"registry_name": "dr", "registry_type": "docker-registry",
                                     "endpoint": basic_dest.url, "namespace": "proj"}
    name = repo.partition("/")[2]
    assert done["successful_artifact"] == [{"type": "artifact", "status": "Success",
                                            "name_tag": f"{name} [1 item(s) in total]",
                                            "references": ["v1"]}]
    assert done["execution_id"] and done["task_id"]
    assert done["execution_id"] == _replication(running)["execution_id"]
    assert DR_PASSWORD not in sidecar.log()


def jobs(sidecar, kind: str = "replication-task") -> list[dict[str, Any]]:
    """The sidecar's replication jobs, oldest first, read from its SQLite store."""
    path = sidecar.database.split(":///", 1)[1]
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM job WHERE kind = ? ORDER BY id", (kind,)).fetchall()
    return [dict(row) for row in rows]


def statuses(events: list[dict]) -> list[str]:
    return [_replication(e)["job_status"] for e in events]


def replicate(sidecar, policy: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*sidecar_command(), "replicate", policy, "--database",
                           sidecar.database, *extra], capture_output=True, text=True,
                          timeout=120)


def test_an_index_goes_with_its_children_to_a_token_registry(sidecar_factory, receiver,
                                                              token_registry_factory,
                                                              tmp_path):
    dest = token_registry_factory({"robot": Account(TOKEN_PASSWORD, {
        "repository:mirror/*": ["pull", "push"]})})
    rules = rules_for(dest.url, receiver.url, registry={
        "credential": {"access_key": "robot", "access_secret": "${DR_SECRET}"}},
        policy={"dest_namespace": "mirror",
                # untagged pushes (the children, by digest) start nothing: "v*" skips ""
                "filters": [{"type": "name", "value": "proj/**"},
                            {"type": "tag", "value": "v*"}]})
    sidecar = sidecar_factory(rules, config=JOBS, env={"DR_SECRET": TOKEN_PASSWORD})
    index, children = make_index(tmp_path / "index", "v2")
    repo = _repo()
    clients.skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{tmp_path / 'index'}:v2",
                   f"docker://{sidecar.netloc}/{repo}:v2")

    events = replication_events(receiver, 2)
    assert statuses(events) == ["Running", "Success"]
    target = f"mirror/{repo.partition('/')[2]}"
    creds = f"robot:{TOKEN_PASSWORD}"
    raw = clients.skopeo("inspect", "--raw", "--tls-verify=false", "--creds", creds,
                         f"docker://{dest.netloc}/{target}:v2").stdout.encode()
    assert "sha256:" + __import__("hashlib").sha256(raw).hexdigest() == index
    for child in children:  # each child is there, by its digest
        assert clients.inspect(f"{dest.netloc}/{target}@{child}", creds=creds)["Digest"] \
            == child
    done = _replication(events[1])
    # Harbor's quirk: the local side's namespace is the destination's, and the other way
    assert done["src_resource"]["namespace"] == "mirror"
    assert done["dest_resource"]["namespace"] == "proj"
    assert done["successful_artifact"][0]["references"] == ["v2"]
    assert dest.tokens.issued_to("robot"), "the destination's token flow was used"
    log = sidecar.log()
    for secret in dest.tokens.secrets():
        assert secret not in log


def test_a_dead_destination_ends_in_error_with_the_reason(sidecar_factory, receiver, image):
    layout, _ = image(tag="v1")
    dead = f"http://127.0.0.1:{free_port()}"
    sidecar = sidecar_factory(rules_for(dead, receiver.url), config=JOBS,
                              env={"DR_SECRET": DR_PASSWORD})
    clients.push(layout, "v1", f"{sidecar.netloc}/{_repo()}:v1")

    events = replication_events(receiver, 2)
    assert statuses(events) == ["Running", "Error"]
    failed = _replication(events[1])["failed_artifact"]
    assert failed[0]["status"] == "Error" and failed[0]["references"] == ["v1"]
    assert "successful_artifact" not in _replication(events[1])
    [task] = jobs(sidecar)
    assert task["status"] == "failed"
    assert task["attempts"] == 3, "retried before giving up"
    assert "connection refused" in task["last_error"].lower()
    time.sleep(1)
    assert len(receiver.requests) == 2, "no Success after the Error"


def test_override_false_keeps_the_destination_tag(sidecar_factory, receiver, basic_dest,
                                                   image):
    theirs, their_digest = image(tag="v1")
    ours, our_digest = image(tag="v1")
    repo = _repo()
    clients.push(theirs, "v1", f"{basic_dest.netloc}/{repo}:v1", creds=f"robot:{DR_PASSWORD}")
    sidecar = sidecar_factory(rules_for(basic_dest.url, receiver.url,
                                        policy={"override": False}),
                              config=JOBS, env={"DR_SECRET": DR_PASSWORD})
    clients.push(ours, "v1", f"{sidecar.netloc}/{repo}:v1")

    events = replication_events(receiver, 2)
    assert statuses(events) == ["Running", "Success"]  # Harbor: a success that copies nothing
    assert "override_mode" not in _replication(events[1])
    assert dest_digest(basic_dest.netloc, f"{repo}:v1") == their_digest != our_digest
    [task] = jobs(sidecar)
    assert json.loads(task["result_json"])["references"] == {"v1": "kept"}


def test_replicate_deletion_deletes_at_the_destination(sidecar_factory, receiver,
                                                       basic_dest, image):
    layout, digest = image(tag="v1")
    sidecar = sidecar_factory(rules_for(basic_dest.url, receiver.url,
                                        policy={"replicate_deletion": True}),
                              config=JOBS, env={"DR_SECRET": DR_PASSWORD})
    repo = _repo()
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1")
    replication_events(receiver, 2)
    assert dest_digest(basic_dest.netloc, f"{repo}:v1") == digest

    clients.delete(f"{sidecar.netloc}/{repo}@{digest}")
    events = replication_events(receiver, 4)
    assert statuses(events[2:]) == ["Running", "Success"]
    gone = clients.skopeo("inspect", "--tls-verify=false", "--creds", f"robot:{DR_PASSWORD}",
                          f"docker://{basic_dest.netloc}/{repo}:v1", check=False)
    assert gone.returncode != 0 and "manifest unknown" in gone.stderr
    deletion = [t for t in jobs(sidecar) if json.loads(t["payload_json"])["operation"]
                == "deletion"]
    assert len(deletion) == 1 and deletion[0]["status"] == "succeeded"


def test_without_replicate_deletion_a_delete_stays_local(sidecar_factory, receiver,
                                                         basic_dest, image):
    layout, digest = image(tag="v1")
    sidecar = sidecar_factory(rules_for(basic_dest.url, receiver.url), config=JOBS,
                              env={"DR_SECRET": DR_PASSWORD})
    repo = _repo()
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1")
    replication_events(receiver, 2)
    clients.delete(f"{sidecar.netloc}/{repo}@{digest}")
    time.sleep(1.5)
    assert len(receiver.requests) == 2
    assert dest_digest(basic_dest.netloc, f"{repo}:v1") == digest


def test_a_manual_run_syncs_what_was_pushed_before_the_policy(sidecar_factory, receiver,
                                                              basic_dest, image):
    old, old_digest = image(tag="v1")
    other, _ = image(tag="v1")
    # a project of its own: the upstream registry is shared by every test of the session
    project = f"sync{uuid.uuid4().hex[:8]}"
    sidecar = sidecar_factory({"projects": [{"name": project}, {"name": "else"}]},
                              config=JOBS, env={"DR_SECRET": DR_PASSWORD})
    repo, elsewhere = _repo(project), _repo("else")
    clients.push(old, "v1", f"{sidecar.netloc}/{repo}:v1")
    clients.push(old, "v1", f"{sidecar.netloc}/{repo}:v2-not-selected")
    clients.push(other, "v1", f"{sidecar.netloc}/{elsewhere}:v1")
    rules = rules_for(basic_dest.url, receiver.url, project=project, policy={
        "trigger": {"type": "manual"},
        "filters": [{"type": "name", "value": f"{project}/**"},
                    {"type": "tag", "value": "v1"}]})
    sidecar.write_rules(rules)
    poll(lambda: _has_policy(sidecar), bool)  # the reloaded rules are in the store

    run = replicate(sidecar, "to-dr", "--wait")
    assert run.returncode == 0, run.stderr + run.stdout
    assert "Success" in run.stdout and repo in run.stdout
    assert dest_digest(basic_dest.netloc, f"{repo}:v1") == old_digest
    missing = clients.skopeo("inspect", "--tls-verify=false", "--creds",
                             f"robot:{DR_PASSWORD}",
                             f"docker://{basic_dest.netloc}/{elsewhere}:v1", check=False)
    assert missing.returncode != 0, "a repository the name filter does not select stays"
    events = replication_events(receiver, 2)
    assert statuses(events) == ["Running", "Success"]
    assert _replication(events[1])["trigger_type"] == "MANUAL"
    assert events[1]["operator"] == "admin"
    assert _replication(events[1])["successful_artifact"][0]["references"] == ["v1"]

    again = replicate(sidecar, "to-dr", "--wait")  # nothing left to do
    assert again.returncode == 0, again.stderr
    assert "no resources need to be replicated" in again.stdout
    time.sleep(1)
    assert len(receiver.requests) == 2


def _has_policy(sidecar) -> bool:
    path = sidecar.database.split(":///", 1)[1]
    with sqlite3.connect(path) as conn:
        return bool(conn.execute("SELECT 1 FROM replication_policy WHERE name = 'to-dr' "
                                 "AND trigger = 'manual'").fetchone())


def test_kill_9_mid_copy_resumes_and_reports_one_success(sidecar_factory, receiver,
                                                         basic_dest, image):
    # 3 layers of ~600 KB at 300 KB/s: the copy takes seconds, long enough to be cut short
    layout, digest = image(tag="v1", layers=3, layer_size=600 * 1024)
    sidecar = sidecar_factory(rules_for(basic_dest.url, receiver.url,
                                        policy={"speed": 300}),
                              config=JOBS, env={"DR_SECRET": DR_PASSWORD})
    repo = _repo()
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        tasks = jobs(sidecar)
        if tasks and json.loads(tasks[0]["state_json"]).get("blobs"):
            break  # at least one blob is at the destination, the rest is under way
        time.sleep(0.05)
    else:
        raise AssertionError(f"the copy never got under way:\n{sidecar.log()}")
    sidecar.kill()
    [task] = jobs(sidecar)
    assert task["status"] == "running", "killed mid-copy"

    sidecar.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and jobs(sidecar)[0]["status"] != "succeeded":
        time.sleep(0.2)
    [task] = jobs(sidecar)
    assert task["status"] == "succeeded", sidecar.log()
    assert "resumed" in task["log_text"]
    assert dest_digest(basic_dest.netloc, f"{repo}:v1") == digest
    replication_events(receiver, 2)
    time.sleep(1)
    events = [r.json() for r in receiver.requests]
    assert statuses(events).count("Success") == 1
    assert statuses(events).count("Running") == 1


@pytest.mark.parametrize("mode", ["garbage", "redirect", "wrong-digest"])
def test_a_misbehaving_destination_fails_the_task(sidecar_factory, receiver, basic_dest,
                                                   image, mode):
    bad = BadRegistry(mode, upstream=basic_dest.url).start()
    try:
        layout, _ = image(tag="v1")
        sidecar = sidecar_factory(rules_for(bad.url, receiver.url), config=JOBS,
                                  env={"DR_SECRET": DR_PASSWORD})
        clients.push(layout, "v1", f"{sidecar.netloc}/{_repo()}:v1")
        events = replication_events(receiver, 2)
        assert statuses(events) == ["Running", "Error"]
        [task] = jobs(sidecar)
        assert task["status"] == "failed"
        reason = task["last_error"]
        expected = {"garbage": "not a manifest", "redirect": "redirect loop",
                    "wrong-digest": "sha256:" + "0" * 64}[mode]
        assert expected in reason, reason
        time.sleep(1)
        assert "Success" not in statuses([r.json() for r in receiver.requests])
        assert DR_PASSWORD not in sidecar.log()
    finally:
        bad.stop()


def test_a_harbor_destination_gets_its_project_made_first(sidecar_factory, receiver, image,
                                                          tmp_path):
    """A `harbor` registry: here a second sidecar (Harbor's API) in front of a second
    registry. The missing destination project is created through Harbor's API, public as the
    source project is, before the copy; the destination sees an ordinary push."""
    dest_registry = Registry(tmp_path / "harbor-registry").start()
    try:
        harbor_password = f"hb-{secrets.token_hex(6)}"
        harbor = sidecar_factory(
            {"projects": []}, upstream=dest_registry.url, name="harbor",
            config={"harbor_admin_password": harbor_password})
        project = f"hb{uuid.uuid4().hex[:8]}"
        source_rules = rules_for(harbor.url, receiver.url, project=project, registry={
            "type": "harbor", "credential": {"access_key": "admin",
                                             "access_secret": "${DR_SECRET}"}})
        source_rules["projects"][0]["public"] = True
        sidecar = sidecar_factory(source_rules, config=JOBS, env={"DR_SECRET": harbor_password})
        layout, digest = image(tag="v1")
        repo = f"{project}/app"
        clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1")

        events = replication_events(receiver, 2)
        assert statuses(events) == ["Running", "Success"]
        assert _replication(events[1])["dest_resource"]["registry_type"] == "harbor"
        made = requests.get(f"{harbor.url}/api/v2.0/projects/{project}", timeout=10,
                            auth=("admin", harbor_password))
        assert made.status_code == 200, "the project was made at the destination"
        assert made.json()["metadata"]["public"] == "true", "public, as the source project"
        assert clients.inspect(f"{dest_registry.netloc}/{repo}:v1")["Digest"] == digest
        assert harbor_password not in sidecar.log()
    finally:
        dest_registry.stop()


def test_a_scheduled_policy_runs_at_its_fire_time(sidecar_factory, receiver, basic_dest,
                                                  registry, image):
    """Pushed straight to the registry (the sidecar never saw it); a schedule firing every
    minute: the scheduler catches up the last fire time at start, one run per fire time."""
    project = f"cron{uuid.uuid4().hex[:8]}"
    layout, digest = image(tag="v1")
    repo = f"{project}/app"
    clients.push(layout, "v1", f"{registry.netloc}/{repo}:v1")
    rules = rules_for(basic_dest.url, receiver.url, project=project, policy={
        "trigger": {"type": "scheduled", "trigger_settings": {"cron": "0 */1 * * * *"}}})
    sidecar = sidecar_factory(rules, config=JOBS, env={"DR_SECRET": DR_PASSWORD})

    events = replication_events(receiver, 2, timeout=60)
    assert statuses(events) == ["Running", "Success"]
    done = _replication(events[1])
    assert done["trigger_type"] == "SCHEDULE" and events[1]["operator"] == "harbor-jobservice"
    assert dest_digest(basic_dest.netloc, f"{repo}:v1") == digest
    [execution] = jobs(sidecar, "replication")
    assert execution["key"].startswith("replication:") and "@" in execution["key"]
