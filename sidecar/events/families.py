"""The event families and their Default payload builders: the one table a new family joins.

Every family is a frozen dataclass following the contract in events.model; the recorder asks
`payload_for` for the payload it keeps (the Default format; the other formats derive from it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sidecar.events.model import ArtifactEvent
from sidecar.events.model import ChartEvent
from sidecar.events.payload import artifact_payload
from sidecar.events.payload import chart_payload
from sidecar.events.quota import QuotaEvent
from sidecar.events.quota import quota_payload
from sidecar.events.replication import ReplicationEvent
from sidecar.events.replication import replication_payload
from sidecar.events.retention import TagRetentionEvent
from sidecar.events.retention import retention_payload
from sidecar.events.scan import ScanEvent
from sidecar.events.scan import scan_payload

#: event class -> its Default payload builder. Each builder takes the event and the keywords
#: `hostname`, `public` (the project's repo_type) and `date_created` (when the sidecar first
#: saw the repository pushed, or None), and may ignore what it has no use for.
PAYLOAD_BUILDERS: dict[type, Callable[..., dict[str, Any]]] = {
    ArtifactEvent: artifact_payload,
    ChartEvent: chart_payload,
    ScanEvent: scan_payload,
    QuotaEvent: quota_payload,
    TagRetentionEvent: retention_payload,
    ReplicationEvent: replication_payload,
}


def payload_for(event: Any, *, hostname: str, public: bool,
                date_created: int | None = None) -> dict[str, Any]:
    """The Default payload of any event family (the form deliveries keep; formats derive)."""
    build = PAYLOAD_BUILDERS[type(event)]
    return build(event, hostname=hostname, public=public, date_created=date_created)
