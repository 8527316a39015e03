"""Turn one observed request/response pair into the Harbor events it means.

Mirrors what Harbor's own registry proxy does (src/server/registry/manifest.go): only manifest
operations that the registry accepted are events; HEAD, 304, blobs, tags, catalog and referrers
are traffic, not events.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sidecar.events.model import DELETE_ARTIFACT
from sidecar.events.model import PULL_ARTIFACT
from sidecar.events.model import PUSH_ARTIFACT
from sidecar.events.model import ArtifactEvent
from sidecar.events.operator import operator_from_authorization

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = rf"{_COMPONENT}(?:/{_COMPONENT})*"
#: a repository name in distribution's grammar, for the other routes that carry one
NAME_PATTERN = _NAME
_TAG = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
_DIGEST = r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"
# \Z, not $: "$" also matches before a trailing newline (a decoded %0A)
_MANIFEST_ROUTE = re.compile(rf"^/v2/(?P<name>{_NAME})/manifests/(?P<ref>{_TAG}|{_DIGEST})\Z")
_DIGEST_RE = re.compile(rf"^{_DIGEST}\Z")

#: Harbor ignores pulls made by its own replication client; so do we.
REPLICATION_USER_AGENT = "harbor-registry-client"


@dataclass(frozen=True)
class Exchange:
    """What the proxy saw of one request and the upstream's answer (header keys lower-case).

    `prior_tags` and `prior_size` describe a manifest before a DELETE removed it: the
    registry's 202 says nothing about them, so the proxy looks them up first.
    """

    method: str
    path: str
    status: int
    request_headers: Mapping[str, str]
    response_headers: Mapping[str, str]
    occur_at: int
    prior_tags: tuple[str, ...] = ()
    prior_size: int | None = None


def manifest_route(path: str) -> tuple[str, str] | None:
    """Split `/v2/<name>/manifests/<reference>` into (name, reference), else None."""
    match = _MANIFEST_ROUTE.match(path)
    if match is None:
        return None
    return match.group("name"), match.group("ref")


def is_digest(reference: str) -> bool:
    return _DIGEST_RE.match(reference) is not None


def infer(exchange: Exchange) -> list[ArtifactEvent]:
    """Return the events one exchange produced: none, or exactly one artifact event."""
    route = manifest_route(exchange.path)
    if route is None:
        return []
    repository, reference = route
    method = exchange.method.upper()
    status = exchange.status
    by_digest = is_digest(reference)
    digest = exchange.response_headers.get("docker-content-digest", "").strip()
    if not is_digest(digest):  # absent or garbled: never pass it on as the artifact's digest
        digest = reference if by_digest else ""
    request_headers = exchange.request_headers
    common = {
        "repository": repository,
        "digest": digest,
        "operator": operator_from_authorization(request_headers.get("authorization")),
        "occur_at": exchange.occur_at,
        "host": request_headers.get("host", ""),
        "request_id": request_headers.get("x-request-id", ""),
    }

    if method == "PUT" and status == 201:
        return [
            ArtifactEvent(
                type=PUSH_ARTIFACT,
                tags=() if by_digest else (reference,),
                media_type=request_headers.get("content-type", ""),
                **common,
            )
        ]
    if method == "GET" and status == 200:
        if request_headers.get("user-agent", "").startswith(REPLICATION_USER_AGENT):
            return []
        return [
            ArtifactEvent(
                type=PULL_ARTIFACT,
                tags=() if by_digest else (reference,),
                media_type=exchange.response_headers.get("content-type", ""),
                **common,
            )
        ]
    if method == "DELETE" and status == 202 and by_digest:
        # Deleting by tag only untags (distribution v3) and Harbor refuses it: not an event.
        return [
            ArtifactEvent(
                type=DELETE_ARTIFACT,
                tags=tuple(exchange.prior_tags),
                size=exchange.prior_size,
                **common,
            )
        ]
    return []
