"""Turn a recorded event and a target into the exact HTTP request to send. Pure.

The target's format (the formats table) builds body and content headers; this module adds
what every request carries: User-Agent, Authorization (verbatim, as Harbor, for formats that
use an auth header), and a Standard Webhooks signature when the target has a secret and its
format signs. Signing comes last, over the exact body bytes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.dispatch.formats import Context
from sidecar.dispatch.formats import UnknownFormat
from sidecar.dispatch.formats import format_for
from sidecar.dispatch.signing import signature_headers
from sidecar.events.scan import DEFAULT_PAYLOAD_VERSION
from sidecar.events.scan import harbor_shape
from sidecar.rules.target import Target

__all__ = ["USER_AGENT", "Context", "Request", "min_interval", "needs_project_id", "render"]

USER_AGENT = "registry-webhook-sidecar"


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]
    verify_tls: bool


def _typed(target: Target | Mapping[str, Any]) -> Target:
    # The dispatcher still reads the stored dict off its delivery row.
    return target if isinstance(target, Target) else Target.from_dict(target)


def needs_project_id(target: Target | Mapping[str, Any]) -> bool:
    """Only some formats (CloudEvents' `source`) name the project: others skip that lookup."""
    try:
        return format_for(target).needs_project_id
    except UnknownFormat:
        return False  # `render` refuses it, and says why


def min_interval(target: Target | Mapping[str, Any]) -> float:
    """Least seconds between two sends to the target's address (Slack: 1); 0 means unpaced."""
    try:
        return format_for(target).min_interval
    except UnknownFormat:
        return 0.0


def render(payload: Mapping[str, Any], target: Target | Mapping[str, Any],
           context: Context | str) -> Request:
    """The request for one attempt. A bare delivery uid as `context` means "no ids known, now"."""
    if isinstance(context, str):
        context = Context(delivery_uid=context, now=time.time())
    target = _typed(target)
    row = format_for(target)
    # the stored payload is Harbor 2.10's; a target may ask for a later release's shape
    payload = harbor_shape(payload, target.payload_version or DEFAULT_PAYLOAD_VERSION)
    body, headers = row.render(payload, context, row.option_values(dict(target.options)))
    headers["User-Agent"] = USER_AGENT
    if "auth_header" in row.uses and target.auth_header:
        headers["Authorization"] = target.auth_header
    if "secret" in row.uses and target.secret:
        headers.update(signature_headers(target.secret, context.delivery_uid,
                                         int(context.now), body))
    return Request(url=target.address, body=body, headers=headers,
                   verify_tls=not target.skip_cert_verify)
