"""The proxy's own answers when it cannot relay the upstream's: small JSON bodies in the shape
the client reads. Registry and Harbor clients read `{"errors": [{"code", "message"}]}` (the
distribution spec's error body); chart clients print ChartMuseum's `{"error": message}`."""

from __future__ import annotations

import json
from typing import Any


def registry_error(start_response, status: str, code: str, message: str) -> list[bytes]:
    """An error in the registry's (and Harbor's API's) shape."""
    return _json(start_response, status, {"errors": [{"code": code, "message": message}]})


def chartmuseum_error(start_response, status: str, message: str) -> list[bytes]:
    """An error in ChartMuseum's shape, which chart clients print."""
    return _json(start_response, status, {"error": message})


def _json(start_response, status: str, body: Any) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data)))])
    return [data]
