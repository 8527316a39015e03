"""Push and pull times per artifact, from the sidecar's events, kept as Harbor keeps them.

Harbor: `src/pkg/retention/dep/client.go` `GetCandidates` (PushedTime = max of the artifact's
and its tags' push times, PulledTime likewise), `src/controller/tag/controller.go` `Ensure` (a
tag's push time is set when it is created or moved, not when the same manifest is re-pushed),
`src/controller/artifact/controller.go` (an artifact's push time is its row's creation).
"""

from __future__ import annotations

from sidecar.events.model import DELETE_ARTIFACT
from sidecar.events.model import PULL_ARTIFACT
from sidecar.events.model import PUSH_ARTIFACT
from sidecar.events.model import ArtifactEvent
from sidecar.retain.activity import Activity
from sidecar.retain.activity import fold
from sidecar.retain.activity import keys_of
from sidecar.retain.activity import times

REPO = "library/app"
A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def ev(type_: str, digest: str, at: int, *tags: str, repository: str = REPO) -> ArtifactEvent:
    return ArtifactEvent(type=type_, repository=repository, digest=digest, operator="u",
                         occur_at=at, tags=tags)


def run(*events: ArtifactEvent) -> Activity:
    return fold(events, Activity({}, {}))


def candidate_times(activity: Activity, digest: str, *tags: str) -> tuple:
    artifacts = {k: v for k, v in activity.artifacts.items() if v is not None}
    tag_rows = {k: v for k, v in activity.tags.items() if v is not None}
    return times(REPO, digest, tags, artifacts, tag_rows)


def test_first_push_sets_the_time_and_a_repush_of_the_same_manifest_does_not():
    activity = run(ev(PUSH_ARTIFACT, A, 100, "v1"), ev(PUSH_ARTIFACT, A, 200, "v1"))
    assert candidate_times(activity, A, "v1") == (100, None)


def test_a_new_tag_on_an_old_artifact_moves_its_pushed_time():
    activity = run(ev(PUSH_ARTIFACT, A, 100, "v1"), ev(PUSH_ARTIFACT, A, 300, "stable"))
    assert candidate_times(activity, A, "v1", "stable") == (300, None)
    # a tag the registry no longer shows on this digest does not count
    assert candidate_times(activity, A, "v1") == (100, None)


def test_a_tag_moved_away_and_back_counts_from_its_return():
    activity = run(ev(PUSH_ARTIFACT, A, 100, "latest"), ev(PUSH_ARTIFACT, B, 200, "latest"),
                   ev(PUSH_ARTIFACT, A, 300, "latest"))
    assert candidate_times(activity, A, "latest") == (300, None)
    assert candidate_times(activity, B) == (200, None)


def test_the_last_pull_wins_and_an_artifact_first_seen_pulled_has_no_push_time():
    activity = run(ev(PULL_ARTIFACT, A, 500, "v1"), ev(PULL_ARTIFACT, A, 400))
    assert candidate_times(activity, A, "v1") == (None, 500)


def test_a_delete_forgets_the_artifact_and_its_tags_so_a_repush_starts_afresh():
    activity = run(ev(PUSH_ARTIFACT, A, 100, "v1"), ev(PULL_ARTIFACT, A, 150, "v1"),
                   ev(DELETE_ARTIFACT, A, 200, "v1"))
    assert activity.artifacts[(REPO, A)] is None and activity.tags[(REPO, "v1")] is None
    activity = fold([ev(PUSH_ARTIFACT, A, 300, "v1")], activity)
    assert candidate_times(activity, A, "v1") == (300, None)


def test_repositories_are_kept_apart_and_events_without_a_digest_are_skipped():
    activity = run(ev(PUSH_ARTIFACT, A, 100, "v1", repository="library/other"),
                   ev(PUSH_ARTIFACT, "", 120, "v1"))
    assert candidate_times(activity, A, "v1") == (None, None)


def test_keys_of_names_the_rows_to_load():
    events = [ev(PUSH_ARTIFACT, A, 1, "v1", "v2"), ev(DELETE_ARTIFACT, B, 2)]
    assert keys_of(events) == ({(REPO, A), (REPO, B)}, {(REPO, "v1"), (REPO, "v2")},
                               {(REPO, B)})
