"""The client connection's read side and the request bodies read from it.

One buffer per connection holds what was read ahead of the current request (a pipelined next
request, the start of a body). Bodies are framed the way gunicorn frames them: Content-Length
exactly, or chunked with gunicorn's checks on chunk-size lines, extensions, terminators and
trailers, raising gunicorn's own errors so the worker answers them as gunicorn does.
"""

from __future__ import annotations

import re

from gunicorn.http.errors import ChunkMissingTerminator
from gunicorn.http.errors import InvalidChunkExtension
from gunicorn.http.errors import InvalidChunkSize
from gunicorn.http.errors import InvalidHeader
from gunicorn.http.errors import LimitRequestHeaders

#: Largest read handed out at once (gunicorn's MAX_READ_STEP).
MAX_READ = 1024 * 1024
_RECV = 65536
#: RFC 9112 7.1.1 chunk extensions (gunicorn.http.body's pattern).
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_CHUNK_EXT = re.compile(rb"(?:[ \t]*;[ \t]*" + _TOKEN
                        + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*")
_HEX = frozenset(b"0123456789abcdefABCDEF")
#: 16 hex digits is 2**64: no body is larger; more is an attack on the parser's arithmetic.
_MAX_SIZE_DIGITS = 16
_TRAILER_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class ClientClosed(ConnectionResetError):
    """The client closed the connection in the middle of a body."""


class Reader:
    """A socket and the bytes read from it but not consumed yet."""

    __slots__ = ("sock", "buf")

    def __init__(self, sock, buf: bytes = b""):
        self.sock = sock
        self.buf = buf

    def recv(self, size: int) -> bytes:
        """Up to `size` bytes: what is buffered first, else one recv (b"" at EOF)."""
        buf = self.buf
        if buf:
            if len(buf) <= size:
                self.buf = b""
                return buf
            self.buf = buf[size:]
            return buf[:size]
        return self.sock.recv(size)

    def line(self, limit: int, error) -> bytes:
        """One CRLF-terminated line without its CRLF; `error(text)` is raised past `limit`."""
        buf = self.buf
        start = 0
        while True:
            end = buf.find(b"\r\n", start)
            if end >= 0:
                self.buf = buf[end + 2:]
                return buf[:end]
            if len(buf) > limit:
                raise error(b"line over %d bytes with no terminator" % limit)
            start = max(0, len(buf) - 1)
            data = self.sock.recv(_RECV)
            if not data:
                raise ClientClosed("client closed inside a chunked body")
            buf += data
            self.buf = buf


class _Body:
    """wsgi.input's methods over `_read_some`; a line read too far is kept in `_pending`."""

    __slots__ = ("_pending",)

    def __init__(self):
        self._pending = b""

    def _read_some(self, size: int) -> bytes:
        raise NotImplementedError

    def read(self, size: int | None = -1) -> bytes:
        if self._pending:
            data = self._pending
            if size is not None and 0 <= size < len(data):
                self._pending = data[size:]
                return data[:size]
            self._pending = b""
            if size is None or size < 0:
                return data + self.read()
            return data
        if size is None or size < 0:
            return b"".join(iter(lambda: self._read_some(MAX_READ), b""))
        return self._read_some(min(size, MAX_READ))

    def readline(self, size: int | None = -1) -> bytes:
        """A line (only Flask's rare form parsing reads lines; slow but bounded by `size`)."""
        out = bytearray()
        limit = size if size is not None and size >= 0 else 1 << 62
        while len(out) < limit:
            data = self.read(min(limit - len(out), 8192))
            if not data:
                break
            end = data.find(b"\n")
            if end >= 0:
                out += data[:end + 1]
                self._pending = data[end + 1:] + self._pending
                break
            out += data
        return bytes(out)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(self)

    def __iter__(self):
        return iter(self.readline, b"")


class LengthBody(_Body):
    """A body of known length (wsgi.input-like: read, readline, iteration)."""

    __slots__ = ("_reader", "left")

    def __init__(self, reader: Reader, length: int):
        super().__init__()
        self._reader = reader
        self.left = length

    def _read_some(self, size: int) -> bytes:
        if self.left <= 0 or size == 0:
            return b""
        data = self._reader.recv(min(size, self.left))
        self.left -= len(data)
        if not data:
            self.left = -1  # cut short: the connection is not reusable
        return data

    def finish(self) -> bool:
        """Read what the application left unread; False if the client went away."""
        while self.left > 0:
            if not self._read_some(MAX_READ):
                return False
        return self.left == 0


class ChunkedBody(_Body):
    """A chunked body, decoded; trailers are checked and dropped (as gunicorn does)."""

    __slots__ = ("_reader", "_left", "_done", "_line_limit", "_trailer_limit")

    def __init__(self, reader: Reader, line_limit: int, trailer_limit: int):
        super().__init__()
        self._reader = reader
        self._left = 0  # bytes left in the current chunk
        self._done = False
        self._line_limit = line_limit
        self._trailer_limit = trailer_limit

    def _read_some(self, size: int) -> bytes:
        if self._done or size == 0:
            return b""
        if self._left == 0:
            self._left = self._chunk_size()
            if self._left == 0:
                self._trailers()
                self._done = True
                return b""
        data = self._reader.recv(min(size, self._left))
        if not data:
            raise ClientClosed("client closed inside a chunked body")
        self._left -= len(data)
        if self._left == 0:
            reader = self._reader
            while len(reader.buf) < 2:
                more = reader.sock.recv(_RECV)
                if not more:
                    raise ClientClosed("client closed inside a chunked body")
                reader.buf += more
            if reader.buf[:2] != b"\r\n":
                raise ChunkMissingTerminator(reader.buf[:2])
            reader.buf = reader.buf[2:]
        return data

    def _chunk_size(self) -> int:
        line = self._reader.line(self._line_limit, InvalidChunkSize)
        size, semicolon, extension = line.partition(b";")
        if semicolon:
            if b"\r" in extension:
                raise InvalidChunkExtension("bare CR not allowed")
            size = size.rstrip(b" \t")
        if not size or any(c not in _HEX for c in size) or len(size) > _MAX_SIZE_DIGITS:
            raise InvalidChunkSize(size)
        if semicolon and not _CHUNK_EXT.fullmatch(b";" + extension):
            raise InvalidChunkExtension("invalid chunk extension")
        return int(size, 16)

    def _trailers(self) -> None:
        reader = self._reader
        total = 0
        while True:
            line = reader.line(self._trailer_limit, LimitRequestHeaders)
            if not line:
                return
            total += len(line) + 2
            if total > self._trailer_limit:
                raise LimitRequestHeaders("limit request trailer section size")
            if b"\n" in line or line[:1] in b" \t" or line.find(b":") <= 0 \
                    or _TRAILER_CONTROL.search(line):
                raise InvalidHeader("trailer")

    def finish(self) -> bool:
        """Read what the application left unread; False if the client went away."""
        try:
            while self._read_some(MAX_READ):
                pass
        except ClientClosed:
            return False
        return True
