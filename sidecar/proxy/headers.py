"""Which headers pass the proxy, each way, and which its own lookups send.

Both proxies (registry and charts) forward the client's end-to-end headers, add the
X-Forwarded-* a registry or ChartMuseum reads to build URLs back to the client, and hand the
upstream's answer back without its hop-by-hop headers (RFC 9110 7.6.1: the fixed ones and any
named in `Connection`).
"""

from __future__ import annotations

from collections.abc import Collection
from collections.abc import Mapping

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade",
})
#: What a lookup made on the client's behalf sends: its credentials and Host, so it sees
#: exactly what the client may see.
LOOKUP = ("authorization", "host")
_ENVIRON_HEADERS = {"CONTENT_TYPE": "Content-Type", "CONTENT_LENGTH": "Content-Length"}

#: environ key -> (header name, lower-case name), remembered: this runs for every request.
#: Bounded, because clients choose the header names.
_NAMES: dict[str, tuple[str, str]] = {
    key: (name, name.lower()) for key, name in _ENVIRON_HEADERS.items()}


def _header_name(key: str) -> tuple[str, str]:
    known = _NAMES.get(key)
    if known is None:
        name = "-".join(part.capitalize() for part in key[5:].split("_"))
        known = (name, name.lower())
        if len(_NAMES) < 512:
            _NAMES[key] = known
    return known


def hop_by_hop(connection: str) -> frozenset[str]:
    """The fixed hop-by-hop names plus any the Connection header lists (RFC 9110 7.6.1)."""
    if not connection:
        return HOP_BY_HOP
    return HOP_BY_HOP | {t.strip().lower() for t in connection.split(",") if t.strip()}


def request_headers(environ: dict) -> dict[str, str]:
    """The client's headers minus hop-by-hop ones (gunicorn has already joined repeats)."""
    dropped = hop_by_hop(environ.get("HTTP_CONNECTION", ""))
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_") or (key in _ENVIRON_HEADERS and value != ""):
            name, lower = _header_name(key)
            if lower not in dropped:
                headers[name] = value
    return headers


def forwarded_headers(request, host: str = "") -> dict[str, str]:
    """What goes upstream: the client's headers, a Host, X-Forwarded-For and -Proto.

    `request` is a proxy.request.ProxyRequest; its header dict is completed in place. A client
    without Host (HTTP/1.0) gets `host`, or else the address it connected to, so the upstream
    can still build URLs back to the client.
    """
    headers = request.headers
    if "Host" not in headers:
        headers["Host"] = host or request.local_netloc()
    remote = request.remote_addr
    if remote:
        prior = headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{prior}, {remote}" if prior else remote
    if "X-Forwarded-Proto" not in headers:
        headers["X-Forwarded-Proto"] = request.scheme
    return headers


def local_netloc(environ: dict) -> str:
    """host:port the client connected to (the bind address may be 0.0.0.0)."""
    try:
        host, port = environ["gunicorn.socket"].getsockname()[:2]
    except (KeyError, AttributeError, OSError, TypeError, ValueError):
        host, port = environ.get("SERVER_NAME", ""), environ.get("SERVER_PORT", "")
    host = str(host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def client_scheme(request) -> str:
    """The scheme the client used: a front proxy's X-Forwarded-Proto, else our own."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    if forwarded in ("http", "https"):
        return forwarded
    return request.scheme


def response_headers(headers) -> list[tuple[str, str]]:
    """The upstream answer's end-to-end header lines, in order (repeats kept)."""
    dropped = hop_by_hop(headers.get("Connection", ""))
    return [(k, v) for k, v in headers.iteritems() if k.lower() not in dropped]


def lookup_headers(headers: Mapping[str, str], *extra: str) -> dict[str, str]:
    """What a lookup on the client's behalf sends: LOOKUP plus `extra` (lower-case names)."""
    names = LOOKUP + extra
    return {k: v for k, v in headers.items() if k.lower() in names}


def observed(headers: Mapping[str, str], names: Collection[str]) -> dict[str, str]:
    """The headers among `names` (lower-case), keyed lower-case: what inference reads."""
    return {k.lower(): v for k, v in headers.items() if k.lower() in names}
