"""A lean HTTP/1.1 client for webhooks: POST a body held in memory, read a bounded answer.

Why our own rather than requests: one webhook through requests cost about 760 us of CPU
(PreparedRequest, the session merge, urllib3's pool, connection and Retry layers, http.client's
email-module header parsing), most of a delivery (bench/deliveries.py, bench/README.md). A
delivery needs a narrow slice of that, the same slice proxy/upstream.py needs for the registry.

What the requests-based sender did, and this client keeps:
- Connections kept alive per (scheme, host, port, TLS verification), at most 10 idle for each
  of the 10 most recently used endpoints (requests' pool sizes); an answer is read to its end
  (up to `limit` bytes) so that its connection can carry the next webhook.
- One timeout for the connect, the TLS handshake and each read (requests' `timeout=`).
- TLS checked against certifi's CA bundle, which requests uses, with the host name of the URL
  (SNI and certificate), unless the target says `skip_cert_verify`.
- Redirects followed as requests follows them: at most 30; 301/302/303 turn the POST into a
  body-less GET, 307/308 repeat it; the Authorization header is dropped when the host, the
  scheme or the port changes (http -> https on the default ports excepted), cookies never.
- Every new connection, each redirect hop's included, resolves the host once, asks the address
  policy (dispatch.addresses, `network.allow_private_network_access`) about every address and
  connects to exactly an allowed one (no DNS rebinding between the check and the connect).
- No proxy and nothing from the environment (the old sender turned both off: a proxy must not
  see a target's secret); the default headers requests sent (Accept-Encoding gzip/deflate,
  Accept, Connection); a gzip or deflate answer is decoded for its excerpt.

New: a kept-alive connection the receiver has closed is noticed before the request is written
(a zero-wait poll), and a reused connection whose write fails is replaced once by a fresh one.
A request that was written is never written again by the client: a receiver that took it and
closed without answering may have acted on it, so that attempt fails and the retry schedule
decides (a webhook must not be delivered twice by one attempt).

Sockets come from the `socket` and `ssl` modules at call time, so gevent's monkey-patching
(gunicorn's gevent workers) makes every wait here cooperative.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
import threading
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote
from urllib.parse import unquote
from urllib.parse import urljoin
from urllib.parse import urlsplit

from sidecar import keepalive
from sidecar.dispatch.addresses import AddressPolicy
from sidecar.dispatch.addresses import AddressRefused
from sidecar.dispatch.render import USER_AGENT

#: requests' limit (`Session.max_redirects`).
MAX_REDIRECTS = 30
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
#: What requests' session sent with every request, in its order; a request's own header of
#: the same name takes the place of the default (dispatch.render always sets User-Agent).
DEFAULT_HEADERS: tuple[tuple[str, str], ...] = (
    ("User-Agent", USER_AGENT), ("Accept-Encoding", "gzip, deflate"), ("Accept", "*/*"),
    ("Connection", "keep-alive"))
#: requests' pool sizes: idle connections kept per endpoint, endpoints kept.
IDLE_PER_ENDPOINT = 10
ENDPOINTS = 10

_DEFAULT_PORTS = {"http": 80, "https": 443}
_NO_BODY_STATUS = frozenset({204, 304})
_MAX_LINE = 65536
_MAX_HEADERS = 200
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"^[ \t]|[\r\n\x00]")
#: requests' `requote_uri`: characters left as they are (escapes included).
_URI_SAFE = "!#$%&'()*+,/:;=?@[]~"
_PURGED_ON_GET = ("content-length", "content-type", "transfer-encoding")


class ClientError(Exception):
    """The attempt got no HTTP answer; the message is the reason recorded for it (the status
    page and the attempt history show it), in the words the old sender used:
    `timeout after Ns`, `connection failed: ...`, `TLS error: ...`, `request failed: ...`."""


@dataclass(frozen=True, slots=True)
class Reply:
    """The final answer: status, headers (lower-cased names, repeats joined by ", "), and the
    first bytes of the body, decoded when the receiver compressed it."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class _Url:
    url: str
    scheme: str
    host: str  # no brackets; IDNA-encoded
    port: int
    explicit_port: int | None
    host_header: str
    target: str  # path and query, as sent on the request line
    basic_auth: str | None  # from user:password@ in the URL (requests turns it into Basic)


def _requote(text: str) -> str:
    return quote(text, safe=_URI_SAFE)


def parse_url(url: str) -> _Url:
    """Split a webhook URL once; ClientError says what is wrong with it, without the URL
    (its user info and query may hold a secret, and the message is shown on the status page)."""
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        host = parts.hostname
        explicit_port = parts.port
    except ValueError as exc:
        raise ClientError(f"request failed: invalid URL: {exc}") from None
    if scheme not in _DEFAULT_PORTS:
        raise ClientError(f"request failed: not an http(s) URL (scheme {scheme!r})")
    if not host:
        raise ClientError("request failed: invalid URL: no host")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ClientError("request failed: invalid host name in the URL") from None
    port = explicit_port or _DEFAULT_PORTS[scheme]
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == _DEFAULT_PORTS[scheme] else f"{shown}:{port}"
    target = _requote(parts.path or "/")
    if parts.query:
        target += "?" + _requote(parts.query)
    basic = None
    if parts.username is not None or parts.password is not None:
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        basic = "Basic " + base64.b64encode(pair.encode("latin-1", "replace")).decode("ascii")
    return _Url(url, scheme, host, port, explicit_port, host_header, target, basic)


def _strips_auth(old: _Url, new: _Url) -> bool:
    """requests' `should_strip_auth`: keep Authorization only for the same origin."""
    if old.host != new.host:
        return True
    if (old.scheme == "http" and old.explicit_port in (80, None)
            and new.scheme == "https" and new.explicit_port in (443, None)):
        return False
    changed_port = old.explicit_port != new.explicit_port
    changed_scheme = old.scheme != new.scheme
    default_port = (_DEFAULT_PORTS[old.scheme], None)
    if not changed_scheme and old.explicit_port in default_port \
            and new.explicit_port in default_port:
        return False
    return changed_port or changed_scheme


_Conn = keepalive.Connection


class _NotSent(Exception):
    """Writing the request to a reused connection failed: the receiver had closed it."""


class _NoAnswer(Exception):
    """The connection ended before the first byte of an answer."""


_Key = tuple[str, str, int, bool]


class WebhookClient:
    """POSTs webhooks over kept-alive connections; safe to share between threads/greenlets.

    `timeout` (seconds) bounds the connect, the TLS handshake and each read; `addresses` says
    where any connection, redirect hops included, may go; `limit` is how much of an answer's
    body is read: an answer that ends within it leaves its connection for the next request.
    """

    def __init__(self, timeout: float, addresses: AddressPolicy, limit: int = 65536 + 512,
                 excerpt: int = 512):
        self.timeout = timeout
        self._addresses = addresses
        self._limit = limit
        self._excerpt = excerpt
        self._idle: OrderedDict[_Key, list[_Conn]] = OrderedDict()
        self._lock = threading.Lock()
        self._tls: dict[bool, ssl.SSLContext] = {}
        self._urls: dict[str, _Url] = {}
        self._family = socket.AF_UNSPEC if socket.has_ipv6 else socket.AF_INET

    # -- the request ----------------------------------------------------------------------
    def post(self, url: str, body: bytes, headers: Mapping[str, str],
             verify_tls: bool = True) -> Reply:
        """Send `body` to `url` and follow redirects; the final answer, or ClientError /
        AddressRefused (a connection the policy forbids: final, nothing was sent there)."""
        where = self._url(url)
        fields: dict[str, tuple[str, str]] = {k.lower(): (k, v) for k, v in DEFAULT_HEADERS}
        for name, value in headers.items():
            fields[name.lower()] = (name, value)
        if where.basic_auth is not None:
            fields["authorization"] = ("Authorization", where.basic_auth)
        method, payload = "POST", body
        for hop in range(MAX_REDIRECTS + 1):
            status, answer_headers, data = self._exchange(where, method, fields, payload,
                                                          verify_tls)
            location = answer_headers.get("location") if status in REDIRECT_CODES else None
            if location is None:
                return Reply(status, answer_headers, self._decoded(answer_headers, data))
            if hop == MAX_REDIRECTS:
                raise ClientError(f"request failed: Exceeded {MAX_REDIRECTS} redirects.")
            following = self._url(self._redirect_url(where, location))
            if status == 303 or status == 302 or (status == 301 and method == "POST"):
                method = "GET"
            if status not in (307, 308):
                for name in _PURGED_ON_GET:
                    fields.pop(name, None)
                payload = None
            fields.pop("cookie", None)
            if "authorization" in fields and _strips_auth(where, following):
                del fields["authorization"]
            where = following
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, OrderedDict()
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def _url(self, url: str) -> _Url:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = parse_url(url)
            if len(self._urls) >= 256:
                self._urls.clear()
            self._urls[url] = parsed
        return parsed

    @staticmethod
    def _redirect_url(current: _Url, location: str) -> str:
        try:  # requests: a Location sent as UTF-8 arrives decoded as latin-1
            location = location.encode("latin-1").decode("utf-8")
        except UnicodeError:
            pass
        if location.startswith("//"):
            location = f"{current.scheme}:{location}"
        if not urlsplit(location).netloc:
            return urljoin(current.url, _requote(location))
        return _requote(location)

    # -- one exchange ---------------------------------------------------------------------
    def _exchange(self, where: _Url, method: str, fields: dict[str, tuple[str, str]],
                  body: bytes | None, verify_tls: bool) -> tuple[int, dict[str, str], bytes]:
        request = _request_bytes(where, method, fields, body)
        key: _Key = (where.scheme, where.host, where.port, verify_tls)
        try:
            conn = self._checkout(key)
            if conn is not None:
                try:
                    return self._over(conn, key, request, method, reused=True)
                except _NotSent:
                    pass  # the receiver had closed it: once more, on a new connection
            conn = self._connect(where, verify_tls)
            return self._over(conn, key, request, method, reused=False)
        except (ClientError, AddressRefused):
            raise
        except _NoAnswer:
            raise ClientError("connection failed: the receiver closed the connection "
                              "without answering") from None
        except ssl.SSLError as exc:
            if "timed out" in str(exc):  # gevent's SSL timeouts are SSLErrors
                raise ClientError(f"timeout after {self.timeout:g}s") from None
            raise ClientError(f"TLS error: {_tls_reason(exc)}") from None
        except TimeoutError:
            raise ClientError(f"timeout after {self.timeout:g}s") from None
        except OSError as exc:
            raise ClientError(f"connection failed: {exc}"[:300]) from None

    def _over(self, conn: _Conn, key: _Key, request: bytes, method: str, reused: bool
              ) -> tuple[int, dict[str, str], bytes]:
        try:
            conn.sock.sendall(request)
        except OSError as exc:
            conn.close()
            if reused and not isinstance(exc, TimeoutError):
                raise _NotSent() from exc
            raise
        try:
            status, headers, data, reusable = _read_answer(conn.rfile, method, self._limit)
        except BaseException:
            conn.close()
            raise
        if reusable:
            self._checkin(key, conn)
        else:
            conn.close()
        return status, headers, data

    # -- connections ----------------------------------------------------------------------
    def _checkout(self, key: _Key) -> _Conn | None:
        while True:
            with self._lock:
                conns = self._idle.get(key)
                if not conns:
                    return None
                conn = conns.pop()
            if not conn.dropped():
                return conn
            conn.close()  # closed by the receiver while idle: nothing was sent on it

    def _checkin(self, key: _Key, conn: _Conn) -> None:
        surplus: list[_Conn] = []
        with self._lock:
            conns = self._idle.get(key)
            if conns is None:
                conns = self._idle[key] = []
            else:
                self._idle.move_to_end(key)
            if len(conns) < IDLE_PER_ENDPOINT:
                conns.append(conn)
            else:
                surplus.append(conn)
            while len(self._idle) > ENDPOINTS:
                surplus.extend(self._idle.popitem(last=False)[1])
        for extra in surplus:
            extra.close()

    def _connect(self, where: _Url, verify_tls: bool) -> _Conn:
        """Resolve once, keep the addresses the policy allows, connect to one of exactly
        those (the next on failure, as socket.create_connection does)."""
        infos = socket.getaddrinfo(where.host, where.port, self._family, socket.SOCK_STREAM)
        allowed: list[tuple] = []
        refused: list[str] = []
        for family, kind, proto, _name, sockaddr in infos:
            reason = self._addresses.refusal(str(sockaddr[0]))
            if reason:
                refused.append(reason)
            elif all(sockaddr != known[3] for known in allowed):
                allowed.append((family, kind, proto, sockaddr))
        if not allowed:
            raise AddressRefused(where.host, refused)
        error: OSError | None = None
        for family, kind, proto, sockaddr in allowed:
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(self.timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.connect(sockaddr)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            break
        else:
            assert error is not None
            raise error
        if where.scheme == "https":
            try:
                sock = self._context(verify_tls).wrap_socket(sock, server_hostname=where.host)
            except BaseException:
                sock.close()
                raise
        return _Conn(sock, 16384)

    def _context(self, verify: bool) -> ssl.SSLContext:
        """urllib3's client context (TLS 1.2+, no compression or tickets, ALPN http/1.1),
        made on first use so that it is gevent's when the process is patched."""
        context = self._tls.get(verify)
        if context is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_TICKET
            context.post_handshake_auth = True
            context.set_alpn_protocols(["http/1.1"])
            if verify:
                context.check_hostname = True
                context.verify_mode = ssl.CERT_REQUIRED
                _load_trust(context)
            else:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._tls[verify] = context
        return context

    def _decoded(self, headers: dict[str, str], data: bytes) -> bytes:
        """The first `excerpt` bytes of the body as the receiver meant them."""
        coding = headers.get("content-encoding", "").strip().lower()
        if coding in ("gzip", "x-gzip", "deflate") and data:
            try:
                if coding == "deflate":
                    try:
                        return zlib.decompressobj().decompress(data, self._excerpt)
                    except zlib.error:
                        return zlib.decompressobj(-zlib.MAX_WBITS).decompress(data,
                                                                              self._excerpt)
                return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, self._excerpt)
            except zlib.error:
                return b""
        return data[:self._excerpt]


def _load_trust(context: ssl.SSLContext) -> None:
    try:
        import certifi
    except ImportError:  # requests depends on it; without it, the system's store
        context.load_default_certs()
    else:
        context.load_verify_locations(certifi.where())


def _tls_reason(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    return str(exc.reason or exc)[:300]


def _request_bytes(where: _Url, method: str, fields: dict[str, tuple[str, str]],
                   body: bytes | None) -> bytes:
    lines = [f"{method} {where.target} HTTP/1.1"]
    if "host" not in fields:
        lines.append(f"Host: {where.host_header}")
    for low, (name, value) in fields.items():
        if low in ("content-length", "transfer-encoding"):
            continue  # the body's own length is sent
        if _TOKEN.fullmatch(name) is None or _BAD_VALUE.search(value) is not None:
            # never the value: it may be a secret
            raise ClientError(f"request failed: invalid header {name[:60]!r} (a line break, "
                              "NUL or leading space in its value, or a bad name)")
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("\r\n")
    try:
        head = "\r\n".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        raise ClientError("request failed: a header holds characters outside latin-1") from None
    return head + body if body else head


def _read_answer(rfile, method: str, limit: int) -> tuple[int, dict[str, str], bytes, bool]:
    """Status, headers, up to `limit` bytes of body, and whether the connection may be reused
    (the body ended within the limit and neither side asked to close)."""
    while True:
        line = rfile.readline(_MAX_LINE)
        if not line:
            raise _NoAnswer()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ClientError(f"connection failed: bad status line {line[:80]!r}")
        try:
            status = int(parts[1])
        except ValueError:
            raise ClientError(f"connection failed: bad status line {line[:80]!r}") from None
        headers = _read_headers(rfile)
        if not 100 <= status < 200 or status == 101:
            break  # an interim answer (100 Continue): the final one follows
    keep = headers.get("connection", "").lower()
    reusable = ("keep-alive" in keep) if parts[0] == b"HTTP/1.0" else ("close" not in keep)
    if method == "HEAD" or status in _NO_BODY_STATUS or status < 200:
        return status, headers, b"", reusable
    try:
        data, complete = _read_body(rfile, headers, limit)
    except (OSError, ValueError, ClientError):
        return status, headers, b"", False  # the status is what matters
    return status, headers, data, reusable and complete


def _read_headers(rfile) -> dict[str, str]:
    headers: dict[str, str] = {}
    count = 0
    last = ""
    while True:
        line = rfile.readline(_MAX_LINE)
        if line in (b"\r\n", b"\n"):
            return headers
        if not line:
            raise _NoAnswer() if not headers else ClientError(
                "connection failed: the receiver closed the connection inside its headers")
        if not line.endswith(b"\n"):
            raise ClientError("connection failed: a response header line is too long")
        count += 1
        if count > _MAX_HEADERS:
            raise ClientError("connection failed: too many response headers")
        if line[0] in b" \t" and last:  # obsolete line folding
            headers[last] = f"{headers[last]} {line.strip().decode('latin-1')}"
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise ClientError(f"connection failed: bad response header {line[:80]!r}")
        last = name.strip().decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        headers[last] = f"{headers[last]}, {text}" if last in headers else text


def _read_body(rfile, headers: dict[str, str], limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether that was all of it (framing intact)."""
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if not coding.replace(" ", "").lower().endswith("chunked"):
            data = rfile.read(limit)
            return data, False  # framed by the end of the connection
        return _read_chunked(rfile, limit)
    length = headers.get("content-length")
    if length is None:
        data = rfile.read(limit + 1)
        return data[:limit], False  # until the connection ends: never reusable
    size = int(length.split(",")[0])
    if size < 0:
        raise ValueError("negative Content-Length")
    data = rfile.read(min(size, limit))
    return data, len(data) == size


def _read_chunked(rfile, limit: int) -> tuple[bytes, bool]:
    pieces: list[bytes] = []
    total = 0
    while True:
        line = rfile.readline(_MAX_LINE)
        if not line.endswith(b"\n"):
            return b"".join(pieces), False
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (trailer := rfile.readline(_MAX_LINE)) not in (b"\r\n", b"\n"):
                if not trailer:
                    return b"".join(pieces), False
            return b"".join(pieces), True
        if total + size > limit:
            pieces.append(rfile.read(limit - total))
            return b"".join(pieces), False
        chunk = rfile.read(size)
        pieces.append(chunk)
        total += len(chunk)
        if len(chunk) < size or rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n"):
            return b"".join(pieces), False
