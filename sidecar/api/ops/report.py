"""The store's status views -> the JSON operators read: /sidecar/status, its page, the CLI.

Pure. Every target goes through `redact.public_target` and every error text through
`redact.scrub` with the secrets of its target: what one view hides, all hide.
"""

from __future__ import annotations

from typing import Any

from sidecar.events.quota import display_size
from sidecar.redact import public_target
from sidecar.redact import scrub
from sidecar.redact import secrets_of
from sidecar.store import replication_runs
from sidecar.store import retention_runs
from sidecar.store import target_health
from sidecar.store.delivery_history import PolicyTriggers
from sidecar.store.delivery_history import Replayed
from sidecar.store.models import PENDING
from sidecar.store.quota_limits import Usage
from sidecar.store.quota_limits import all_usage
from sidecar.store.scans import status_section as scans_status
from sidecar.store.status_report import EndpointHealth
from sidecar.store.status_report import QueueNumbers
from sidecar.store.status_report import StatusReport
from sidecar.store.views import DeliveryView

#: Attempts of one delivery the summary shows (the newest); `attempts` counts them all.
HISTORY_LIMIT = 5
#: An error text longer than this is cut in the summary (a response body can be long).
ERROR_LIMIT = 500
#: Projects with a quota the summary lists (fullest first); `quota_states` counts them all.
QUOTA_LIMIT = 20


def _cut(text: str) -> str:
    return text if len(text) <= ERROR_LIMIT else text[:ERROR_LIMIT - 1] + "…"


def delivery_json(view: DeliveryView, with_history: bool = False) -> dict[str, Any]:
    secrets = secrets_of([view.target])
    out: dict[str, Any] = {
        "id": view.id,
        "uid": view.uid,
        "event_type": view.event_type,
        "project": view.project,
        "policy": view.policy_name,
        "target": public_target(view.target),
        "status": view.status,
        "attempts": view.attempts,
        "max_attempts": view.max_attempts,
        "last_status_code": view.last_status_code,
        "last_error": _cut(scrub(view.last_error, secrets)),
        "created_at": view.created_at,
        "updated_at": view.updated_at,
        "finished_at": view.finished_at,
        "next_attempt_at": view.next_attempt_at if view.status == PENDING else None,
    }
    if with_history:
        out["history"] = [
            {"number": a.number, "started_at": a.started_at, "duration_ms": a.duration_ms,
             "status_code": a.status_code, "error": _cut(scrub(a.error, secrets))}
            for a in view.attempt_rows[-HISTORY_LIMIT:]
        ]
    return out


def endpoint_json(entry: EndpointHealth) -> dict[str, Any]:
    return {
        "type": entry.type, "address": entry.address, "policies": list(entry.policies),
        "policy_count": entry.policy_count,
        "delivered": entry.delivered, "failed": entry.failed, "retrying": entry.retrying,
        "pending": entry.pending, "skipped": entry.skipped, "last_status": entry.last_status,
        "last_status_code": entry.last_status_code,
        "last_error": _cut(scrub(entry.last_error, secrets_of(entry.targets))),
        "last_attempt_at": entry.last_attempt_at, "last_failure_at": entry.last_failure_at,
        "last_success_at": entry.last_success_at, "state": entry.state,
    }


def policy_triggers_json(item: PolicyTriggers) -> dict[str, Any]:
    policy = item.policy
    triggers = [
        {"event_type": t.event_type,
         "last_trigger_time": int(t.created_at) if t.created_at is not None else None,
         "status": t.status, "status_code": t.status_code, "delivery_id": t.delivery_id}
        for t in item.triggers
    ]
    return {
        "id": policy.id,
        "project": policy.project,
        "name": policy.name,
        "source": policy.source,
        "enabled": policy.enabled,
        "event_types": list(policy.event_types),
        "targets": [public_target(t) for t in policy.targets],
        "last_trigger": {t["event_type"]: t["last_trigger_time"] for t in triggers
                         if t["last_trigger_time"] is not None},
        "triggers": triggers,
    }


def queue_json(numbers: QueueNumbers) -> dict[str, Any]:
    return {"depth": numbers.depth, "due_now": numbers.due_now}


def status_json(report: StatusReport) -> dict[str, Any]:
    """Everything /sidecar/status reports from the store: a summary whose size does not grow
    with the number of policies or endpoints (each list is cut, its total beside it)."""
    query = report.policy_query
    counts = report.policy_counts
    return {
        "generated_at": report.generated_at,
        "deliveries": dict(report.queue.by_status),
        "queue": queue_json(report.queue),
        "attempts": report.attempts,
        "endpoints": [endpoint_json(e) for e in report.endpoints],
        "endpoints_total": sum(report.endpoint_states.values()),
        "endpoint_states": dict(report.endpoint_states),
        "recent_failures": [delivery_json(d, True) for d in report.recent_failures],
        "retrying": [delivery_json(d, True) for d in report.retrying],
        "recent": [delivery_json(d, True) for d in report.recent],
        "policy_counts": {"projects": counts.projects, "policies": counts.policies,
                          "enabled": counts.enabled},
        "policies": [policy_triggers_json(p) for p in report.policies],
        "policies_page": {"project": query.project or None, "policy": query.policy or None,
                          "page": query.page.page, "page_size": query.page.page_size,
                          "total": report.policies_total},
    }


def quotas_json(usages: list[Usage]) -> list[dict[str, Any]]:
    """Projects with a quota, fullest first, cut at QUOTA_LIMIT (`len(usages)` is the total)."""
    shown = sorted((quota_json(u) for u in usages),
                   key=lambda q: (-(q["percent"] or 0), q["project"]))
    return shown[:QUOTA_LIMIT]


def quota_json(usage: Usage) -> dict[str, Any]:
    """A project's storage quota for operators: bytes, Harbor's display sizes and a state.

    `state`: "full" at or past the limit, "warning" at or past the warning threshold, "ok"
    otherwise ("unlimited" without a limit); `recalculating` while a rebuild from the
    registry runs (enforcement uses the figure shown meanwhile).
    """
    if usage.hard < 0:
        state = "unlimited"
    elif usage.used >= usage.hard:
        state = "full"
    elif usage.used * 100 >= usage.hard * usage.warning_percent:
        state = "warning"
    else:
        state = "ok"
    return {
        "project": usage.project, "used": usage.used, "limit": usage.hard,
        "held": usage.reserved, "percent": usage.percent,
        "warning_percent": usage.warning_percent, "warning_repeat": usage.warning_repeat,
        "state": state, "recalculating": usage.recalculating, "source": usage.source,
        "used_text": display_size(usage.used),
        "limit_text": "unlimited" if usage.hard < 0 else display_size(usage.hard),
    }


def replay_json(result: Replayed) -> dict[str, Any]:
    return {"requeued": [delivery_json(d) for d in result.requeued],
            "skipped": [{"id": s.id, "reason": s.reason} for s in result.skipped]}


def job_sections() -> dict[str, Any]:
    """The status report's sections on background work and endpoint health, from the store
    alone (a database thread): the HTTP status and `sidecar status` show the same."""
    usages = all_usage()
    return {
        "scans": scans_status(),
        "replication": replication_runs.report(),
        "retention": retention_runs.report(),
        "quotas": quotas_json(usages),
        "quotas_total": len(usages),
        "disabled_targets": [
            {"policy_id": t.policy_id, "project": t.project, "policy": t.policy,
             "address": t.address, "disabled_at": t.since, "reason": t.reason,
             "skipped_deliveries": t.skipped} for t in target_health.disabled_targets()],
    }
