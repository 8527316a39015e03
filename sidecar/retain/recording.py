"""Fold the artifact events the recorder writes into the push/pull activity tables.

A recorder trigger (`Recorder.add_trigger`): it runs inside the transaction that records a
batch of PUSH/PULL/DELETE_ARTIFACT events, so the times retention ranks by are kept exactly
when the events are, whoever produced them (the proxy, a retention run's own deletions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sidecar.events.model import ARTIFACT_EVENTS
from sidecar.events.model import PULL_ARTIFACT
from sidecar.events.model import PUSH_ARTIFACT
from sidecar.events.model import ArtifactEvent
from sidecar.retain.activity import Activity
from sidecar.retain.activity import ArtifactTimes
from sidecar.retain.activity import TagTimes
from sidecar.retain.activity import fold
from sidecar.retain.activity import keys_of
from sidecar.store import tag_retention as store

#: the event types the trigger reacts to
EVENT_TYPES = ARTIFACT_EVENTS
#: the types the trigger may see late (record.late), gathered per `gathered_by`: only an
#: artifact's last pull time is kept, so the pulls between two writes need no row of their own
LATE_TYPES = frozenset({PULL_ARTIFACT})
#: how long pull times may wait in memory (Harbor's ARTIFACT_PULL_ASYNC_FLUSH_DURATION)
LATE_SECONDS = 10.0


def gathered_by(event: ArtifactEvent) -> tuple[str, str]:
    """The artifact a pull's time belongs to."""
    return event.repository, event.digest


def record_activity(events: Sequence[Any]) -> int:
    """Update activity from a batch; returns 0 (it queues no job)."""
    relevant = [e for e in events if isinstance(e, ArtifactEvent)
                and e.type in ARTIFACT_EVENTS and e.repository and e.digest]
    if not relevant:
        return 0
    artifact_keys, _, deleted = keys_of(relevant)
    # a pull never changes a tag's row: only pushes' tags are read
    tag_keys = {(e.repository, tag) for e in relevant if e.type == PUSH_ARTIFACT
                for tag in e.tags}
    artifact_rows, tag_rows = store.load_activity(artifact_keys, tag_keys, deleted)
    before = Activity(
        artifacts={key: ArtifactTimes(key[0], key[1], pushed, pulled)
                   for key, (pushed, pulled) in artifact_rows.items()},
        tags={key: TagTimes(key[0], key[1], digest, pushed)
              for key, (digest, pushed) in tag_rows.items()})
    after = fold(relevant, before)
    store.save_activity(
        {k: v for k, v in after.artifacts.items() if v != before.artifacts.get(k, ...)},
        {k: v for k, v in after.tags.items() if v != before.tags.get(k, ...)})
    return 0
