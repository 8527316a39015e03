"""A large rules file is read only when it changed, by one worker, and the recorder re-reads
only the projects that changed (issue 17). Against a real SQLite store."""

from __future__ import annotations

import os
import time

import pytest
import yaml

from sidecar import preload
from sidecar.rules.load import RulesError
from sidecar.store import db as store_db
from sidecar.store import policies as policy_store
from sidecar.store.models import Policy
from sidecar.store.models import database


def rules(projects: int, description: str = "", extra: bool = False,
          address: str = "http://hooks.example/${HOOK_PATH:-x}") -> dict:
    out = []
    for p in range(projects):
        hooks = [{"name": f"hook-{n}", "description": description if p == 3 else "",
                  "event_types": ["PUSH_ARTIFACT"],
                  "targets": [{"type": "http", "address": f"{address}/{p}/{n}"}]}
                 for n in range(3)]
        if extra and p == 5:
            hooks.append({"name": "added", "event_types": ["PULL_ARTIFACT"],
                          "targets": [{"type": "http", "address": "http://hooks.example/a"}]})
        out.append({"name": f"team-{p}", "webhooks": hooks})
    return {"projects": out}


@pytest.fixture
def store(tmp_path):
    store_db.bind(f"sqlite:///{tmp_path / 'store.db'}")
    with database.connection_context():
        yield tmp_path / "rules.yaml"


def write(path, data) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_an_unchanged_file_is_not_read_again(store, monkeypatch):
    path = write(store, rules(10))
    first = preload.sync_rules_file(path)
    assert first.outcome == "synced" and first.changed.policies_added == 30
    again = preload.sync_rules_file(path)
    assert (again.outcome, again.projects) == ("unchanged", 10)
    # the environment is part of the rules: a new value of a ${VAR} the file uses is a change
    monkeypatch.setenv("HOOK_PATH", "elsewhere")
    changed = preload.sync_rules_file(path)
    assert changed.outcome == "synced" and changed.changed.policies_changed == 30
    assert preload.sync_rules_file(path).outcome == "unchanged"


def test_one_worker_reads_an_edit_the_others_find_it_stored(store):
    path = write(store, rules(10))
    preload.sync_rules_file(path, claim=True)
    write(store, rules(10, description="edited"))
    # another worker claimed this version a moment ago: this one keeps serving, asks again
    digest = preload.rules_digest(store.read_bytes())
    policy_store.set_setting(preload.RULES_CLAIM, f"{digest} 1000.0")
    assert preload.sync_rules_file(path, claim=True, now=1001.0).outcome == "busy"
    # a claim older than CLAIM_SECONDS is taken over (its worker died)
    late = 1000.0 + preload.CLAIM_SECONDS + 1
    done = preload.sync_rules_file(path, claim=True, now=late)
    assert done.outcome == "synced" and done.changed.policies_changed == 3
    assert preload.sync_rules_file(path, claim=True).outcome == "unchanged"


def test_a_refused_file_is_refused_for_every_worker_without_reading_it_again(store):
    path = write(store, rules(3))
    preload.sync_rules_file(path)
    store.write_text(store.read_text().replace("PUSH_ARTIFACT", "PUSH_ARTEFACT", 1))
    with pytest.raises(RulesError) as first:
        preload.sync_rules_file(path, claim=True)
    assert "unsupported event type PUSH_ARTEFACT" in str(first.value)
    with pytest.raises(RulesError) as second:  # another worker: the stored verdict
        preload.sync_rules_file(path, claim=True)
    assert str(second.value) == str(first.value)
    assert Policy.select().count() == 9  # the last good rules stay


def test_the_recorder_rereads_only_the_projects_that_changed(store):
    path = write(store, rules(10))
    preload.sync_rules_file(path)
    before = policy_store.policies_fingerprint()
    write(store, rules(10, description="edited", extra=True))
    preload.sync_rules_file(path)
    after = policy_store.policies_fingerprint()
    assert sorted(policy_store.changed_projects(before, after)) == ["team-3", "team-5"]
    assert policy_store.changed_projects(after, after) == []
    # a deleted policy: only a full read can tell what is gone
    write(store, rules(10))
    preload.sync_rules_file(path)
    assert policy_store.changed_projects(after, policy_store.policies_fingerprint()) is None


def test_a_worker_reads_the_file_in_a_child_process(store, tmp_path):
    """What a worker's reload runs: the same sync, in a new interpreter, through stdin/stdout."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    path = write(store, rules(4))
    done = preload.sync_rules_apart(url, path)
    assert (done.outcome, done.projects) == ("synced", 4)
    assert "12 policies added" in str(done)
    assert Policy.select().count() == 12  # in the store this process reads
    assert preload.sync_rules_apart(url, path).outcome == "unchanged"
    # what a worker asks first, to start no child for a file the store already knows
    assert preload.stored_verdict(path).outcome == "unchanged"
    store.write_text(store.read_text().replace("PUSH_ARTIFACT", "PUSH_ARTEFACT", 1))
    assert preload.stored_verdict(path) is None  # to be read
    digest = preload.rules_digest(store.read_bytes())
    policy_store.set_setting(preload.RULES_CLAIM, f"{digest} {time.time()}")
    assert preload.stored_verdict(path).outcome == "busy"  # another worker is reading it
    policy_store.set_setting(preload.RULES_CLAIM, "")
    with pytest.raises(RulesError) as refused:
        preload.sync_rules_apart(url, path)
    assert refused.value.problems[0].startswith(f"{path}:")
    assert "unsupported event type PUSH_ARTEFACT" in refused.value.problems[0]
    with pytest.raises(RulesError):
        preload.stored_verdict(path)  # refused for every worker, without reading it again
    assert Policy.select().count() == 12  # the last good rules stay


def test_a_child_that_cannot_store_says_why_without_the_password(store):
    url = "postgresql://sidecar:s3cret-pw@127.0.0.1:9/nowhere"  # nothing listens there
    with pytest.raises(RuntimeError) as failed:
        preload.sync_rules_apart(url, write(store, rules(1)))
    assert "storing the rules failed" in str(failed.value)
    assert "Connection refused" in str(failed.value) or "connect" in str(failed.value)
    assert "s3cret-pw" not in str(failed.value)


def test_a_plan_read_before_the_lock_is_read_again_if_the_policies_changed_meanwhile(store):
    """The policy diff is read before the write lock (webhooks do not wait on it); an API
    write that lands in between must not be undone or missed."""
    from sidecar.rules.load import load_rules

    path = write(store, rules(4))
    preload.sync_rules_file(path)
    write(store, rules(4, description="edited"))
    edited = load_rules(path)
    plan = policy_store.plan_policies(edited)
    assert len(plan.updated) == 3
    # meanwhile the API changes a rules policy and adds one of the file's names to a project
    team0 = Policy.get(Policy.name == "hook-0", Policy.project_id == 1)
    Policy.update(description="by hand", updated_at=team0.updated_at + 5).where(
        Policy.id == team0.id).execute()
    done = policy_store.sync_rules(edited, plan=plan)
    assert done.policies_changed == 4  # hook-0 of team-0 too: the stale plan was not used
    assert {p.description for p in Policy.select().where(Policy.project_id == 1)} == {""}
    team3 = [p.description for p in Policy.select().join(policy_store.Project).where(
        policy_store.Project.name == "team-3")]
    assert team3 == ["edited"] * 3
    # with nothing in between, the plan read before is the one used
    write(store, rules(4))
    plain = load_rules(path)
    plan = policy_store.plan_policies(plain)
    assert policy_store.sync_rules(plain, plan=plan).policies_changed == 3


def test_a_child_that_hangs_is_stopped_at_the_timeout(store, tmp_path):
    fifo = tmp_path / "rules-fifo.yaml"
    os.mkfifo(fifo)  # opening it for reading waits for a writer that never comes
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="took over 1 s: the child process was stopped"):
        preload.sync_rules_apart(f"sqlite:///{tmp_path / 'store.db'}", str(fifo), timeout=1.0)
    assert time.monotonic() - started < 10
