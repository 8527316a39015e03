"""Harbor's "Default" format: the payload itself, compact JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidecar.dispatch.formats.base import Context
from sidecar.dispatch.formats.base import Format
from sidecar.events.payload import encode

CONTENT_TYPE = "application/json"


def render_default(payload: Mapping[str, Any], context: Context | None = None,
                   options: Mapping[str, str] | None = None) -> tuple[bytes, dict[str, str]]:
    return encode(dict(payload)), {"Content-Type": CONTENT_TYPE}


FORMAT = Format(type="http", payload_format="Default", render=render_default,
                vendor_type="WEBHOOK", uses=frozenset({"auth_header", "secret"}), rank=0)
