"""A request head, parsed by llhttp (httptools) and checked the way gunicorn checks it.

Only requests that both llhttp and gunicorn's rules find plainly valid are taken here. Anything
unusual (a parse error, a limit reached, a transfer coding other than `chunked`, an Expect other
than 100-continue, underscores in a header name, a repeated Host, an absolute-form target...)
raises `Unusual`, and the worker hands the bytes to gunicorn's own parser, which answers exactly
as the stock worker would: its error, or serving the request through WSGI. So the fast path can
only ever refuse what gunicorn refuses, and tests/test_server_conformance.py checks that it
accepts nothing gunicorn refuses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

import httptools

from sidecar.proxy.headers import HOP_BY_HOP

#: gunicorn.http.message's bounds when a limit is configured as 0 or out of range.
MAX_REQUEST_LINE = 8190
MAX_HEADERS = 32768
DEFAULT_FIELD_SIZE = 8190

#: RFC 9110 5.5: control bytes other than HTAB are refused anywhere in a field (bare CR and
#: LF are llhttp's to refuse); the request line is covered too, which refuses nothing valid.
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: RFC 9112 3.2: a request target is printable ASCII; a fragment is never sent.
_TARGET_BAD = re.compile(rb"[^\x21-\x7e]|#")
#: gunicorn's default secure_scheme_headers, looked up under upper-case names
_SINGLETONS = frozenset(("HOST", "CONTENT-TYPE"))


class Unusual(Exception):
    """Not a request for the fast path: gunicorn's parser decides what it is."""


@dataclass(frozen=True)
class Limits:
    """gunicorn's limit_request_* settings, normalised as gunicorn's Request does."""

    line: int
    fields: int
    field_size: int

    @classmethod
    def from_config(cls, cfg) -> Limits:
        line = cfg.limit_request_line
        if line < 0 or line >= MAX_REQUEST_LINE:
            line = MAX_REQUEST_LINE
        fields = cfg.limit_request_fields
        if fields <= 0 or fields > MAX_HEADERS:
            fields = MAX_HEADERS
        field_size = cfg.limit_request_field_size
        if field_size <= 0:
            field_size = DEFAULT_FIELD_SIZE
        return cls(line, fields, field_size)

    @property
    def head_bytes(self) -> int:
        """The most a head may take: gunicorn's max_buffer_headers after the request line."""
        return (self.line or 1024 * 1024) + 2 + self.fields * (self.field_size + 2) + 4


class Head:
    """A parsed request head; `headers` are end-to-end only, under canonical names."""

    __slots__ = ("method", "target", "path", "query", "version", "headers", "keep_alive",
                 "content_length", "chunked", "expect_continue", "secure")

    def __init__(self):
        self.content_length: str | None = None
        self.chunked = False
        self.expect_continue = False
        self.secure: bool | None = None  # from a trusted front proxy's scheme header


class _Collector:
    __slots__ = ("url", "pairs")

    def __init__(self):
        self.url = b""
        self.pairs: list[tuple[bytes, bytes]] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.pairs.append((name, value))


#: raw header name -> (canonical name, upper-case name); bounded, clients choose names
_NAMES: dict[bytes, tuple[str, str]] = {}


def _name(raw: bytes) -> tuple[str, str]:
    known = _NAMES.get(raw)
    if known is None:
        if b"_" in raw:
            raise Unusual("underscore in a header name")  # gunicorn drops or refuses those
        text = raw.decode("latin-1")
        known = ("-".join(part.capitalize() for part in text.split("-")), text.upper())
        if len(_NAMES) < 1024:
            _NAMES[raw] = known
    return known


def parse_head(data: bytes, limits: Limits, secure_headers: dict[str, str]) -> Head:
    """Parse `data`, a whole head up to and including its blank line.

    `secure_headers` are gunicorn's secure_scheme_headers when the peer is a trusted front
    proxy (forwarded_allow_ips), else empty.
    """
    if data[:1] in (b"\r", b"\n"):
        raise Unusual("empty line before the request line")
    line_end = data.find(b"\r\n")
    if limits.line and line_end > limits.line:
        raise Unusual("request line over the limit")
    if _CONTROL.search(data):
        raise Unusual("control character")
    if len(data) > limits.field_size and any(
            len(line) + 2 > limits.field_size for line in data[line_end + 2:].split(b"\r\n")):
        raise Unusual("header field over the limit")
    found = _Collector()
    parser = httptools.HttpRequestParser(found)
    try:
        parser.feed_data(data)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:  # CONNECT, Upgrade
        raise Unusual(str(exc)) from None
    head = Head()
    version = parser.get_http_version()
    if version == "1.1":
        head.version = (1, 1)
    elif version == "1.0":
        head.version = (1, 0)
    else:
        raise Unusual(f"HTTP/{version}")
    method = parser.get_method()
    if not 3 <= len(method) <= 20:
        raise Unusual("method length")
    head.method = method.decode("ascii")
    url = found.url
    if url[:1] != b"/" or url[:2] == b"//" or _TARGET_BAD.search(url):
        raise Unusual("request target form")
    head.target = target = url.decode("ascii")
    path, _, head.query = target.partition("?")
    head.path = unquote_to_bytes(path).decode("latin-1") if "%" in path else path
    if len(found.pairs) > limits.fields:
        raise Unusual("too many header fields")
    _read_fields(head, found.pairs, secure_headers)
    return head


def _read_fields(head: Head, pairs: list[tuple[bytes, bytes]], secure_headers: dict[str, str]
                 ) -> None:
    headers: dict[str, str] = {}
    seen_singletons: set[str] = set()
    connection: str | None = None
    extra_hop: list[str] = []
    for raw_name, raw_value in pairs:
        name, upper = _name(raw_name)
        value = raw_value.decode("latin-1").strip(" \t")
        lower = name.lower()
        if upper in _SINGLETONS:
            if upper in seen_singletons:
                raise Unusual(f"repeated {name}")
            seen_singletons.add(upper)
        elif upper == "CONTENT-LENGTH":
            head.content_length = value  # llhttp refused repeats and non-digits
        elif upper == "TRANSFER-ENCODING":
            if value.lower() != "chunked" or head.chunked or head.version < (1, 1):
                raise Unusual("transfer coding")
            head.chunked = True
        elif upper == "EXPECT":
            if value.lower() != "100-continue":
                raise Unusual("expectation")  # gunicorn answers 417
            head.expect_continue = head.version >= (1, 1)
        elif upper == "CONNECTION":
            if connection is None:
                connection = value.lower()
            extra_hop.extend(t.strip().lower() for t in value.split(","))
        if upper in secure_headers:
            secure = value == secure_headers[upper]
            if head.secure is not None and head.secure != secure:
                raise Unusual("conflicting scheme headers")  # gunicorn answers 400
            head.secure = secure
        if lower in HOP_BY_HOP:
            continue
        if name in headers:
            headers[name] = f"{headers[name]},{value}"
        else:
            headers[name] = value
    for token in extra_hop:
        if token and token not in HOP_BY_HOP:
            for name in [n for n in headers if n.lower() == token]:
                del headers[name]
    head.headers = headers
    # gunicorn's Message.should_close: the first Connection header decides, else the version
    if connection == "close":
        head.keep_alive = False
    elif connection == "keep-alive":
        head.keep_alive = True
    else:
        head.keep_alive = head.version >= (1, 1)
