"""Per-policy filters (repository/tag globs, ignored operators) and pull de-duplication."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from sidecar.events.model import DELETE_ARTIFACT
from sidecar.events.model import PULL_ARTIFACT
from sidecar.events.model import PUSH_ARTIFACT
from sidecar.events.model import ArtifactEvent
from sidecar.record.recorder import Recorder
from sidecar.record.recorder import RecorderSettings
from sidecar.record.recorder import build_records
from sidecar.rules.load import RulesError
from sidecar.rules.load import parse_rules
from sidecar.rules.match import accepts
from sidecar.rules.match import glob_match
from sidecar.rules.policy import Filters
from sidecar.rules.policy import parse_policy
from sidecar.store import db as store_db
from sidecar.store import dedup
from sidecar.store import policies as policy_store
from sidecar.store.executor import Executor
from sidecar.store.models import Delivery
from sidecar.store.models import Event
from sidecar.store.models import database
from sidecar.store.policies import ProjectPolicies
from sidecar.store.policies import StoredPolicy

HOOK = {"type": "http", "address": "http://a.example/hook"}
DIGEST = "sha256:" + "a" * 64


def event(kind=PUSH_ARTIFACT, repository="proj/app", tags=("v1",), operator="alice",
          at=1_700_000_000, digest=DIGEST) -> ArtifactEvent:
    return ArtifactEvent(type=kind, repository=repository, digest=digest, operator=operator,
                         occur_at=at, tags=tuple(tags))


NO_FILTERS = Filters()


def policy(pid=1, filters=NO_FILTERS, dedup_seconds=0,
           types=(PUSH_ARTIFACT, PULL_ARTIFACT, DELETE_ARTIFACT)) -> StoredPolicy:
    return StoredPolicy(id=pid, project="proj", name=f"p{pid}", enabled=True,
                        event_types=tuple(types), targets=(HOOK,), filters=filters,
                        pull_dedup_seconds=dedup_seconds)


def delivered(records) -> list[bool]:
    return [bool(r.deliveries) for r in records]


@pytest.mark.parametrize("pattern, value, expected", [
    ("app", "app", True),
    ("app", "team/app", False),
    ("*", "team/app", False),          # * stays within a segment
    ("**", "team/app", True),
    ("team/*", "team/app", True),
    ("team/*", "team/sub/app", False),
    ("team/**", "team/sub/app", True),
    ("**/app", "app", True),           # **/ also matches no segment at all
    ("**/app", "a/b/app", True),
    ("{web,api}-*", "api-gateway", True),
    ("{web,api}-*", "db-main", False),
    ("v?.*", "v1.25", True),
    ("v[0-9]*", "v1", True),
    ("v[!0-9]*", "v1", False),
    ("release-1.2", "release-1x2", False),  # dots are literal
    ("robot$scanner*", "robot$scanner-trivy", True),
    ("sha256:*", DIGEST, True),
])
def test_glob(pattern, value, expected):
    assert glob_match(pattern, value) is expected


class TestAccepts:
    def check(self, filters: Filters, **event_fields) -> bool:
        fields = {"repository": "app", "references": ("v1",), "operator": "alice",
                  **event_fields}
        return accepts(filters, **fields)

    def test_no_filters_take_everything(self):
        assert self.check(Filters())

    def test_repository_globs_are_inside_the_project(self):
        filters = Filters(repositories=("team/**", "app"))
        assert self.check(filters, repository="team/a/b")
        assert self.check(filters, repository="app")
        assert not self.check(filters, repository="other")

    def test_tag_filter_matches_any_tag_and_untagged_by_digest(self):
        filters = Filters(tags=("v*",))
        assert self.check(filters, references=("latest", "v2"))
        assert not self.check(filters, references=("latest",))
        assert not self.check(filters, references=(DIGEST,))
        assert self.check(Filters(tags=("v*", "sha256:*")), references=(DIGEST,))

    def test_ignored_operators_win(self):
        filters = Filters(repositories=("**",), ignore_operators=("robot$scanner*", ""))
        assert not self.check(filters, operator="robot$scanner-trivy")
        assert not self.check(filters, operator="")  # "" is the anonymous user
        assert self.check(filters, operator="alice")


class TestValidation:
    def parse(self, **extra):
        return parse_policy({"name": "p", "event_types": ["PUSH_ARTIFACT"],
                             "targets": [HOOK], **extra}, allow_unknown=True)

    def test_filters_and_window_are_kept_and_stored_as_options(self):
        policy_, problems = self.parse(filters={"repositories": ["team/**"], "tags": "v*",
                                                "ignore_operators": ["robot$x"]},
                                       pull_dedup_seconds=30)
        assert problems == []
        assert policy_.filters == Filters(("team/**",), ("v*",), ("robot$x",))
        assert policy_.options() == {"filters": {"repositories": ["team/**"], "tags": ["v*"],
                                                 "ignore_operators": ["robot$x"]},
                                     "pull_dedup_seconds": 30}
        assert self.parse()[0].options() == {}  # a Harbor policy stays a Harbor policy

    @pytest.mark.parametrize("extra, message", [
        ({"filters": {"repository": ["x"]}},
         "unknown key 'repository' in filters (expected repositories, tags, ignore_operators)"),
        ({"filters": ["x"]},
         "filters must be a mapping with repositories, tags and/or ignore_operators"),
        ({"filters": {"tags": [1]}}, "filters.tags must be a list of patterns"),
        ({"filters": {"tags": [""]}}, "filters.tags: empty pattern"),
        ({"filters": {"repositories": ["{a,b"]}},
         "filters.repositories: unbalanced brackets in pattern '{a,b'"),
        ({"filters": {"repositories": ["}app{"]}},
         "filters.repositories: unbalanced brackets in pattern '}app{'"),
        ({"filters": {"tags": ["v[9-0]*"]}},
         "filters.tags: bad character class in pattern 'v[9-0]*': bad character range 9-0"),
        ({"filters": {"tags": ["v1\\"]}},
         "filters.tags: pattern 'v1\\\\' ends with an unfinished escape '\\'"),
        ({"pull_dedup_seconds": -1},
         "pull_dedup_seconds must be a whole number of seconds from 0 to 86400"),
        ({"pull_dedup_seconds": "10"},
         "pull_dedup_seconds must be a whole number of seconds from 0 to 86400"),
    ])
    def test_bad_values_are_refused_even_by_the_api(self, extra, message):
        policy_, problems = self.parse(**extra)
        assert policy_ is None
        assert [p.message for p in problems] == [message]

    def test_escapes_and_classes_that_read_are_kept(self):
        policy_, problems = self.parse(filters={"tags": ["v\\{1\\}", "[a-z]*", "a\\\\"]})
        assert problems == []
        assert glob_match(policy_.filters.tags[0], "v{1}")

    def test_rules_file_names_the_line_of_a_bad_pattern(self):
        text = ("projects:\n- name: proj\n  webhooks:\n  - name: p\n"
                "    event_types: [PUSH_ARTIFACT]\n    targets: [{address: 'http://x/h'}]\n"
                "    filters:\n      tags:\n      - v*\n      - '[z-a]'\n")
        with pytest.raises(RulesError) as refused:
            parse_rules(text, "rules.yaml", {})
        assert refused.value.problems == [
            "rules.yaml:10: filters.tags: bad character class in pattern '[z-a]': "
            "bad character range z-a"]

    def test_rules_file_names_the_line_of_a_bad_filter(self):
        text = ("projects:\n- name: proj\n  webhooks:\n  - name: p\n"
                "    event_types: [PUSH_ARTIFACT]\n    targets: [{address: 'http://x/h'}]\n"
                "    filters:\n      repositorys: [app]\n")
        with pytest.raises(RulesError) as refused:
            parse_rules(text, "rules.yaml", {})
        assert refused.value.problems == [
            "rules.yaml:8: unknown key 'repositorys' in filters (expected repositories, tags, "
            "ignore_operators)"]


class TestBuildRecords:
    def test_filters_decide_per_policy(self):
        scanner = event(PULL_ARTIFACT, operator="robot$scanner")
        other_repo = event(repository="proj/tools/lint")
        rc_tag = event(tags=("1.0-rc1",))
        projects = {"proj": ProjectPolicies("proj", False, (
            policy(1, Filters(repositories=("app",), tags=("[0-9]*", "v*"),
                              ignore_operators=("robot$scanner",))),
            policy(2),
        ))}
        records = build_records([event(), scanner, other_repo, rc_tag], projects, {}, "h", True)
        assert [[d.policy_id for d in r.deliveries] for r in records] == [
            [1, 2], [2], [2], [1, 2]]

    def test_pull_window_gives_one_delivery_per_artifact_and_operator(self):
        pulls = [event(PULL_ARTIFACT, at=1_700_000_000 + i) for i in range(3)]
        pulls.append(event(PULL_ARTIFACT, operator="bob"))
        pulls.append(event(PULL_ARTIFACT, digest="sha256:" + "b" * 64))
        project = {"proj": ProjectPolicies("proj", False, (policy(1, dedup_seconds=60),
                                                           policy(2)))}
        keys = {dedup.pull_key(1, f"proj/app@{d}", who)
                for d, who in ((DIGEST, "alice"), (DIGEST, "bob"), ("sha256:" + "b" * 64,
                                                                    "alice"))}
        records = build_records(pulls, project, {}, "h", True, admitted=keys)
        assert [[d.policy_id for d in r.deliveries] for r in records] == [
            [1, 2], [2], [2], [1, 2], [1, 2]]
        assert len(records) == 5  # every pull is still recorded as an event

    def test_generated_request_id_when_the_client_sent_none(self):
        [record] = build_records([event()], {}, {}, "h", True)
        assert len(record.request_id) == 36


# -- the window in the store, shared by workers -------------------------------------------------



@pytest.fixture
def store_url(empty_store_url):
    url = empty_store_url
    db = store_db.bind(url)
    _add_policy(window=60)
    db.close()
    yield url


def _add_policy(window: int) -> None:
    text = ("projects:\n- name: proj\n  webhooks:\n  - name: pulls\n"
            "    event_types: [PULL_ARTIFACT]\n    targets: [{address: 'http://x/h'}]\n"
            f"    pull_dedup_seconds: {window}\n"
            "    filters: {ignore_operators: ['robot$scanner']}\n")
    policy_store.sync_rules(parse_rules(text, "rules.yaml", {}))


def _record(url: str, events: list[ArtifactEvent], start_at: float = 0.0) -> int:
    db = store_db.bind(url)
    while time.time() < start_at:
        time.sleep(0.001)
    # every event a row, delivered or not, to show which of them got the delivery
    recorder = Recorder(Executor(), RecorderSettings(keep_unmatched=True))
    recorder.submit(events)
    recorder.stop()  # flushes synchronously
    db.close()
    return recorder.recorded


def _deliveries(url: str) -> list[int]:
    db = store_db.bind(url)
    with db.connection_context():
        return [Delivery.select().where(Delivery.event == e).count()
                for e in Event.select().order_by(Event.occur_at, Event.id)]


def test_rules_file_window_and_filters_reach_the_recorder(store_url):
    now = int(time.time())  # recent: windows older than a day are swept away
    pulls = [event(PULL_ARTIFACT, at=now - 100), event(PULL_ARTIFACT, at=now - 41),
             event(PULL_ARTIFACT, at=now - 40), event(PULL_ARTIFACT, at=now - 39),
             event(PULL_ARTIFACT, at=now - 38, operator="robot$scanner")]
    _record(store_url, pulls[:2])
    _record(store_url, pulls[2:])  # a later batch: the window is in the store, not the batch
    assert _deliveries(store_url) == [1, 0, 1, 0, 0]


def test_racing_workers_send_one_delivery_per_window(store_url):
    """Three processes (as three gunicorn workers) record the same pull at the same moment."""
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 1.5  # spawned interpreters need a moment to import
    pull = [event(PULL_ARTIFACT, at=int(time.time()))]
    with context.Pool(3) as pool:
        assert pool.starmap(_record, [(store_url, pull, start_at)] * 3, chunksize=1) == [1] * 3
    assert sorted(_deliveries(store_url)) == [0, 0, 1]


def test_threads_claiming_one_window_agree(store_url):
    db = store_db.bind(store_url)
    won: list[set[str]] = []
    barrier = threading.Barrier(4)

    def claim():
        barrier.wait()
        with database.connection_context(), database.atomic():
            won.append(dedup.admit({"k": (100.0, 60)}))

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(w) for w in won) == [0, 0, 0, 1]
    with db.connection_context():
        assert dedup.admit({"k": (159.0, 60)}) == set()
        assert dedup.admit({"k": (160.0, 60)}) == {"k"}  # the window reopens after 60 s
        assert dedup.forget_before(161.0) == 1
    db.close()


def test_options_survive_the_store(store_url):
    db = store_db.bind(store_url)
    with db.connection_context():
        [stored] = policy_store.policies_for(["proj"])["proj"].policies
    db.close()
    assert stored.pull_dedup_seconds == 60
    assert stored.filters == Filters(ignore_operators=("robot$scanner",))
