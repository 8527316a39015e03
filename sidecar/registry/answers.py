"""Reading a registry's answers: a refusal as an exception, a transport failure as a reason.

Messages name the method, host and path (never the query: upload state) and the registry's
error code and message; never a header, a token or a password.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from sidecar.lazy import lazy_module
from sidecar.neterrors import errno_reason
from sidecar.registry.errors import NotFound
from sidecar.registry.errors import RegistryError
from sidecar.registry.errors import Unauthorized

requests = lazy_module("requests")  # the rare paths' library: see sidecar/lazy.py

_ERROR_LIMIT = 64 * 1024
#: "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate (_ssl.c"
_TLS_REASON = re.compile(r"\[SSL[^\]]*\] ([^'(]+)")


def media_type(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip()


def length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


def where(url: str) -> str:
    """host and path of a URL, never its query (upload state) or user info."""
    parts = urlsplit(url)
    return f"{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.TooManyRedirects):
        return "too many redirects (a redirect loop?)"
    text = str(exc)
    tls = _TLS_REASON.search(text)
    if tls:
        return f"TLS: {tls.group(1).strip()}"
    if "[Errno" in text:
        return errno_reason(exc, 200)
    return type(exc).__name__


def failure(response: requests.Response, method: str, url: str,
            stream: bool) -> RegistryError:
    """The registry's refusal as an exception: status, and its error code and message."""
    code = message = ""
    if method != "HEAD":
        try:
            body = response.raw.read(_ERROR_LIMIT, decode_content=True) if stream \
                else response.content[:_ERROR_LIMIT]
            first = (json.loads(body).get("errors") or [{}])[0]
            code, message = str(first.get("code", "")), str(first.get("message", ""))[:200]
        except Exception:  # no JSON error body: the status says enough
            pass
    response.close()
    status = response.status_code
    text = f"{method} {where(url)}: {status}" + (f" {code}: {message}" if code else "")
    kind = NotFound if status == 404 else Unauthorized if status in (401, 403) \
        else RegistryError
    return kind(text, status=status, code=code)
