"""Harbor's "Default" payload, field for field.

Strict receivers (the Jenkins plugin uses Jackson with unknown keys refused; Go receivers decode
integers) accept nothing outside Harbor's schema, so anything extra the seed asks for (sizes)
goes to `custom_attributes`, a string-to-string map every receiver accepts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from sidecar.events.model import ArtifactEvent


def resource_url(hostname: str, repository: str, reference: str, *, by_digest: bool) -> str:
    """`<host[:port]>/<repo>:<tag>` or `...@<digest>`: no scheme, as Harbor's ExtURL()."""
    host = hostname.strip().lower().rstrip("/")
    for scheme in ("https://", "http://"):
        if host.startswith(scheme):
            host = host[len(scheme):]
    separator = "@" if by_digest else ":"
    return f"{host}/{repository}{separator}{reference}"


def artifact_payload(
    event: ArtifactEvent,
    *,
    hostname: str,
    public: bool,
    date_created: int | None = None,
) -> dict[str, Any]:
    """Build the Default payload of an artifact event (one resource, as Harbor sends)."""
    reference = event.reference
    by_digest = not event.tags
    resource: dict[str, Any] = {}
    if event.digest:
        resource["digest"] = event.digest
    resource["tag"] = reference
    resource["resource_url"] = resource_url(
        hostname or event.host, event.repository, reference, by_digest=by_digest
    )
    repository: dict[str, Any] = {}
    if date_created:
        repository["date_created"] = int(date_created)
    repository.update(
        name=event.name,
        namespace=event.namespace,
        repo_full_name=event.repository,
        repo_type="public" if public else "private",
    )
    event_data: dict[str, Any] = {"resources": [resource], "repository": repository}
    custom = {key: str(value) for key, value in event.extra.items() if value != ""}
    if event.size is not None:
        custom["size"] = str(int(event.size))
    if custom:
        event_data["custom_attributes"] = dict(sorted(custom.items()))
    return {
        "type": event.type,
        "occur_at": int(event.occur_at),
        "operator": event.operator,
        "event_data": event_data,
    }


def _chart_payload(event: Any, *, hostname: str, public: bool,
                   date_created: int | None = None) -> dict[str, Any]:
    from sidecar.events.charts import chart_payload  # charts imports this module

    return chart_payload(event, hostname=hostname, public=public)


def _scan_payload(event: Any, *, hostname: str, public: bool,
                  date_created: int | None = None) -> dict[str, Any]:
    from sidecar.events.scan import scan_payload  # scan imports this module

    return scan_payload(event, hostname=hostname, public=public)


#: event class name -> its Default payload builder. Each builder takes the event and the
#: keywords `hostname`, `public` (the project's repo_type) and `date_created` (when the
#: sidecar first saw the repository pushed, or None), and may ignore what it has no use for.
PAYLOAD_BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "ArtifactEvent": artifact_payload,
    "ChartEvent": _chart_payload,
    "ScanEvent": _scan_payload,
}


def payload_for(event: Any, *, hostname: str, public: bool,
                date_created: int | None = None) -> dict[str, Any]:
    """The Default payload of any event family (the form deliveries keep; formats derive)."""
    build = PAYLOAD_BUILDERS[type(event).__name__]
    return build(event, hostname=hostname, public=public, date_created=date_created)


#: Go's encoding/json escapes these inside strings (HTML safety, JavaScript line separators).
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
               "\u2028": "\\u2028", "\u2029": "\\u2029"}
_SURROGATE = re.compile("[\ud800-\udfff]")


def encode(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, byte for byte as Go's encoding/json writes it (Harbor's body)."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    # these characters can only occur inside JSON strings, so a plain replace is exact
    for char, escaped in _GO_ESCAPES.items():
        text = text.replace(char, escaped)
    # a lone surrogate is not text: Go writes U+FFFD where Python's encoder would raise
    return _SURROGATE.sub("\ufffd", text).encode("utf-8")
