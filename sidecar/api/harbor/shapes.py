"""Store views -> the JSON shapes of Harbor's v2.0 API (WebhookPolicy, Execution, Task, ...).

Pure. Two time formats, as Harbor writes them (`sidecar.timefmt`): policies and last triggers
go through go-openapi's strfmt.DateTime (milliseconds), executions and tasks through Go's
time.RFC3339 (seconds). Secrets in targets are masked: Harbor returns auth_header in clear, the
sidecar never does.
"""

from __future__ import annotations

from typing import Any

from sidecar.dispatch.formats import UnknownFormat
from sidecar.dispatch.formats import format_for
from sidecar.redact import masked_target
from sidecar.rules.target import Target
from sidecar.store.delivery_history import Trigger
from sidecar.store.models import DELIVERED
from sidecar.store.models import FAILED
from sidecar.store.models import PENDING
from sidecar.store.models import SENDING
from sidecar.store.models import SKIPPED
from sidecar.store.quota_catalog import QuotaView
from sidecar.store.views import DeliveryView
from sidecar.store.views import PolicyView
from sidecar.store.views import ProjectView
from sidecar.timefmt import rfc3339_time
from sidecar.timefmt import strfmt_time

#: Our delivery status -> Harbor's task/execution status.
#: skipped (its target was disabled, never sent) is Harbor's Stopped: a task that did not run
HARBOR_STATUS = {PENDING: "Pending", SENDING: "Running", DELIVERED: "Success", FAILED: "Error",
                 SKIPPED: "Stopped"}
OUR_STATUS = {value: key for key, value in HARBOR_STATUS.items()}


def target_json(target: Target) -> dict[str, Any]:
    """Harbor's WebhookTargetObject with secrets masked; omitempty fields left out."""
    return masked_target(target)


def policy_json(policy: PolicyView) -> dict[str, Any]:
    return {
        "id": policy.id,
        "name": policy.name,
        "description": policy.description,
        "project_id": policy.project_id,
        "targets": [target_json(t) for t in policy.targets],
        "event_types": list(policy.event_types),
        "creator": policy.creator,
        "creation_time": strfmt_time(policy.created_at),
        "update_time": strfmt_time(policy.updated_at),
        "enabled": policy.enabled,
        **policy.options,  # beyond Harbor, only when set: filters, pull_dedup_seconds
    }


def last_trigger_json(policy: PolicyView, trigger: Trigger) -> dict[str, Any]:
    return {
        "policy_name": policy.name,
        "event_type": trigger.event_type,
        "enabled": policy.enabled,
        "creation_time": strfmt_time(policy.created_at),
        "last_trigger_time": strfmt_time(trigger.created_at),
    }


def project_json(project: ProjectView, retention_id: int | None = None) -> dict[str, Any]:
    """The part of Harbor's Project model that means something here; `retention_id` is the
    project's tag retention policy (metadata, a string as in Harbor)."""
    metadata = {"public": "true" if project.public else "false"}
    if retention_id:
        metadata["retention_id"] = str(retention_id)
    return {
        "project_id": project.id,
        "name": project.name,
        "owner_id": 1,
        "owner_name": "admin",
        "creation_time": strfmt_time(project.created_at),
        "update_time": strfmt_time(project.created_at),
        "deleted": False,
        "repo_count": project.repo_count,
        "metadata": metadata,
    }


def quota_json(quota: QuotaView, single: bool = False) -> dict[str, Any]:
    """Harbor's Quota model. As Harbor answers it, the single-quota GET has no update_time
    (Go's zero time): only the list reads it from the usage row."""
    return {
        "id": quota.id,
        "ref": {"id": quota.project_id, "name": quota.project, "owner_name": "admin"},
        "hard": {"storage": quota.hard},
        "used": {"storage": quota.used},
        "creation_time": strfmt_time(quota.created_at),
        "update_time": strfmt_time(None if single else quota.updated_at),
    }


def vendor_type(target: Target) -> str:
    """Harbor's execution vendor type for the target's format (WEBHOOK, SLACK)."""
    try:
        return format_for(target).vendor_type
    except UnknownFormat:
        return "WEBHOOK"


def _metrics(status: str) -> dict[str, int]:
    harbor = HARBOR_STATUS.get(status, "Pending")
    return {
        "task_count": 1,
        "success_task_count": int(harbor == "Success"),
        "error_task_count": int(harbor == "Error"),
        "pending_task_count": int(harbor == "Pending"),
        "running_task_count": int(harbor == "Running"),
        "scheduled_task_count": 0,
        "stopped_task_count": int(harbor == "Stopped"),
    }


def execution_json(delivery: DeliveryView, body: str) -> dict[str, Any]:
    """One delivery as Harbor's Execution; `body` is the exact request body it sends."""
    return {
        "id": delivery.id,
        "vendor_type": vendor_type(delivery.target),
        "vendor_id": delivery.policy_id,
        "status": HARBOR_STATUS.get(delivery.status, "Pending"),
        "status_message": delivery.last_error,
        "metrics": _metrics(delivery.status),
        "trigger": "EVENT",
        "extra_attrs": {"event_type": delivery.event_type, "payload": body},
        "start_time": rfc3339_time(delivery.created_at),
        "end_time": rfc3339_time(delivery.finished_at),
    }


def task_json(delivery: DeliveryView) -> dict[str, Any]:
    """The delivery's only task: run_count is the number of attempts made."""
    first = delivery.attempt_rows[0].started_at if delivery.attempt_rows else None
    return {
        "id": delivery.id,
        "execution_id": delivery.id,
        "status": HARBOR_STATUS.get(delivery.status, "Pending"),
        "status_message": delivery.last_error,
        "run_count": delivery.attempts,
        "extra_attrs": {"event_type": delivery.event_type, "delivery_uid": delivery.uid},
        "creation_time": rfc3339_time(delivery.created_at),
        "update_time": rfc3339_time(delivery.updated_at),
        "start_time": rfc3339_time(first),
        "end_time": rfc3339_time(delivery.finished_at),
    }


def webhook_job_json(delivery: DeliveryView, body: str) -> dict[str, Any]:
    """One delivery as Harbor's legacy WebhookJob (the deprecated /webhook/jobs list)."""
    return {
        "id": delivery.id,
        "policy_id": delivery.policy_id,
        "event_type": delivery.event_type,
        "notify_type": delivery.target.type,
        "status": HARBOR_STATUS.get(delivery.status, "Pending"),
        "job_detail": body,
        "creation_time": strfmt_time(delivery.created_at),
        "update_time": strfmt_time(delivery.updated_at),
    }


def task_log(delivery: DeliveryView, body: str) -> str:
    """Harbor's webhook job log lines, one run per attempt. Never a request header."""
    kind = vendor_type(delivery.target).lower()
    lines: list[str] = []

    def line(when: float, level: str, text: str) -> None:
        lines.append(f"{rfc3339_time(when)} [{level}] {text}")

    line(delivery.created_at, "INFO",
         f"{kind} job created for {delivery.event_type}, policy {delivery.policy_name}")
    for attempt in delivery.attempt_rows:
        line(attempt.started_at, "INFO",
             f"start to run {kind} job (attempt {attempt.number} of {delivery.max_attempts})")
        line(attempt.started_at, "INFO", f"send request to remote endpoint, body: {body}")
        done = attempt.started_at + attempt.duration_ms / 1000
        code = attempt.status_code
        if code is not None and 200 <= code < 300:
            line(done, "INFO", f"success to run {kind} job (status code {code}, "
                               f"{attempt.duration_ms} ms)")
            continue
        if code is not None:
            reason = f"abnormal response code: {code}, body: {attempt.response_excerpt}"
        else:
            reason = attempt.error or "no response"
        line(done, "ERROR", f"exit {kind} job, error: {reason}")
    if delivery.status == PENDING:
        if delivery.attempts:
            line(delivery.updated_at, "INFO",
                 f"retry scheduled at {rfc3339_time(delivery.next_attempt_at)}")
        else:
            line(delivery.created_at, "INFO", "waiting for the first attempt")
    elif delivery.status == FAILED:
        line(delivery.finished_at or delivery.updated_at, "ERROR",
             f"{kind} job failed after {delivery.attempts} attempts: {delivery.last_error}")
    return "\n".join(lines) + "\n"
