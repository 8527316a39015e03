"""Harbor's "Default" payload, field for field, for every event family.

Strict receivers (the Jenkins plugin uses Jackson with unknown keys refused; Go receivers decode
integers) accept nothing outside Harbor's schema, so anything extra the seed asks for (sizes)
goes to `custom_attributes`, a string-to-string map every receiver accepts.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sidecar.events.model import ArtifactEvent
from sidecar.events.model import ChartEvent


def split_hostname(hostname: str) -> tuple[str, str]:
    """(scheme, host[:port]) of a configured hostname or a Host header; scheme "" if none.

    `hostname` may be written as a URL (`https://Reg.example/`): the host is lower-cased and
    loses its scheme and trailing slashes, as Harbor's ExtURL() and ExtEndpoint read it.
    """
    host = hostname.strip().rstrip("/")
    scheme = ""
    for prefix in ("https://", "http://"):
        if host.lower().startswith(prefix):
            scheme, host = prefix[:-3], host[len(prefix):]
    return scheme, host.lower()


def resource_url(hostname: str, repository: str, reference: str, *, by_digest: bool) -> str:
    """`<host[:port]>/<repo>:<tag>` or `...@<digest>`: no scheme, as Harbor's ExtURL()."""
    separator = "@" if by_digest else ":"
    return f"{split_hostname(hostname)[1]}/{repository}{separator}{reference}"


def artifact_payload(
    event: ArtifactEvent,
    *,
    hostname: str,
    public: bool,
    date_created: int | None = None,
) -> dict[str, Any]:
    """Build the Default payload of an artifact event (one resource, as Harbor sends)."""
    reference = event.reference
    url = resource_url(hostname or event.host, event.repository, reference,
                       by_digest=not event.tags)
    event_data: dict[str, Any] = {"resources": [_resource(event.digest, reference, url)],
                                  "repository": _repository(event, public, date_created)}
    custom = {key: str(value) for key, value in event.extra.items() if value != ""}
    if event.size is not None:
        custom["size"] = str(int(event.size))
    if custom:
        event_data["custom_attributes"] = dict(sorted(custom.items()))
    return _envelope(event, event_data)


def chart_url(event: ChartEvent, version: str, hostname: str) -> str:
    """Where the chart version downloads from.

    ChartMuseum and Harbor routes: `<scheme>://<host><base><chart>-<version>.tgz` (Harbor's
    ExtEndpoint form, with scheme). OCI: `oci://<host>/<repository>:<tag>`, what `helm pull`
    takes, with Helm's `+` -> `_` tag mapping.
    """
    scheme, host = split_hostname(hostname or event.host)
    if not event.download_base:
        return f"oci://{host}/{event.repository}:{version.replace('+', '_')}"
    base = f"{scheme or event.scheme or 'http'}://{host}{event.download_base}"
    return f"{base}{event.chart}-{version}.tgz"


def chart_payload(event: ChartEvent, *, hostname: str, public: bool,
                  date_created: int | None = None) -> dict[str, Any]:
    """Harbor 2.7's chart payload: one resource per version, `tag` = version, the download
    URL with scheme, no `date_created` (Harbor sent none for charts)."""
    resources = [_resource(event.digest, version, chart_url(event, version, hostname))
                 for version in event.versions]
    event_data: dict[str, Any] = {"resources": resources,
                                  "repository": _repository(event, public)}
    if event.size is not None:
        event_data["custom_attributes"] = {"size": str(int(event.size))}
    return _envelope(event, event_data)


def _resource(digest: str, tag: str, url: str) -> dict[str, Any]:
    """One of `event_data.resources`: no `digest` key when there is none (never null)."""
    resource: dict[str, Any] = {"digest": digest} if digest else {}
    resource["tag"] = tag
    resource["resource_url"] = url
    return resource


def _repository(event: Any, public: bool, date_created: int | None = None) -> dict[str, Any]:
    """Harbor's `event_data.repository`; `date_created` only when known (Harbor omits it)."""
    repository: dict[str, Any] = {}
    if date_created:
        repository["date_created"] = int(date_created)
    repository.update(
        name=event.name,
        namespace=event.namespace,
        repo_full_name=event.repository,
        repo_type="public" if public else "private",
    )
    return repository


def _envelope(event: Any, event_data: dict[str, Any]) -> dict[str, Any]:
    """The fields every Harbor event payload starts with, around its `event_data`."""
    return {
        "type": event.type,
        "occur_at": int(event.occur_at),
        "operator": event.operator,
        "event_data": event_data,
    }


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
