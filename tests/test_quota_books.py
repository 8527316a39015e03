"""The quota books (settles and deletes after the registry's answer, QUOTA_WARNING recorded with
the settle), asking for recalculations, and the recalculation job's walk, on a real SQLite
store. The registry side of the walk is a recording fake here; test_e2e_quota.py runs it
against a real registry."""

from __future__ import annotations

import json

import pytest

from sidecar.jobs.runner import Retry
from sidecar.quota.book import QuotaBook
from sidecar.quota.recalc import RecalcHandler
from sidecar.quota.recalc import walk_repository
from sidecar.registry import Manifest
from sidecar.registry import NotFound
from sidecar.registry import RegistryUnavailable
from sidecar.registry import Unauthorized
from sidecar.rules.load import parse_rules
from sidecar.rules.quota import QuotaRule
from sidecar.store import db as store_db
from sidecar.store import jobs as job_store
from sidecar.store import quota_limits
from sidecar.store import quota_recalc
from sidecar.store import quota_usage
from sidecar.store.executor import Executor
from sidecar.store.models import database

KIB = 1024


def digest(name: str) -> str:
    return "sha256:" + name.encode().hex().ljust(64, "0")[:64]


@pytest.fixture
def store(tmp_path):
    db = store_db.bind(f"sqlite:///{tmp_path / 'store.db'}")
    db.connect(reuse_if_open=True)
    yield
    db.close()


class Recorded:
    """The recorder's write_now: checks it runs inside the settle's transaction."""

    def __init__(self, fail: bool = False):
        self.events: list = []
        self.in_transaction: list[bool] = []
        self.fail = fail

    def __call__(self, events):
        self.in_transaction.append(database.in_transaction())
        if self.fail:
            raise RuntimeError("cannot record")
        self.events.extend(events)
        return len(events)


def book(record=None, **kwargs) -> QuotaBook:
    return QuotaBook(Executor(), record or Recorded(), retry_seconds=0, **kwargs)


def test_settle_crossing_the_threshold_records_one_warning_in_its_transaction(store):
    quota_limits.configure("proj", QuotaRule(100 * KIB, warning_percent=50))
    record = Recorded()
    woken = []
    books = book(record, recorded=woken.append)
    books.refresh()
    assert books.tracks("proj") and not books.tracks("other")
    first = quota_usage.reserve_blob("proj", digest("l1"), 40 * KIB, repository="proj/a")
    second = quota_usage.reserve_manifest("proj", "proj/a", digest("m1"), 20 * KIB,
                                          [(digest("l1"), 40 * KIB)])
    books.settle(first.token, True, operator="alice", tag="")
    books.settle(second.token, True, operator="bob", request_id="r-9", tag="v1")
    books.flush()
    [warning] = record.events
    assert record.in_transaction == [True]
    assert (warning.type, warning.project, warning.operator, warning.request_id, warning.tag,
            warning.digest, warning.repo_name) == (
        "QUOTA_WARNING", "proj", "bob", "r-9", "v1", digest("m1"), "proj/a")
    assert warning.details == "quota usage reach 50%: resource storage used 60.0 KiB of " \
                              "100.0 KiB"
    assert woken == [1]
    assert quota_limits.usage("proj").used == 60 * KIB


def test_a_failed_record_keeps_the_holds_for_the_next_try(store):
    quota_limits.configure("proj", QuotaRule(100 * KIB, warning_percent=10))
    record = Recorded(fail=True)
    books = book(record)
    held = quota_usage.reserve_blob("proj", digest("l1"), 40 * KIB)
    books.settle(held.token, True)
    assert books._write() is False  # the warning could not be recorded: nothing settled
    assert quota_limits.usage("proj").reserved == 40 * KIB and books.backlog == 1
    record.fail = False
    books.flush()
    assert quota_limits.usage("proj").used == 40 * KIB and len(record.events) == 1


def test_deletes_apply_after_the_settles_queued_before_them(store):
    quota_limits.configure("proj", QuotaRule(100 * KIB))
    books = book()
    held = quota_usage.reserve_manifest("proj", "proj/a", digest("m1"), KIB,
                                        [(digest("l1"), 10 * KIB)])
    books.settle(held.token, True)
    books.forget("proj", "proj/a", digest("m1"))  # deleted right after its push
    books.flush()
    assert quota_limits.usage("proj").used == 0


def test_stop_applies_what_is_queued(store):
    quota_limits.configure("proj", QuotaRule(100 * KIB))
    books = book()
    held = quota_usage.reserve_blob("proj", digest("l1"), KIB)
    books.settle(held.token, False)
    books.stop()
    assert quota_limits.usage("proj").reserved == 0


def test_recalculation_is_asked_once_per_project_until_it_ends(store):
    assert quota_recalc.request_recalc("nothing") is None
    quota_limits.configure("proj", QuotaRule(100 * KIB))
    first = quota_recalc.request_recalc("proj", operator="op", now=1000.0)
    again = quota_recalc.request_recalc("proj")
    assert first.queued and not again.queued and again.job_id == first.job_id
    assert quota_limits.usage("proj").recalculating
    job = job_store.get(first.job_id)
    assert (job.kind, job.project, job.payload, job.operator) == (
        "quota.recalc", "proj", {"project": "proj", "started_at": 1000.0}, "op")
    quota_recalc.end_recalc("proj")
    assert not quota_limits.usage("proj").recalculating


def test_rules_sync_asks_a_recalculation_for_new_quotas_only(store, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("projects:\n  - name: a\n    quota: {storage: 1GiB}\n"
                    "  - name: b\n    quota: {storage: -1}\n  - name: c\n")
    rules = parse_rules(path.read_text(), str(path), {})
    assert sorted(quota_recalc.sync_rules(rules)) == ["a", "b"]
    assert quota_recalc.sync_rules(rules) == []
    total, jobs = job_store.listing(kinds=["quota.recalc"])
    assert total == 2 and sorted(j.project for j in jobs) == ["a", "b"]


# -- the walk ---------------------------------------------------------------------------------

def manifest_bytes(*refs: tuple[str, int], index: bool = False) -> bytes:
    if index:
        return json.dumps({"schemaVersion": 2, "manifests": [
            {"digest": d, "size": s, "mediaType": "application/vnd.oci.image.manifest.v1+json"}
            for d, s in refs]}).encode()
    config, *layers = refs
    return json.dumps({"schemaVersion": 2, "config": {"digest": config[0], "size": config[1]},
                       "layers": [{"digest": d, "size": s} for d, s in layers]}).encode()


class Registry:
    """Recording fake of the RegistryClient calls the walk makes."""

    def __init__(self, repositories: dict[str, dict[str, bytes]], tags: dict[str, list[str]],
                 fail: Exception | None = None):
        self.repositories = repositories
        self.tag_lists = tags
        self.fail = fail
        self.read: list[str] = []

    def catalog(self):
        if self.fail:
            raise self.fail
        return iter(self.repositories)

    def tags(self, repository):
        if repository not in self.tag_lists:
            raise NotFound("no such repository")
        return iter(self.tag_lists[repository])

    def get_manifest(self, repository, reference):
        self.read.append(f"{repository}:{reference}")
        manifests = self.repositories[repository]
        data = manifests.get(reference)
        if data is None:
            raise NotFound("gone")
        import hashlib

        return Manifest(data, "", "sha256:" + hashlib.sha256(data).hexdigest())


def _sha(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_walk_follows_tags_and_index_children_and_skips_what_vanished():
    child = manifest_bytes((digest("c"), 10), (digest("l"), 100))
    index = manifest_bytes((_sha(child), len(child)), (digest("gone"), 5), index=True)
    registry = Registry({"p/a": {"v1": index, _sha(child): child, "v2": child}},
                        {"p/a": ["v1", "v2", "deleted"]})
    found = {a.digest: a for a in walk_repository(registry, "p/a")}
    assert set(found) == {_sha(index), _sha(child)}
    assert found[_sha(index)].refs == ((_sha(child), len(child)), (digest("gone"), 5))
    assert found[_sha(child)].refs == ((digest("c"), 10), (digest("l"), 100))
    assert walk_repository(registry, "p/none") == []


class Context:
    def __init__(self, payload, state=None):
        self.payload = payload
        self.state = state or {}
        self.saved: list[dict] = []
        self.lines: list[str] = []
        self.runner = type("Runner", (), {"executor": Executor()})()

    def checkpoint(self, state=None, **_):
        state = json.loads(json.dumps(state))  # stored as JSON, as the job table does
        self.saved.append(state)
        self.state = state

    def check_stop(self):
        pass

    def log(self, line):
        self.lines.append(line)


def test_recalc_job_rebuilds_usage_and_resumes_from_its_checkpoint(store):
    quota_limits.configure("p", QuotaRule(100 * KIB))
    started = quota_recalc.request_recalc("p", now=1.0)
    one = manifest_bytes((digest("c1"), 10), (digest("shared"), 1000))
    two = manifest_bytes((digest("c2"), 20), (digest("shared"), 1000))
    registry = Registry({"p/a": {"v1": one}, "p/b": {"v1": two}, "other/x": {"v1": one}},
                        {"p/a": ["v1"], "p/b": ["v1"], "other/x": ["v1"]})
    ctx = Context(job_store.get(started.job_id).payload)
    handler = RecalcHandler(registry, checkpoint_seconds=0)
    outcome = handler.run(ctx)
    expected = len(one) + len(two) + 10 + 20 + 1000
    assert outcome.status == "succeeded" and outcome.result["used"] == expected
    assert [s["done"] for s in ctx.saved] == [["p/a"], ["p/a", "p/b"]]
    assert "other/x:v1" not in registry.read
    usage = quota_limits.usage("p")
    assert usage.used == expected and not usage.recalculating
    # taken over after a crash: repositories already walked are not read again
    registry.read.clear()
    resumed = Context(ctx.payload, {"done": ["p/a"], "found": ctx.saved[0]["found"]})
    assert handler.run(resumed).result["used"] == expected
    assert registry.read == ["p/b:v1"]


@pytest.mark.parametrize("error,retried", [(RegistryUnavailable("down"), True),
                                           (Unauthorized("denied"), False)])
def test_recalc_job_retries_an_unreachable_registry_and_fails_a_refusal(store, error, retried):
    quota_limits.configure("p", QuotaRule(100 * KIB))
    started = quota_recalc.request_recalc("p")
    ctx = Context(job_store.get(started.job_id).payload)
    handler = RecalcHandler(Registry({}, {}, fail=error))
    if retried:
        with pytest.raises(Retry):
            handler.run(ctx)
        assert quota_limits.usage("p").recalculating  # the last figure stays meanwhile
        handler.failed(ctx, "gave up")
    else:
        outcome = handler.run(ctx)
        assert outcome.status == "failed" and "registry_credential" in outcome.reason
    assert not quota_limits.usage("p").recalculating
