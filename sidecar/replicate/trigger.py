"""Event-based replication: pushes and deletes that start executions, as Harbor's handler.

The recorder calls `event_replications` inside the transaction that records a batch of events,
so a push is recorded with the executions it starts or not at all, and nothing here runs on
the proxy's request path. Each enabled `event_based` policy whose filters select the artifact
starts its own execution (trigger EVENT) carrying just that artifact, with the tags the tag
filters keep (an untagged push, an index's child, by its digest); a DELETE_ARTIFACT does so
only for policies with `replicate_deletion`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sidecar.events.model import DELETE_ARTIFACT
from sidecar.events.model import PUSH_ARTIFACT
from sidecar.events.replication import TRIGGER_EVENT
from sidecar.store import replication as replication_store
from sidecar.store import replication_runs as runs


def event_replications(events: Sequence[Any]) -> int:
    """Start the executions a batch of events asks for; returns how many were started."""
    relevant = [e for e in events if e.type in (PUSH_ARTIFACT, DELETE_ARTIFACT)
                and e.repository and e.digest]
    if not relevant:
        return 0
    policies = replication_store.event_policies()
    started = 0
    for event in relevant:
        deleted = event.type == DELETE_ARTIFACT
        for policy in policies:
            if deleted and not policy.replicate_deletion:
                continue
            rule = policy.rule
            if not rule.selects_repository(event.repository):
                continue
            tags = rule.selected_tags(event.tags)
            if tags is None:
                continue
            resource = {"repository": event.repository, "tags": list(tags),
                        "digest": event.digest, "deleted": deleted}
            runs.start_execution(policy, TRIGGER_EVENT, operator=event.operator,
                                 host=getattr(event, "host", ""), resource=resource)
            started += 1
    return started
