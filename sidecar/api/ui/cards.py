"""Store views -> what the web UI's templates show, with every secret already removed.

Pure. Targets and error texts go through `sidecar.redact`, as on the status page and in the
CLI (a delivery row is the status page's, plus whether it can be replayed): auth headers and
signing secrets never reach a page, and addresses lose their userinfo and query values.
"""

from __future__ import annotations

from typing import Any

from sidecar.api.ops.report import delivery_json
from sidecar.redact import public_target
from sidecar.store.delivery_history import PolicyTriggers
from sidecar.store.models import FAILED
from sidecar.store.models import SKIPPED
from sidecar.store.policies import RULES
from sidecar.store.views import DeliveryView


def policy_card(item: PolicyTriggers) -> dict[str, Any]:
    """A policy with, per subscribed event type, its last trigger and how it went."""
    policy = item.policy
    by_type = {t.event_type: t for t in item.triggers}
    rows = []
    for event_type in policy.event_types:
        found = by_type.get(event_type)
        rows.append({
            "event_type": event_type,
            "last_trigger_time": (int(found.created_at) if found and found.created_at is not None
                                  else None),
            "status": found.status if found else None,
            "status_code": found.status_code if found else None,
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
    return {**delivery_json(delivery, with_history=True),
            "replayable": delivery.status in (FAILED, SKIPPED)}
