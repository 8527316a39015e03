"""Harbor's "Default" format: the payload itself, compact JSON."""

from __future__ import annotations

from typing import Any

from sidecar.events.payload import encode

CONTENT_TYPE = "application/json"


def render_default(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    return encode(payload), {"Content-Type": CONTENT_TYPE}
