"""Turn a recorded event and a target into the exact HTTP request to send. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sidecar.events.payload import encode

USER_AGENT = "registry-webhook-sidecar"


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]
    verify_tls: bool


def render(payload: dict[str, Any], target: dict[str, Any], delivery_uid: str) -> Request:
    """The Default format, as Harbor's HTTP handler sends it.

    `Authorization` is the policy's auth_header verbatim, only when set: every known
    receiver compares the raw value.
    """
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    auth = target.get("auth_header") or ""
    if auth and target.get("type", "http") == "http":
        headers["Authorization"] = auth
    return Request(
        url=target["address"],
        body=encode(payload),
        headers=headers,
        verify_tls=not target.get("skip_cert_verify", False),
    )
