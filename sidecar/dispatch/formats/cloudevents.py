"""Harbor's CloudEvents format (structured, as Harbor sends it) and binary mode (beyond Harbor).

The envelope is built and serialised by the CloudEvents SDK (`cloudevents` package), so
attribute names, time format and the binary-mode header encoding follow the spec rather than
our reading of it. Attributes as Harbor's formatter sets them: `source` names the policy,
`data` is the Default payload's `event_data`, `type`/`occur_at`/`operator` move into
attributes and the `operator` and `requestid` extensions.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any

from sidecar.dispatch.formats.base import Context
from sidecar.dispatch.formats.base import Format

STRUCTURED = "structured"
BINARY = "binary"
#: the target field choosing the content mode (beyond Harbor: binary)
if TYPE_CHECKING:
    from cloudevents.core.v1.event import CloudEvent

MODE = "cloudevents_mode"

#: Harbor's mapping (src/pkg/notifier/formats/cloudevents.go). Chart events never had one in
#: Harbor (they were removed in the release that added CloudEvents); ours follow the pattern.
EVENT_TYPES = {
    "PUSH_ARTIFACT": "harbor.artifact.pushed",
    "PULL_ARTIFACT": "harbor.artifact.pulled",
    "DELETE_ARTIFACT": "harbor.artifact.deleted",
    "QUOTA_EXCEED": "harbor.quota.exceeded",
    "QUOTA_WARNING": "harbor.quota.warned",
    "SCANNING_FAILED": "harbor.scan.failed",
    "SCANNING_STOPPED": "harbor.scan.stopped",
    "SCANNING_COMPLETED": "harbor.scan.completed",
    "REPLICATION": "harbor.replication.status.changed",
    "TAG_RETENTION": "harbor.tag_retention.finished",
    "UPLOAD_CHART": "harbor.chart.uploaded",
    "DOWNLOAD_CHART": "harbor.chart.downloaded",
    "DELETE_CHART": "harbor.chart.deleted",
}

_UID = re.compile(r"^msg_([0-9a-f]{32})$")


def cloudevent_type(event_type: str) -> str:
    return EVENT_TYPES.get(event_type) or "harbor." + event_type.lower()


def event_id(delivery_uid: str) -> str:
    """A UUID fixed per delivery: Harbor renders the body once per job, so its retries repeat
    the id too, and a receiver can de-duplicate on it."""
    match = _UID.match(delivery_uid)
    if match:
        return str(uuid.UUID(match.group(1)))
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sidecar-delivery:{delivery_uid}"))


def source(project_id: int | None, policy_id: int | None) -> str:
    """`/projects/<pid>/webhook/policies/<id>`; 0 for a policy deleted since the event."""
    return f"/projects/{project_id or 0}/webhook/policies/{policy_id or 0}"


def build_event(
    payload: Mapping[str, Any],
    *,
    delivery_uid: str,
    project_id: int | None,
    policy_id: int | None,
    request_id: str,
) -> CloudEvent:
    # the SDK is imported on first use: the formats table is read by processes that never
    # send (the server's master, rules validation), and the SDK brings its dependencies along
    from cloudevents.core.v1.event import CloudEvent

    attributes = {
        "specversion": "1.0",
        "id": event_id(delivery_uid),
        "source": source(project_id, policy_id),
        "type": cloudevent_type(str(payload.get("type", ""))),
        "datacontenttype": "application/json",
        "time": datetime.fromtimestamp(int(payload.get("occur_at") or 0), UTC),
        "requestid": request_id,
        "operator": str(payload.get("operator", "")),
    }
    return CloudEvent(attributes=attributes, data=payload.get("event_data") or {})


def render_cloudevent(
    payload: Mapping[str, Any],
    *,
    mode: str,
    delivery_uid: str,
    project_id: int | None,
    policy_id: int | None,
    request_id: str,
) -> tuple[bytes, dict[str, str]]:
    """Structured: the whole event as `application/cloudevents+json`. Binary: `data` as the
    body (`application/json`) and every other attribute as a `ce-` header."""
    from cloudevents.core.bindings.http import to_binary_event
    from cloudevents.core.bindings.http import to_structured_event

    event = build_event(payload, delivery_uid=delivery_uid, project_id=project_id,
                        policy_id=policy_id, request_id=request_id)
    message = to_binary_event(event) if mode == BINARY else to_structured_event(event)
    headers = {_canonical(name): value for name, value in message.headers.items()}
    return message.body, headers


def _canonical(name: str) -> str:
    return "Content-Type" if name.lower() == "content-type" else name


def _render(payload: Mapping[str, Any], context: Context,
            options: Mapping[str, str]) -> tuple[bytes, dict[str, str]]:
    return render_cloudevent(payload, mode=options.get(MODE) or STRUCTURED,
                             delivery_uid=context.delivery_uid, project_id=context.project_id,
                             policy_id=context.policy_id, request_id=context.request_id)


#: `source` names the policy's project id: the one format that needs it looked up.
FORMAT = Format(type="http", payload_format="CloudEvents", render=_render,
                vendor_type="WEBHOOK", uses=frozenset({"auth_header", "secret"}),
                options={MODE: (STRUCTURED, BINARY)}, needs_project_id=True, rank=1)
