"""The client's request as both proxies read it, whichever server loop parsed it.

The sidecar's own gunicorn worker (sidecar/server) builds one straight from the parsed request
head, with no WSGI environ; `from_environ` builds the same from a WSGI environ (the stock
gunicorn worker, tests). One proxy implementation serves both.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from sidecar.proxy.headers import local_netloc
from sidecar.proxy.headers import request_headers


class ProxyRequest:
    """What the proxy needs of a request: nothing parsed twice, nothing copied into an environ.

    `headers` are the client's end-to-end headers (hop-by-hop ones already dropped) under their
    canonical names (`Content-Type`), repeats joined with ", ". `body` is a file-like `read(n)`
    of the request body (None when there is none); `content_length` is its declared length as
    sent (the header's text, None without one), `chunked` whether it came chunked.
    """

    __slots__ = ("method", "path", "query", "target", "headers", "remote_addr", "scheme",
                 "body", "content_length", "chunked", "_local")

    def __init__(self, method: str, path: str, query: str, target: str,
                 headers: dict[str, str], *, remote_addr: str = "", scheme: str = "http",
                 body=None, content_length: str | None = None, chunked: bool = False,
                 local: Callable[[], str] | None = None):
        self.method = method
        self.path = path or "/"
        self.query = query
        self.target = target
        self.headers = headers
        self.remote_addr = remote_addr
        self.scheme = scheme
        self.body = body
        self.content_length = content_length
        self.chunked = chunked
        self._local = local

    def local_netloc(self) -> str:
        """host:port the client connected to (for a client that sent no Host)."""
        return self._local() if self._local is not None else ""

    @classmethod
    def from_environ(cls, environ: dict) -> ProxyRequest:
        path = environ.get("PATH_INFO", "") or "/"
        query = environ.get("QUERY_STRING", "")
        target = environ.get("RAW_URI") or quote(path) + (f"?{query}" if query else "")
        length = environ.get("CONTENT_LENGTH") or None
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        return cls(environ["REQUEST_METHOD"], path, query, target, request_headers(environ),
                   remote_addr=environ.get("REMOTE_ADDR", ""),
                   scheme=environ.get("wsgi.url_scheme", "http"),
                   body=environ.get("wsgi.input"), content_length=length, chunked=chunked,
                   local=lambda: local_netloc(environ))
