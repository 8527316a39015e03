"""REPLICATION events: a replication task changed status (Running, then Success, Error or
Stopped), and Harbor's payload for them.

Harbor fires one per task status change, from the task's hook, not from a request: the operator
is the execution's (who pushed, for event-based runs; who asked, for manual ones), `occur_at`
the moment of the change. A task is one repository of one execution. The sidecar replicates
in push mode only (the local side is the source), so, as in Harbor:

- the webhook goes to the SOURCE project's policies (`repository` is the source repository);
- `src_resource` is the local side ({registry_type "harbor", endpoint = the external URL with
  its scheme}), `dest_resource` the remote registry ({registry_name, registry_type, endpoint});
- Harbor's quirk is kept: `src_resource.namespace` is read from the task's destination
  resource and `dest_resource.namespace` from its source resource (they differ only when the
  policy has a `dest_namespace`);
- `successful_artifact` (Success) / `failed_artifact` (Error) hold one entry: `name_tag` is the
  source resource string after its first `/` (`"app [2 item(s) in total]"`), `references` the
  tags (or digests) the task replicated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sidecar.events.model import InProject
from sidecar.events.payload import split_hostname

#: Harbor's task status names (jobservice), the `job_status` of each event
RUNNING, SUCCESS, ERROR, STOPPED = "Running", "Success", "Error", "Stopped"
JOB_STATUSES = (RUNNING, SUCCESS, ERROR, STOPPED)
#: execution triggers as the payload names them
TRIGGER_MANUAL, TRIGGER_SCHEDULE, TRIGGER_EVENT = "MANUAL", "SCHEDULE", "EVENT"
#: the resource type of a task whose source is a Harbor (the local side), as Harbor's
ARTIFACT = "artifact"
LOCAL_REGISTRY_TYPE = "harbor"


def resource_name(repository: str, items: int) -> str:
    """Harbor's task resource string: `"<repo> [<n> item(s) in total]"`."""
    return f"{repository} [{items} item(s) in total]"


@dataclass(frozen=True)
class ReplicationEvent(InProject):
    """One status change of one replication task (one source repository)."""

    type: str
    repository: str                  # the source repository: its project gets the webhook
    operator: str
    occur_at: int
    job_status: str
    execution_id: int
    task_id: int
    trigger_type: str
    execution_timestamp: int
    references: tuple[str, ...]      # tags, or digests for untagged artifacts
    source_resource: str             # resource_name(source repository, n)
    destination_resource: str        # resource_name(destination repository, n)
    registry_name: str               # the remote (destination) registry
    registry_type: str
    registry_endpoint: str
    description: str = ""
    artifact_type: str = ARTIFACT
    authentication_type: str = ""    # the remote credential's type ("" = anonymous)
    override_mode: bool = False
    policy_creator: str = ""
    host: str = ""                   # where the run was asked for, when no hostname is set
    scheme: str = "http"
    request_id: str = ""
    digest: str = ""

    @property
    def tags(self) -> tuple[str, ...]:
        """What webhook policy tag filters read: the replicated references."""
        return self.references


def _namespace_and_rest(resource: str) -> tuple[str, str]:
    """Harbor's getMetadataFromResource: split once at the first `/`."""
    namespace, sep, rest = resource.partition("/")
    return (namespace, rest) if sep else ("", namespace)


def _omit_empty(fields: dict[str, Any]) -> dict[str, Any]:
    """Go's omitempty on strings, integers and booleans: no "", 0 or false."""
    return {key: value for key, value in fields.items() if value}


def replication_payload(event: ReplicationEvent, *, hostname: str, public: bool,
                        date_created: int | None = None) -> dict[str, Any]:
    """Harbor's Default payload of a REPLICATION event, key for key in its Go order.

    `event_data` holds only `replication` (no resources, no repository), as Harbor's.
    """
    scheme, host = split_hostname(hostname or event.host)
    source_namespace, name_tag = _namespace_and_rest(event.source_resource)
    destination_namespace, _ = _namespace_and_rest(event.destination_resource)
    local = {"registry_type": LOCAL_REGISTRY_TYPE,
             "endpoint": f"{scheme or event.scheme or 'http'}://{host}" if host else ""}
    if destination_namespace:
        local["namespace"] = destination_namespace
    remote: dict[str, Any] = {}
    if event.registry_name:
        remote["registry_name"] = event.registry_name
    remote.update(registry_type=event.registry_type, endpoint=event.registry_endpoint)
    if source_namespace:
        remote["namespace"] = source_namespace
    replication = _omit_empty({
        "harbor_hostname": host.split(":")[0],
        "job_status": event.job_status,
        "description": event.description,
        "artifact_type": event.artifact_type,
        "authentication_type": event.authentication_type,
        "override_mode": event.override_mode,
        "trigger_type": event.trigger_type,
        "policy_creator": event.policy_creator,
        "execution_timestamp": int(event.execution_timestamp),
    })
    replication["src_resource"] = local
    replication["dest_resource"] = remote
    artifact = [{"type": event.artifact_type, "status": event.job_status,
                 "name_tag": name_tag, "references": list(event.references) or [""]}]
    if event.job_status == SUCCESS:
        replication["successful_artifact"] = artifact
    elif event.job_status == ERROR:
        replication["failed_artifact"] = artifact
    if event.execution_id:
        replication["execution_id"] = int(event.execution_id)
    if event.task_id:
        replication["task_id"] = int(event.task_id)
    return {
        "type": event.type,
        "occur_at": int(event.occur_at),
        "operator": event.operator,
        "event_data": {"replication": replication},
    }
