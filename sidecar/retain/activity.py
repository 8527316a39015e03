"""Push and pull times per artifact, kept as Harbor keeps them, from the events the sidecar saw.

Retention ranks artifacts by Harbor's `PushedTime` = max(artifact push time, push time of each
of its tags) and `PulledTime` (src/pkg/retention/dep/client.go `GetCandidates`). Harbor sets an
artifact's push time when its row is created (first push of that digest in the repository), a
tag's when the tag is created or moved to another artifact; re-pushing the same manifest under
the same tag refreshes neither (src/controller/tag/controller.go `Ensure`,
src/controller/artifact/controller.go). A pull refreshes the artifact's pull time. Deleting an
artifact drops it with its tags, so a later push starts afresh.

The event history is swept after `retention_days` and cannot answer "pulled within 30 days" or
"the 10 latest pushed" for long; this fold keeps the two small tables that can. Pure: the store
hands in the rows a batch touches and writes back what comes out.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import replace

from sidecar.events.model import DELETE_ARTIFACT
from sidecar.events.model import PULL_ARTIFACT
from sidecar.events.model import PUSH_ARTIFACT
from sidecar.events.model import ArtifactEvent


@dataclass(frozen=True)
class ArtifactTimes:
    """One row per (repository, digest): first push and last pull the sidecar saw (None: none;
    an artifact first seen pulled was pushed before the sidecar watched)."""

    repository: str
    digest: str
    pushed_at: int | None
    pulled_at: int | None = None


@dataclass(frozen=True)
class TagTimes:
    """One row per (repository, tag): the digest it points at and when it came to point there."""

    repository: str
    tag: str
    digest: str
    pushed_at: int


@dataclass
class Activity:
    """The rows a batch touched, keyed as the tables are; None marks a row to delete."""

    artifacts: dict[tuple[str, str], ArtifactTimes | None]
    tags: dict[tuple[str, str], TagTimes | None]


def fold(events: Iterable[ArtifactEvent], activity: Activity) -> Activity:
    """Apply events in order to the rows they touch (load them first: `keys_of`)."""
    artifacts, tags = dict(activity.artifacts), dict(activity.tags)
    for event in events:
        if not event.digest or not event.repository:
            continue
        key = (event.repository, event.digest)
        if event.type == PUSH_ARTIFACT:
            if artifacts.get(key) is None:
                artifacts[key] = ArtifactTimes(event.repository, event.digest, event.occur_at)
            for tag in event.tags:
                row = tags.get((event.repository, tag))
                if row is None or row.digest != event.digest:  # created or moved
                    tags[(event.repository, tag)] = TagTimes(event.repository, tag,
                                                             event.digest, event.occur_at)
        elif event.type == PULL_ARTIFACT:
            row = artifacts.get(key)
            if row is None:
                row = ArtifactTimes(event.repository, event.digest, pushed_at=None)
            if row.pulled_at is None or event.occur_at > row.pulled_at:
                row = replace(row, pulled_at=event.occur_at)
            artifacts[key] = row
        elif event.type == DELETE_ARTIFACT:
            artifacts[key] = None
            for tag_key, row in tags.items():
                if row is not None and tag_key[0] == event.repository and \
                        row.digest == event.digest:
                    tags[tag_key] = None
            for tag in event.tags:
                tags[(event.repository, tag)] = None
    return Activity(artifacts, tags)


def keys_of(events: Iterable[ArtifactEvent]) -> tuple[set[tuple[str, str]], set[tuple[str, str]],
                                                       set[tuple[str, str]]]:
    """What to load before `fold`: artifact keys, tag keys, and (repository, digest) pairs whose
    tag rows a delete removes (the store loads every tag row pointing at those digests)."""
    artifacts, tags, deleted = set(), set(), set()
    for event in events:
        if not event.digest or not event.repository:
            continue
        artifacts.add((event.repository, event.digest))
        tags.update((event.repository, tag) for tag in event.tags)
        if event.type == DELETE_ARTIFACT:
            deleted.add((event.repository, event.digest))
    return artifacts, tags, deleted


def times(repository: str, digest: str, current_tags: Iterable[str],
          artifacts: Mapping[tuple[str, str], ArtifactTimes],
          tags: Mapping[tuple[str, str], TagTimes]) -> tuple[int | None, int | None]:
    """(pushed_at, pulled_at) of a candidate as Harbor computes them, or None where the sidecar
    saw nothing. Only tags the registry still shows on this digest count."""
    pushes = []
    row = artifacts.get((repository, digest))
    if row is not None and row.pushed_at is not None:
        pushes.append(row.pushed_at)
    for tag in current_tags:
        tag_row = tags.get((repository, tag))
        if tag_row is not None and tag_row.digest == digest:
            pushes.append(tag_row.pushed_at)
    return (max(pushes) if pushes else None), (row.pulled_at if row is not None else None)
