"""Store records -> what the web UI's templates show, with every secret already removed.

Pure. Targets go through `store.reports.public_target` and error texts through its `scrub`,
the same redaction as the status page and the CLI: auth headers and signing secrets never reach
a page, and addresses lose their userinfo and query values.
"""

from __future__ import annotations

from typing import Any

from sidecar.store.models import FAILED
from sidecar.store.models import PENDING
from sidecar.store.policies import RULES
from sidecar.store.reports import public_target
from sidecar.store.reports import scrub
from sidecar.store.reports import secrets_of
from sidecar.store.webhooks import DeliveryView
from sidecar.store.webhooks import PolicyView


def policy_card(policy: PolicyView, triggers: dict[str, Any] | None) -> dict[str, Any]:
    """A policy with, per subscribed event type, its last trigger and how it went."""
    by_type = {t["event_type"]: t for t in (triggers or {}).get("triggers", [])}
    rows = []
    for event_type in policy.event_types:
        found = by_type.get(event_type) or {}
        rows.append({
            "event_type": event_type,
            "last_trigger_time": found.get("last_trigger_time"),
            "status": found.get("status"),
            "status_code": found.get("status_code"),
        })
    return {
        "id": policy.id,
        "name": policy.name,
        "description": policy.description,
        "enabled": policy.enabled,
        "event_types": list(policy.event_types),
        "targets": [public_target(t) for t in policy.targets],
        "read_only": policy.source == RULES,
        "creator": policy.creator,
        "created_at": policy.created_at,
        "updated_at": policy.updated_at,
        "triggers": rows,
        "options": policy.options,
    }


def delivery_row(delivery: DeliveryView) -> dict[str, Any]:
    """One delivery with its attempts; errors scrubbed of the secrets its target carries."""
    secrets = secrets_of(delivery.target)
    return {
        "id": delivery.id,
        "event_type": delivery.event_type,
        "target": public_target(delivery.target),
        "status": delivery.status,
        "attempts": delivery.attempts,
        "max_attempts": delivery.max_attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": scrub(delivery.last_error or "", secrets),
        "created_at": delivery.created_at,
        "finished_at": delivery.finished_at,
        "next_attempt_at": delivery.next_attempt_at if delivery.status == PENDING else None,
        "history": [
            {"number": a.number, "started_at": a.started_at, "duration_ms": a.duration_ms,
             "status_code": a.status_code, "error": scrub(a.error or "", secrets)}
            for a in delivery.attempt_rows
        ],
        "replayable": delivery.status == FAILED,
    }
