"""Turn a recorded event and a target into the exact HTTP request to send. Pure.

The format module chosen by the target builds body and content headers; this module adds
what every request of that target carries: User-Agent, Authorization (http only, verbatim, as
Harbor), and a Standard Webhooks signature when the target has a secret. Signing comes last,
over the exact body bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sidecar.dispatch.formats.cloudevents import STRUCTURED
from sidecar.dispatch.formats.cloudevents import render_cloudevent
from sidecar.dispatch.formats.default import render_default
from sidecar.dispatch.formats.slack import render_slack
from sidecar.dispatch.signing import signature_headers

USER_AGENT = "registry-webhook-sidecar"


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]
    verify_tls: bool


@dataclass(frozen=True)
class Context:
    """What a format needs besides payload and target, passed in so rendering stays pure.

    `delivery_uid` is stable across retries (CloudEvents id, webhook-id); `now` is the
    attempt's time (webhook-timestamp); `request_id` is the client's X-Request-Id or the one
    generated when the event was recorded.
    """

    delivery_uid: str
    now: float
    policy_id: int | None = None
    project_id: int | None = None
    request_id: str = ""


def needs_project_id(target: dict[str, Any]) -> bool:
    """Only a CloudEvents `source` names the project: other targets skip that lookup."""
    return target.get("type", "http") == "http" and target.get("payload_format") == "CloudEvents"


def render(payload: dict[str, Any], target: dict[str, Any], context: Context | str) -> Request:
    """The request for one attempt. A bare delivery uid as `context` means "no ids known, now"."""
    if isinstance(context, str):
        context = Context(delivery_uid=context, now=time.time())
    kind = target.get("type", "http")
    if kind == "slack":
        body, headers = render_slack(payload)
    elif target.get("payload_format") == "CloudEvents":
        body, headers = render_cloudevent(
            payload,
            mode=target.get("cloudevents_mode") or STRUCTURED,
            delivery_uid=context.delivery_uid,
            project_id=context.project_id,
            policy_id=context.policy_id,
            request_id=context.request_id,
        )
    else:
        body, headers = render_default(payload)
    headers["User-Agent"] = USER_AGENT
    if kind == "http":
        # Slack targets never send these: Harbor ignores auth_header there, and our policy
        # validation refuses a secret on them.
        auth = target.get("auth_header") or ""
        if auth:
            headers["Authorization"] = auth
        secret = target.get("secret") or ""
        if secret:
            headers.update(
                signature_headers(secret, context.delivery_uid, int(context.now), body)
            )
    return Request(
        url=target["address"],
        body=body,
        headers=headers,
        verify_tls=not target.get("skip_cert_verify", False),
    )
