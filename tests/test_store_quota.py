"""Quota accounting's contract, run against SQLite and PostgreSQL alike.

Usage is Harbor's (distinct blobs of a project, each counted once); a push's bytes are checked
and held in one step, so concurrent pushes never take a project over its limit; deletes uncount
what no remaining manifest references; the DENIED sentence carries the store's numbers.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time

import pytest

from sidecar.rules.load import parse_rules
from sidecar.rules.quota import QuotaRule
from sidecar.store import db as store_db
from sidecar.store import quota_limits as limits
from sidecar.store import quota_recount as recount
from sidecar.store import quota_usage as quota
from sidecar.store.models import SchemaVersion
from sidecar.store.models import database
from sidecar.store.quota_models import QUOTA_MODELS
from sidecar.store.quota_models import QuotaReservation
from tests.support import postgres

MiB = 1024 ** 2
NOW = 1_700_000_000.0


def digest(name: str) -> str:
    return "sha256:" + name.encode().hex().ljust(64, "0")[:64]


LAYER, BASE, CONFIG, CONFIG_B, MANIFEST, MANIFEST_B = (
    digest(n) for n in ("layer", "base", "config", "config-b", "manifest", "manifest-b"))


def bind(url: str):
    return store_db.bind(url)


@pytest.fixture
def store(empty_store_url):
    url = empty_store_url
    db = bind(url)
    db.connect(reuse_if_open=True)
    yield url
    db.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_store_of_the_version_before_gets_the_quota_tables(backend, tmp_path, request,
                                                             monkeypatch):
    """An existing store is migrated: the quota step runs once, on the next start."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        postgres.reset_schema(url)
    step = store_db.MIGRATIONS.index(next(
        m for m in store_db.MIGRATIONS if "migrate_quota" in m.__code__.co_names))
    with monkeypatch.context() as patched:
        patched.setattr(store_db, "MIGRATIONS", store_db.MIGRATIONS[:step])
        store_db.bind(url).close()  # a database of the version before
    db = store_db.bind(url)
    with db.connection_context():
        assert {m._meta.table_name for m in QUOTA_MODELS} <= set(db.get_tables())
        assert SchemaVersion.get().version == len(store_db.MIGRATIONS)
        assert limits.configure("library", QuotaRule(10), now=NOW) is True
    db.close()


def set_limit(project: str = "library", hard: int = 100 * MiB, **kwargs) -> None:
    limits.configure(project, QuotaRule(hard, **kwargs), now=NOW)


def push_blob(project: str, blob: str, size: int, repository: str = "") -> quota.Reservation:
    """A blob upload that the registry accepts."""
    held = quota.reserve_blob(project, blob, size, repository=repository, now=NOW)
    if held.token:
        quota.settle([(held.token, True)], now=NOW)
    return held


def push_manifest(project: str, repository: str, manifest: str, size: int,
                  refs: list[tuple[str, int]]) -> quota.Reservation:
    held = quota.reserve_manifest(project, repository, manifest, size, refs, now=NOW)
    if held.token:
        quota.settle([(held.token, True)], now=NOW)
    return held


def used(project: str = "library") -> int:
    return limits.usage(project).used


def reserved(project: str = "library") -> int:
    return limits.usage(project).reserved


class TestAccounting:
    def test_a_project_without_quota_counts_nothing(self, store):
        held = quota.reserve_blob("library", LAYER, 5 * MiB, now=NOW)
        assert (held.allowed, held.tracked, held.token) == (True, False, "")
        held = quota.reserve_manifest("library", "library/app", MANIFEST, 500, [(LAYER, 5)],
                                      now=NOW)
        assert (held.allowed, held.tracked, held.token) == (True, False, "")
        assert limits.usage("library") is None and limits.all_usage() == []

    def test_configure_creates_then_updates(self, store):
        assert limits.configure("library", QuotaRule(10 * MiB), now=NOW) is True
        assert limits.configure("library", QuotaRule(20 * MiB, 90, "every_push"),
                               source="rules", now=NOW + 1) is False
        row = limits.usage("library")
        assert (row.hard, row.used, row.reserved, row.warning_percent, row.warning_repeat,
                row.source, row.recalculating) == (20 * MiB, 0, 0, 90, "every_push", "rules",
                                                   False)
        assert limits.usage_by_id(row.id) == row
        assert [u.project for u in limits.all_usage()] == ["library"]

    def test_an_upload_holds_its_bytes_until_settled(self, store):
        set_limit()
        held = quota.reserve_blob("library", LAYER, 5 * MiB, repository="library/app", now=NOW)
        assert held.allowed and held.token and held.delta == 5 * MiB
        assert (used(), reserved()) == (0, 5 * MiB)
        assert quota.settle([(held.token, True)], now=NOW) == []
        assert (used(), reserved()) == (5 * MiB, 0)
        assert quota.settle([(held.token, True)], now=NOW) == []  # twice: nothing more
        assert (used(), reserved()) == (5 * MiB, 0)

    def test_a_failed_upload_gives_its_bytes_back(self, store):
        set_limit()
        held = quota.reserve_blob("library", LAYER, 5 * MiB, now=NOW)
        quota.settle([(held.token, False)], now=NOW)
        assert (used(), reserved()) == (0, 0)
        # not counted: the same blob uploaded again is new to the project
        assert quota.reserve_blob("library", LAYER, 5 * MiB, now=NOW).delta == 5 * MiB

    def test_a_blob_the_project_has_adds_nothing(self, store):
        set_limit()
        push_blob("library", LAYER, 5 * MiB)
        again = quota.reserve_blob("library", LAYER, 5 * MiB, repository="library/other",
                                   now=NOW)
        assert (again.allowed, again.token, again.delta) == (True, "", 0)
        assert (used(), reserved()) == (5 * MiB, 0)

    def test_empty_blob_adds_nothing_and_negative_sizes_are_refused(self, store):
        set_limit()
        assert quota.reserve_blob("library", LAYER, 0, now=NOW) == quota.Reservation(True)
        with pytest.raises(ValueError):
            quota.reserve_blob("library", LAYER, -1, now=NOW)
        with pytest.raises(ValueError):
            quota.reserve_manifest("library", "library/a", MANIFEST, 10, [(LAYER, -5)], now=NOW)

    def test_two_repositories_sharing_layers_count_them_once(self, store):
        set_limit()
        for repository, config, manifest in (("library/a", CONFIG, MANIFEST),
                                             ("library/b", CONFIG_B, MANIFEST_B)):
            push_blob("library", BASE, 30 * MiB, repository)
            push_blob("library", config, 1000, repository)
            push_manifest("library", repository, manifest, 500, [(config, 1000),
                                                                 (BASE, 30 * MiB)])
        assert used() == 30 * MiB + 2 * 1000 + 2 * 500

    def test_the_same_blob_in_two_projects_counts_in_both(self, store):
        set_limit("library")
        set_limit("team")
        push_blob("library", LAYER, 5 * MiB)
        push_blob("team", LAYER, 5 * MiB)  # a cross-project mount is new to team
        assert (used("library"), used("team")) == (5 * MiB, 5 * MiB)

    def test_a_mount_holds_the_size_the_store_knows_for_the_blob(self, store):
        set_limit("library", hard=10 * MiB)
        set_limit("team")
        push_blob("team", LAYER, 6 * MiB)
        mount = quota.reserve_blob("library", LAYER, None, now=NOW)  # from team/...
        assert mount.allowed and mount.delta == 6 * MiB
        quota.settle([(mount.token, True)], now=NOW)
        assert quota.reserve_blob("library", LAYER, None, now=NOW).delta == 0  # has it now
        assert not quota.reserve_blob("library", BASE, 5 * MiB, now=NOW).allowed
        push_blob("team", BASE, 5 * MiB)
        assert not quota.reserve_blob("library", BASE, None, now=NOW).allowed

    def test_a_mount_of_a_blob_never_seen_passes_and_its_manifest_counts_it(self, store):
        set_limit(hard=10 * MiB)
        mount = quota.reserve_blob("library", LAYER, None, now=NOW)
        assert (mount.allowed, mount.token, mount.delta) == (True, "", 0)
        held = quota.reserve_manifest("library", "library/a", MANIFEST, 1000,
                                      [(LAYER, 12 * MiB)], now=NOW)
        assert not held.allowed and held.delta == 12 * MiB + 1000

    def test_manifest_adds_itself_and_what_the_project_lacks(self, store):
        set_limit()
        push_blob("library", BASE, 30 * MiB)
        held = quota.reserve_manifest("library", "library/a", MANIFEST, 700,
                                      [(CONFIG, 1500), (BASE, 30 * MiB)], now=NOW)
        assert held.delta == 700 + 1500  # the base layer is counted already
        quota.settle([(held.token, True)], now=NOW)
        assert (used(), reserved()) == (30 * MiB + 2200, 0)

    def test_manifest_the_project_has_adds_nothing_but_links_the_repository(self, store):
        set_limit()
        push_manifest("library", "library/a", MANIFEST, 700, [(LAYER, 5 * MiB)])
        held = quota.reserve_manifest("library", "library/b", MANIFEST, 700,
                                      [(LAYER, 5 * MiB)], now=NOW)
        assert held.allowed and held.delta == 0 and held.token
        quota.settle([(held.token, True)], now=NOW)
        assert used() == 5 * MiB + 700
        # linked in b too: deleting it from a frees nothing
        assert recount.forget_manifest("library", "library/a", MANIFEST, now=NOW) == 0
        assert recount.forget_manifest("library", "library/b", MANIFEST, now=NOW) == 5 * MiB + 700
        assert used() == 0

    def test_a_blob_in_flight_is_not_held_twice_by_its_manifest(self, store):
        """Layers upload, then the manifest comes at once: settles may land in any order."""
        set_limit(hard=10 * MiB)
        layer = quota.reserve_blob("library", LAYER, 6 * MiB, now=NOW)
        manifest = quota.reserve_manifest("library", "library/a", MANIFEST, 1000,
                                          [(LAYER, 6 * MiB)], now=NOW)
        assert manifest.allowed and manifest.delta == 1000  # 6 MiB twice would not fit
        quota.settle([(manifest.token, True)], now=NOW)
        quota.settle([(layer.token, True)], now=NOW)
        assert (used(), reserved()) == (6 * MiB + 1000, 0)

    def test_a_chunked_upload_of_unknown_size_is_counted_by_its_manifest(self, store):
        """The layer passed without a hold (no length known): the manifest declares it."""
        set_limit(hard=10 * MiB)
        held = quota.reserve_manifest("library", "library/a", MANIFEST, 1000,
                                      [(LAYER, 12 * MiB)], now=NOW)
        assert not held.allowed and held.delta == 12 * MiB + 1000
        assert held.message == ("adding 12.0 MiB of storage resource, which when updated to "
                                "current usage of 0 B will exceed the configured upper limit "
                                "of 10.0 MiB.")
        assert (used(), reserved()) == (0, 0)

    def test_an_index_counts_its_own_bytes_and_its_child_manifests(self, store):
        set_limit()
        push_blob("library", LAYER, 5 * MiB)
        push_manifest("library", "library/a", MANIFEST, 700, [(LAYER, 5 * MiB)])
        index = digest("index")
        held = push_manifest("library", "library/a", index, 300, [(MANIFEST, 700)])
        assert held.delta == 300
        assert used() == 5 * MiB + 700 + 300
        # deleting the index leaves the child manifest (still its own artifact)
        assert recount.forget_manifest("library", "library/a", index, now=NOW) == 300


class TestEnforcement:
    def test_refusal_says_what_harbor_says(self, store):
        set_limit(hard=10 * MiB)
        push_blob("library", BASE, 8703181)
        held = quota.reserve_blob("library", LAYER, 2202010, now=NOW)
        assert not held.allowed and held.token == ""
        assert (held.delta, held.current, held.hard) == (2202010, 8703181, 10 * MiB)
        assert held.message == ("adding 2.1 MiB of storage resource, which when updated to "
                                "current usage of 8.3 MiB will exceed the configured upper "
                                "limit of 10.0 MiB.")
        assert (used(), reserved()) == (8703181, 0)
        assert quota.reserve_blob("library", LAYER, 10 * MiB - 8703181, now=NOW).allowed

    def test_held_bytes_count_against_the_limit(self, store):
        set_limit(hard=100)
        first = quota.reserve_blob("library", digest("a"), 60, now=NOW)
        second = quota.reserve_blob("library", digest("b"), 60, now=NOW)
        assert first.allowed and not second.allowed
        assert (second.current, second.delta) == (60, 60)
        quota.settle([(first.token, False)], now=NOW)
        assert quota.reserve_blob("library", digest("b"), 60, now=NOW).allowed

    def test_exactly_full_is_allowed(self, store):
        set_limit(hard=100)
        assert push_blob("library", digest("a"), 100).allowed
        assert not quota.reserve_blob("library", digest("b"), 1, now=NOW).allowed

    def test_unlimited_counts_but_never_refuses(self, store):
        set_limit(hard=-1)
        assert push_blob("library", LAYER, 2 ** 50).allowed
        assert used() == 2 ** 50

    def test_a_limit_lowered_below_usage_refuses_the_next_push(self, store):
        set_limit(hard=100 * MiB)
        push_blob("library", LAYER, 50 * MiB)
        set_limit(hard=10 * MiB)
        held = quota.reserve_blob("library", BASE, 1, now=NOW)
        assert not held.allowed and held.current == 50 * MiB
        assert held.message.startswith("adding 1 B of storage resource, which when updated to "
                                       "current usage of 50.0 MiB")

    def test_abandoned_holds_expire(self, store):
        set_limit(hard=100)
        quota.reserve_blob("library", digest("a"), 80, now=NOW, hold=10)
        assert quota.release_expired(now=NOW + 5) == 0
        assert reserved() == 80
        assert quota.release_expired(now=NOW + 10) == 1
        assert reserved() == 0
        assert quota.release_expired(now=NOW + 20) == 0

    def test_a_refusal_first_sweeps_expired_holds_of_its_project(self, store):
        set_limit(hard=100)
        dead = quota.reserve_blob("library", digest("a"), 80, now=NOW, hold=10)
        held = quota.reserve_blob("library", digest("b"), 80, now=NOW + 11)
        assert held.allowed
        assert reserved() == 80
        quota.settle([(dead.token, True)], now=NOW + 12)  # too late: it was released
        assert (used(), reserved()) == (0, 80)

    def test_settles_of_many_pushes_go_in_one_call(self, store):
        set_limit("library")
        set_limit("team")
        tokens = [quota.reserve_blob(p, digest(f"{p}{i}"), 10, now=NOW).token
                  for p in ("team", "library") for i in range(3)]
        quota.settle([(t, i % 3 != 2) for i, t in enumerate(tokens)] + [("nope", True)],
                     now=NOW)
        assert [(u.project, u.used, u.reserved) for u in limits.all_usage()] == [
            ("library", 20, 0), ("team", 20, 0)]

    def test_one_transaction_of_few_statements_per_request(self, store):
        """The request path's cost: one store call, a handful of statements."""
        set_limit(hard=100 * MiB)
        push_blob("library", BASE, MiB)
        statements: list[str] = []

        class Count(logging.Handler):
            def emit(self, record):
                statements.append(str(record.msg))

        logger = logging.getLogger("peewee")
        handler, level = Count(), logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        try:
            calls = {
                "new blob": lambda: quota.reserve_blob("library", LAYER, MiB, now=NOW),
                "blob present": lambda: quota.reserve_blob("library", BASE, MiB, now=NOW),
                "manifest": lambda: quota.reserve_manifest(
                    "library", "library/a", MANIFEST, 500, [(BASE, MiB), (CONFIG, 100)],
                    now=NOW),
            }
            counts = {}
            for name, call in calls.items():
                statements.clear()
                assert call().allowed
                counts[name] = len(statements)
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
        # present-check, conditional UPDATE, reservation INSERT (+ BEGIN where logged)
        assert counts["new blob"] <= 4 and counts["manifest"] <= 4
        assert counts["blob present"] <= 2


class TestDeletes:
    def test_delete_uncounts_only_blobs_no_remaining_manifest_references(self, store):
        set_limit()
        push_manifest("library", "library/a", MANIFEST, 700, [(CONFIG, 100), (BASE, 30 * MiB),
                                                               (LAYER, 5 * MiB)])
        push_manifest("library", "library/b", MANIFEST_B, 600, [(CONFIG_B, 90),
                                                                (BASE, 30 * MiB)])
        assert used() == 700 + 100 + 30 * MiB + 5 * MiB + 600 + 90
        freed = recount.forget_manifest("library", "library/a", MANIFEST, now=NOW)
        assert freed == 700 + 100 + 5 * MiB  # the base layer is still used by b
        assert used() == 600 + 90 + 30 * MiB
        assert recount.forget_manifest("library", "library/a", MANIFEST, now=NOW) == 0
        assert recount.forget_repository("library", "library/b", now=NOW) == 600 + 90 + 30 * MiB
        assert used() == 0

    def test_deleting_in_another_project_changes_nothing_here(self, store):
        set_limit("library")
        set_limit("team")
        push_manifest("library", "library/a", MANIFEST, 700, [(LAYER, 5)])
        push_manifest("team", "team/a", MANIFEST, 700, [(LAYER, 5)])
        assert recount.forget_manifest("team", "team/a", MANIFEST, now=NOW) == 705
        assert (used("library"), used("team")) == (705, 0)
        assert recount.forget_manifest("nobody", "nobody/a", MANIFEST, now=NOW) == 0

    def test_uploaded_but_unreferenced_blobs_stay_counted_as_in_harbor(self, store):
        set_limit()
        push_blob("library", LAYER, 5 * MiB)
        push_manifest("library", "library/a", MANIFEST, 700, [(CONFIG, 100)])
        recount.forget_manifest("library", "library/a", MANIFEST, now=NOW)
        assert used() == 5 * MiB  # until the registry's GC and a recalculation

    def test_remove_forgets_everything(self, store):
        set_limit()
        push_manifest("library", "library/a", MANIFEST, 700, [(LAYER, 5)])
        quota.reserve_blob("library", BASE, 5, now=NOW)
        assert limits.remove("library") is True
        assert limits.usage("library") is None
        set_limit()
        assert (used(), reserved()) == (0, 0)
        assert quota.reserve_blob("library", LAYER, 5, now=NOW).delta == 5


class TestWarnings:
    def test_crossing_warns_once_then_again_after_falling_below(self, store):
        set_limit(hard=1000)
        assert quota.settle([(quota.reserve_blob("library", digest("a"), 800, now=NOW).token,
                              True)], now=NOW) == []
        held = quota.reserve_manifest("library", "library/app", MANIFEST, 60,
                                      [(digest("a"), 800)], now=NOW)
        (warning,) = quota.settle([(held.token, True)], now=NOW)
        assert (warning.project, warning.repository, warning.digest, warning.used,
                warning.hard, warning.percent) == ("library", "library/app", MANIFEST, 860,
                                                   1000, 85)
        assert warning.message == "quota usage reach 85%: resource storage used 860 B of 1000 B"
        assert quota.settle([(quota.reserve_blob("library", digest("b"), 10, now=NOW).token,
                              True)], now=NOW) == []  # still above: no repeat
        # the manifest and the blob only it referenced go: 10 bytes left, below
        assert recount.forget_manifest("library", "library/app", MANIFEST, now=NOW) == 860
        assert used() == 10
        quota.settle([(quota.reserve_blob("library", digest("c"), 5, now=NOW).token, True)],
                     now=NOW)  # 15: below
        (again,) = quota.settle([(quota.reserve_blob("library", digest("d"), 835,
                                                     now=NOW).token, True)], now=NOW)
        assert again.used == 850 and again.digest == ""

    def test_every_push_warns_on_each_push_above_as_harbor(self, store):
        set_limit(hard=1000, warning_percent=50, warning_repeat="every_push")
        fired = [len(quota.settle([(quota.reserve_blob("library", digest(str(i)), 200,
                                                       now=NOW).token, True)], now=NOW))
                 for i in range(4)]
        assert fired == [0, 0, 1, 1]  # 200, 400 below 50%; 600 and 800 each warn

    def test_a_batch_that_crosses_warns_once(self, store):
        set_limit(hard=1000)
        tokens = [quota.reserve_blob("library", digest(str(i)), 300, now=NOW).token
                  for i in range(3)]
        warnings = quota.settle([(t, True) for t in tokens], now=NOW)
        assert [w.used for w in warnings] == [900]


class TestRebuild:
    def test_rebuild_counts_distinct_blobs_of_what_the_registry_holds(self, store):
        set_limit()
        push_blob("library", digest("stale"), 5 * MiB)  # counted before, gone from the registry
        started = recount.begin_recalc("library", now=NOW + 10)
        assert limits.usage("library").recalculating
        artifacts = [
            recount.Artifact("library/a", MANIFEST, 700, ((CONFIG, 100), (BASE, 30 * MiB))),
            recount.Artifact("library/b", MANIFEST_B, 600, ((CONFIG_B, 90), (BASE, 30 * MiB))),
            recount.Artifact("library/c", MANIFEST, 700, ((CONFIG, 100), (BASE, 30 * MiB))),
        ]
        assert recount.rebuild("library", artifacts, started_at=started, now=NOW + 20) == (
            700 + 100 + 30 * MiB + 600 + 90)
        row = limits.usage("library")
        assert (row.used, row.recalculating) == (700 + 100 + 30 * MiB + 600 + 90, False)
        # links were rebuilt too: deleting from a and c frees manifest and config
        recount.forget_manifest("library", "library/a", MANIFEST, now=NOW + 30)
        assert recount.forget_manifest("library", "library/c", MANIFEST, now=NOW + 30) == 800

    def test_what_was_pushed_during_the_walk_is_kept(self, store):
        set_limit()
        started = recount.begin_recalc("library", now=NOW)
        quota.settle([(quota.reserve_blob("library", LAYER, 5 * MiB, now=NOW + 1).token,
                       True)], now=NOW + 1)
        assert recount.rebuild("library", [], started_at=started, now=NOW + 2) == 5 * MiB

    def test_rebuild_of_a_project_without_quota_does_nothing(self, store):
        assert recount.begin_recalc("library", now=NOW) is None
        assert recount.rebuild("library", [], started_at=NOW, now=NOW) is None


class TestRulesSync:
    def test_rules_quotas_are_created_updated_and_removed(self, store):
        text = ("projects:\n  - name: library\n    quota: {storage: 10GiB}\n"
                "  - name: team\n    quota: {storage: 1GiB, warning: 90%}\n  - name: plain\n")
        assert sorted(limits.sync_rules(parse_rules(text, "r", {}), now=NOW)) == [
            "library", "team"]
        limits.configure("api-made", QuotaRule(5 * MiB), source=limits.API, now=NOW)
        text = "projects:\n  - name: library\n    quota: {storage: 20GiB}\n"
        assert limits.sync_rules(parse_rules(text, "r", {}), now=NOW) == []
        assert [(u.project, u.hard, u.source) for u in limits.all_usage()] == [
            ("api-made", 5 * MiB, "api"), ("library", 20 * 1024 ** 3, "rules")]


# --- races: several workers and sidecars pushing into one project at once ----------------------

RACE_LIMIT = 100
RACE_SIZE = 30  # three fit, a fourth does not


def _race(url: str | None, worker: int, pushes: int, start_at: float) -> list[str]:
    """Reserve and settle `pushes` distinct blobs; the tokens this worker was granted."""
    if url is not None:  # a fresh process: bind the models first
        bind(url)
    database.connect(reuse_if_open=True)
    try:
        while time.time() < start_at:
            time.sleep(0.001)
        granted = []
        for n in range(pushes):
            held = quota.reserve_blob("library", digest(f"w{worker}n{n}"), RACE_SIZE)
            if held.allowed:
                granted.append(held.token)
                quota.settle([(held.token, True)])
        return granted
    finally:
        database.close()


def _check_race(granted: list[str]) -> None:
    assert len(granted) == RACE_LIMIT // RACE_SIZE
    row = limits.usage("library")
    assert (row.used, row.reserved) == (len(granted) * RACE_SIZE, 0)
    assert QuotaReservation.select().count() == 0


def test_concurrent_pushes_from_threads_never_overshoot(store):
    set_limit(hard=RACE_LIMIT)
    start_at = time.time() + 0.5
    results: list[list[str]] = [[] for _ in range(6)]

    def run(i):
        results[i] = _race(None, i, 3, start_at)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    _check_race([token for tokens in results for token in tokens])


def test_concurrent_pushes_from_processes_never_overshoot(store):
    """As gunicorn workers, or sidecars sharing PostgreSQL: separate processes, one store."""
    set_limit(hard=RACE_LIMIT)
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 2.0
    with context.Pool(4) as pool:
        results = pool.starmap(_race, [(store, i, 3, start_at) for i in range(4)], chunksize=1)
    _check_race([token for tokens in results for token in tokens])


def _hold_only(url: str, worker: int, start_at: float) -> bool:
    bind(url)
    database.connect(reuse_if_open=True)
    try:
        while time.time() < start_at:
            time.sleep(0.001)
        return quota.reserve_blob("library", digest(f"h{worker}"), RACE_SIZE).allowed
    finally:
        database.close()


def test_two_pushes_that_each_fit_but_not_together_cannot_both_pass(store):
    set_limit(hard=50)  # one 30-byte push fits; two do not
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 2.0
    with context.Pool(2) as pool:
        results = pool.starmap(_hold_only, [(store, i, start_at) for i in range(2)], chunksize=1)
    assert sorted(results) == [False, True]
    assert (used(), reserved()) == (0, RACE_SIZE)


def _push_shared_layer(url: str, worker: int, start_at: float) -> int:
    """Parallel CI jobs pushing images on one base: the same layer, different manifests."""
    bind(url)
    database.connect(reuse_if_open=True)
    try:
        while time.time() < start_at:
            time.sleep(0.001)
        layer = quota.reserve_blob("library", BASE, 40)
        manifest = quota.reserve_manifest("library", f"library/app{worker}",
                                          digest(f"m{worker}"), 5, [(BASE, 40)])
        quota.settle([(layer.token, True)] if layer.token else [])
        quota.settle([(manifest.token, True)])
        return int(manifest.allowed)
    finally:
        database.close()


def test_a_layer_pushed_by_parallel_jobs_counts_once(store):
    set_limit(hard=100)  # 40 once plus four 5-byte manifests fit; 40 twice would not
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 2.0
    with context.Pool(4) as pool:
        results = pool.starmap(_push_shared_layer, [(store, i, start_at) for i in range(4)],
                               chunksize=1)
    assert results == [1, 1, 1, 1]
    assert (used(), reserved()) == (40 + 4 * 5, 0)
    assert recount.forget_repository("library", "library/app0", now=NOW) == 5
