"""Harbor's response models for registries, replication policies, executions and tasks.

go-swagger's serialisation: optional fields are omitempty (a false, 0 or "" vanishes) unless
Harbor's handler sets a pointer (`dest_namespace_replace_count`, `speed`, `copy_by_chunk`,
`single_active_replication` always appear) or the spec says `x-omitempty: false` (a
registry's `id`; an execution's counters and `status_text`). Times are strfmt.DateTime with
milliseconds; a zero time is written, not left out. A registry's secret is `*****`, always.
"""

from __future__ import annotations

from typing import Any

from sidecar.store.replication import PolicyView
from sidecar.store.replication import RegistryView
from sidecar.store.replication_runs import ExecutionView
from sidecar.store.replication_runs import TaskView
from sidecar.timefmt import strfmt_time

MASK = "*****"
#: internal status -> what Harbor's API answers (convertExecution / convertTask)
EXECUTION_STATUS = {"Running": "InProgress", "Success": "Succeed", "Error": "Failed",
                    "Stopped": "Stopped"}
TASK_STATUS = {"Running": "InProgress", "Success": "Succeed", "Error": "Failed",
               "Stopped": "Stopped", "Pending": "Pending"}
TRIGGER_NAMES = {"MANUAL": "manual", "SCHEDULE": "scheduled", "EVENT": "event_based"}
#: what list filters accept, back to the internal names
EXECUTION_STATUS_FILTER = {v: k for k, v in EXECUTION_STATUS.items()}
TRIGGER_FILTER = {v: k for k, v in TRIGGER_NAMES.items()}
TASK_STATUS_FILTER = {"InProgress": ("Running",), "Succeed": ("Success",),
                      "Failed": ("Error",), "Stopped": ("Stopped",), "Pending": ("Pending",)}


def _omit_empty(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v not in ("", 0, False, None)}


def registry_json(registry: RegistryView, status: str = "") -> dict[str, Any]:
    credential = _omit_empty({"type": registry.credential_type if registry.access_key else "",
                              "access_key": registry.access_key,
                              "access_secret": MASK if registry.access_secret else ""})
    out: dict[str, Any] = {"id": registry.id}
    out.update(_omit_empty({"url": registry.url, "name": registry.name}))
    out["credential"] = credential
    out.update(_omit_empty({"type": registry.type, "insecure": registry.insecure}))
    if registry.ca_certificate:
        out["ca_certificate"] = registry.ca_certificate
    out.update(_omit_empty({"description": registry.description, "status": status}))
    out["creation_time"] = strfmt_time(registry.created_at)
    out["update_time"] = strfmt_time(registry.updated_at)
    return out


def local_registry_json(endpoint: str) -> dict[str, Any]:
    """Harbor's synthetic id-0 registry, the source of every push-mode policy."""
    return {"id": 0, "url": endpoint, "name": "Local",
            "credential": {"type": "secret", "access_secret": MASK}, "type": "harbor",
            "insecure": True, "status": "healthy", "creation_time": strfmt_time(None),
            "update_time": strfmt_time(None)}


def policy_json(policy: PolicyView, destination: dict[str, Any] | None,
                local: dict[str, Any]) -> dict[str, Any]:
    trigger: dict[str, Any] = {"type": policy.trigger,
                               "trigger_settings": _omit_empty({"cron": policy.cron})}
    out: dict[str, Any] = {}
    out.update(_omit_empty({"id": policy.id, "name": policy.name,
                            "description": policy.description}))
    out["src_registry"] = local
    if destination is not None:
        out["dest_registry"] = destination
    if policy.dest_namespace:
        out["dest_namespace"] = policy.dest_namespace
    out["dest_namespace_replace_count"] = policy.dest_namespace_replace_count
    out["trigger"] = trigger
    if policy.filters:
        out["filters"] = [dict(f) for f in policy.filters]
    out.update(_omit_empty({"replicate_deletion": policy.replicate_deletion,
                            "deletion": policy.replicate_deletion,
                            "override": policy.override, "enabled": policy.enabled}))
    out["creation_time"] = strfmt_time(policy.created_at)
    out["update_time"] = strfmt_time(policy.updated_at)
    out["speed"] = policy.speed
    out["copy_by_chunk"] = policy.copy_by_chunk
    out["single_active_replication"] = policy.single_active_replication
    return out


def execution_json(view: ExecutionView) -> dict[str, Any]:
    out: dict[str, Any] = _omit_empty({
        "id": view.id, "policy_id": view.policy_id,
        "status": EXECUTION_STATUS.get(view.status, view.status),
        "trigger": TRIGGER_NAMES.get(view.trigger, view.trigger)})
    out["start_time"] = strfmt_time(view.start_time)
    out["end_time"] = strfmt_time(view.end_time)
    out.update(status_text=view.status_text, total=view.total, failed=view.failed,
               succeed=view.succeed, in_progress=view.in_progress, stopped=view.stopped)
    return out


def task_json(view: TaskView) -> dict[str, Any]:
    out: dict[str, Any] = _omit_empty({
        "id": view.id, "execution_id": view.execution_id,
        "status": TASK_STATUS.get(view.status, view.status), "job_id": str(view.id),
        "operation": view.operation, "resource_type": view.resource_type,
        "src_resource": view.src_resource, "dst_resource": view.dst_resource})
    out["start_time"] = strfmt_time(view.start_time)
    out["end_time"] = strfmt_time(view.end_time)
    return out


def task_log(view: TaskView) -> str:
    """The task's log, then what it came to: status, bytes sent, the error if any."""
    lines = [view.log.rstrip("\n")] if view.log.strip() else []
    summary = f"{view.status}: {view.bytes} bytes copied to the destination"
    if view.error and view.status != "Success":
        summary += f"; {view.error}"
    lines.append(summary)
    return "\n".join(lines) + "\n"
