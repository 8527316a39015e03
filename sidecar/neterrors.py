"""Why a network call failed, in a few words fit for a log line, an answer or an attempt record.

Shared by the proxy (its upstream client) and delivery (requests): both see the same kind of
nested error text and both want the part a person can act on. No sidecar imports: any layer
may use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported by the callers that raise its errors, not by the proxy's
    import requests


def errno_reason(exc: BaseException, limit: int = 300) -> str:
    """The `[Errno N] ...` part of a transport error, else its text, at most `limit` chars.

    urllib3 nests the useful part: `... (Caused by NewConnectionError('<...>: [Errno 111]
    Connection refused'))`.
    """
    text = str(exc)
    at = text.find("[Errno")
    if at >= 0:
        text = text[at:].split("'")[0].split('"')[0].rstrip(")")
    return text[:limit]


def request_failure(exc: requests.RequestException, timeout: float) -> str:
    """What a `requests` call that raised came to: timeout, TLS, connection or other."""
    import requests  # loaded already: `exc` is one of its errors

    if isinstance(exc, requests.exceptions.Timeout):
        return f"timeout after {timeout:g}s"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS error: {errno_reason(exc)}"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"connection failed: {errno_reason(exc)}"
    return f"request failed: {errno_reason(exc)}"
