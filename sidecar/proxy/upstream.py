"""Keep-alive HTTP/1.1 connections to the upstream registry, and nothing more.

A small client of our own rather than urllib3's pool: on 2 cores the registry and the proxy
share the CPU, so every microsecond per request shows in throughput. urllib3's `urlopen` does
much a proxy does not need (URL re-parsing, Retry and Timeout objects, a poll per checkout,
email-module header parsing); replacing it took the sidecar's CPU per small proxied request
from about 360 to 200 us (bench/README.md).
What a proxy needs is narrow: send a request head as one write, stream the body, parse the
status line and headers (repeats kept in order), frame the response body by HEAD/1xx/204/304,
Transfer-Encoding or Content-Length, and reuse a connection only when its response was read to
the end. Responses offer the part of urllib3's HTTPResponse the proxy uses, and errors are
urllib3 HTTPErrors, so callers catch one exception type whichever client runs.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from collections.abc import Mapping
from urllib.parse import urlsplit

import urllib3

from sidecar import keepalive

#: Read size for response bodies; big reads mean fewer trips through Python per blob.
READ_CHUNK = 256 * 1024
#: Read size for request bodies sent on: gunicorn hands a body of known length over in reads of
#: up to 1 MiB, and smaller reads make it copy its buffer again for each (bench/README.md).
SEND_CHUNK = 1024 * 1024
_MAX_LINE = 65536
_MAX_HEADERS = 200
_NO_BODY_STATUS = frozenset({204, 304})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class UpstreamError(urllib3.exceptions.HTTPError):
    """The upstream could not be reached, or broke the exchange off."""


class Headers(Mapping):
    """Response headers: case-insensitive lookups; `iteritems()` gives every line in order."""

    __slots__ = ("_pairs", "_folded")

    def __init__(self, pairs: list[tuple[str, str]]):
        self._pairs = pairs
        self._folded: dict[str, str] | None = None

    def _fold(self) -> dict[str, str]:
        if self._folded is None:
            folded: dict[str, str] = {}
            for name, value in self._pairs:
                key = name.lower()
                folded[key] = f"{folded[key]}, {value}" if key in folded else value
            self._folded = folded
        return self._folded

    def __getitem__(self, name: str) -> str:
        return self._fold()[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fold()

    def __iter__(self) -> Iterator[str]:
        return iter(self._fold())

    def __len__(self) -> int:
        return len(self._fold())

    def get(self, name: str, default=None):
        return self._fold().get(name.lower(), default)

    def iteritems(self) -> Iterator[tuple[str, str]]:
        return iter(self._pairs)

    def getlist(self, name: str) -> list[str]:
        key = name.lower()
        return [v for k, v in self._pairs if k.lower() == key]


_Connection = keepalive.Connection


class Response:
    """One upstream answer; the body is read through `stream()`, `read()` or `data`."""

    def __init__(self, upstream: Upstream, conn: _Connection, status: int, reason: str,
                 headers: Headers, no_body: bool, keep_alive: bool):
        self.status = status
        self.reason = reason
        self.headers = headers
        self._upstream = upstream
        self._conn: _Connection | None = conn
        self._keep_alive = keep_alive
        self._data: bytes | None = None
        self._chunked = False
        self._left: int | None = None  # bytes of body (or current chunk) left; None: to EOF
        self._done = no_body
        if not no_body:
            coding = headers.get("Transfer-Encoding")
            if coding is not None:
                self._chunked = coding.replace(" ", "").lower().endswith("chunked")
                if not self._chunked:
                    self._keep_alive = False  # read to EOF (RFC 9112 6.3)
            else:
                length = headers.get("Content-Length")
                if length is not None:
                    try:
                        self._left = int(length.split(",")[0])
                    except ValueError:
                        raise UpstreamError(f"invalid Content-Length {length!r}") from None
                    self._done = self._left == 0
                else:
                    self._keep_alive = False
        if self._done:
            self._chunked = False

    # -- body ------------------------------------------------------------------------------
    def stream(self, amt: int = READ_CHUNK, decode_content: bool | None = None
               ) -> Iterator[bytes]:
        """The body as it arrives, in pieces of at most `amt` bytes (never decoded)."""
        if self._data is not None:
            if self._data:
                yield self._data
            return
        while True:
            data = self._read_some(amt)
            if not data:
                return
            yield data

    def read(self, amt: int | None = None) -> bytes:
        if amt is not None:
            return self._read_some(amt)
        return self.data

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = b"".join(self.stream(READ_CHUNK))
            self.release_conn()
        return self._data

    def _read_some(self, amt: int) -> bytes:
        if self._done:
            return b""
        conn = self._conn
        if conn is None:
            raise UpstreamError("response body read after the connection was closed")
        try:
            if self._chunked:
                data = self._read_chunked(conn, amt)
            elif self._left is None:
                data = conn.rfile.read1(amt)
                if not data:
                    self._finish()
            else:
                data = conn.rfile.read1(min(amt, self._left))
                if not data:
                    self.close()
                    raise UpstreamError(
                        f"upstream closed the connection with {self._left} body bytes unsent")
                self._left -= len(data)
                if self._left == 0:
                    self._finish()
        except OSError as exc:
            self.close()
            raise UpstreamError(f"reading the upstream response failed: {exc}") from exc
        return data

    def _read_chunked(self, conn: _Connection, amt: int) -> bytes:
        if not self._left:
            line = conn.rfile.readline(_MAX_LINE)
            if not line.endswith(b"\n"):
                self.close()
                raise UpstreamError("upstream chunked body ended early")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close()
                raise UpstreamError(f"bad chunk size line {line[:40]!r}") from None
            if size == 0:
                while conn.rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers: not forwarded
                self._finish()
                return b""
            self._left = size
        data = conn.rfile.read1(min(amt, self._left))
        if not data:
            self.close()
            raise UpstreamError("upstream chunked body ended early")
        self._left -= len(data)
        if self._left == 0 and conn.rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n"):
            self.close()
            raise UpstreamError("chunk not followed by CRLF")
        return data

    def _finish(self) -> None:
        self._done = True
        self.release_conn()

    # -- connection ------------------------------------------------------------------------
    def release_conn(self) -> None:
        """Give the connection back if the body was read to its end; otherwise close it."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._done and self._keep_alive:
            self._upstream._checkin(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Drop the connection (an unread body must not meet the next request)."""
        self._keep_alive = False
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def isclosed(self) -> bool:
        return self._conn is None


class Upstream:
    def __init__(self, url: str, *, connect_timeout: float = 5.0, read_timeout: float = 300.0,
                 pool_size: int = 64, verify_tls: bool = True):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http(s) URL, got {url!r}")
        self.url = url.rstrip("/")
        self.netloc = parts.netloc
        self._address = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._pool_size = pool_size
        self._idle: list[_Connection] = []
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._tls = ssl.create_default_context()
            if not verify_tls:
                self._tls.check_hostname = False
                self._tls.verify_mode = ssl.CERT_NONE

    # -- pool ------------------------------------------------------------------------------
    def _connect(self) -> _Connection:
        try:
            sock = socket.create_connection(self._address, timeout=self._connect_timeout)
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {self.netloc}: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self._read_timeout)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self._address[0])
        except OSError as exc:
            sock.close()
            raise UpstreamError(f"cannot connect to {self.netloc}: {exc}") from exc
        return _Connection(sock, READ_CHUNK)

    def _checkin(self, conn: _Connection) -> None:
        if len(self._idle) < self._pool_size:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- requests --------------------------------------------------------------------------
    def request(self, method: str, target: str, headers: dict[str, str], body=None,
                chunked: bool = False, preload: bool = False) -> Response:
        """Send one request; `body` is None, bytes, a file-like (read) or chunks (chunked).

        With `preload` the body is read at once (into `.data`) and the connection returned.
        A request without a streamed body is retried once on a fresh connection when a reused
        one turns out closed by the server; one with a streamed body gets a checked connection.
        """
        head, body = _request_head(method, target, headers, body, chunked, self.netloc)
        replayable = body is None or isinstance(body, bytes)
        while True:
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else self._connect()
            if reused and not replayable and conn.dropped():
                conn.close()
                continue
            try:
                response = self._exchange(conn, method, head, body, chunked)
            except (_Stale, OSError) as exc:
                conn.close()
                if reused and replayable and not isinstance(exc, TimeoutError):
                    continue  # the server had closed this idle connection: use another
                if isinstance(exc, _Stale):
                    raise UpstreamError(f"upstream {self.netloc} closed the connection "
                                        "without an answer") from None
                raise UpstreamError(f"request to {self.netloc} failed: {exc}") from exc
            except UpstreamError:
                conn.close()
                raise
            if preload:
                response.data  # noqa: B018 - reads the body and frees the connection
            return response

    def _exchange(self, conn: _Connection, method: str, head: bytes, body, chunked: bool
                  ) -> Response:
        sock = conn.sock
        if body is None:
            sock.sendall(head)
        elif isinstance(body, bytes):
            sock.sendall(head + body if len(body) <= 65536 else head)
            if len(body) > 65536:
                sock.sendall(body)
        else:
            sock.sendall(head)
            try:
                _send_body(sock, body, chunked)
            except (BrokenPipeError, ConnectionResetError):
                # The registry may answer early (401, 404) and stop reading: report its answer.
                return self._read_head(conn, method, keep_alive=False)
        return self._read_head(conn, method)

    def _read_head(self, conn: _Connection, method: str, keep_alive: bool = True) -> Response:
        rfile = conn.rfile
        while True:
            line = rfile.readline(_MAX_LINE)
            if not line:
                raise _Stale("no response")
            parts = line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
                raise UpstreamError(f"bad status line {line[:80]!r}")
            try:
                status = int(parts[1])
            except ValueError:
                raise UpstreamError(f"bad status line {line[:80]!r}") from None
            reason = parts[2].strip().decode("latin-1") if len(parts) > 2 else ""
            pairs = _read_headers(rfile)
            if 100 <= status < 200 and status != 101:
                continue  # interim (100 Continue): the final answer follows
            break
        headers = Headers(pairs)
        connection = headers.get("Connection", "").lower()
        if parts[0] == b"HTTP/1.0":
            keep_alive = keep_alive and "keep-alive" in connection
        elif "close" in connection:
            keep_alive = False
        no_body = method == "HEAD" or status in _NO_BODY_STATUS or status < 200
        return Response(self, conn, status, reason, headers, no_body, keep_alive)

    def healthy(self) -> bool:
        """The upstream answers its API root (200, or 401 when it wants credentials)."""
        try:
            response = self.request("GET", "/v2/", {"Host": self.netloc}, preload=True)
        except urllib3.exceptions.HTTPError:
            return False
        return response.status in (200, 401)


class _Stale(Exception):
    """A connection gave no answer at all: on a reused one, the server had closed it."""


def _read_headers(rfile) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    while True:
        line = rfile.readline(_MAX_LINE)
        if line in (b"\r\n", b"\n"):
            return pairs
        if not line:
            raise UpstreamError("upstream closed the connection inside the response headers")
        if not line.endswith(b"\n"):
            raise UpstreamError("upstream response header line too long")
        if line[0] in b" \t" and pairs:  # obsolete line folding
            name, value = pairs[-1]
            pairs[-1] = (name, f"{value} {line.strip().decode('latin-1')}")
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise UpstreamError(f"bad upstream header line {line[:80]!r}")
        pairs.append((name.decode("latin-1").strip(), value.strip().decode("latin-1")))
        if len(pairs) > _MAX_HEADERS:
            raise UpstreamError("too many upstream response headers")


def _request_head(method: str, target: str, headers: dict[str, str], body, chunked: bool,
                  netloc: str) -> tuple[bytes, object]:
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    has_host = has_length = has_coding = False
    for name, value in headers.items():
        low = name.lower()
        if low == "host":
            has_host = True
        elif low == "content-length":
            has_length = True
        elif low == "transfer-encoding":
            has_coding = True
        lines.append(f"{name}: {value}\r\n")
    if not has_host:
        lines.append(f"Host: {netloc}\r\n")
    if isinstance(body, bytearray | memoryview):
        body = bytes(body)
    if chunked:
        if not has_coding:
            lines.append("Transfer-Encoding: chunked\r\n")
    elif isinstance(body, bytes):
        if not has_length:
            lines.append(f"Content-Length: {len(body)}\r\n")
    elif body is None and method in _BODY_METHODS and not has_length:
        lines.append("Content-Length: 0\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1"), body


def _send_body(sock: socket.socket, body, chunked: bool) -> None:
    if hasattr(body, "read"):
        def pieces() -> Iterator[bytes]:
            while data := body.read(SEND_CHUNK):
                yield data
        source = pieces()
    else:
        source = body
    for data in source:
        if not data:
            continue
        if chunked:
            sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            sock.sendall(data)
    if chunked:
        sock.sendall(b"0\r\n\r\n")
