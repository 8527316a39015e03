"""Writing one response: WSGI's start_response, the head and first body bytes in one send.

gunicorn writes the head and each body piece with a send() apiece, and formats its default
headers per response; on 2 cores every such call shows in a small proxied request's cost.
"""

from __future__ import annotations

import time
from email.utils import formatdate

#: A first body piece up to this size goes out with the head in one send (a copy of it is
#: cheaper than a second syscall); larger ones are sent on their own.
JOIN_LIMIT = 64 * 1024
_OURS = frozenset(("connection", "transfer-encoding", "keep-alive"))
_date_second = 0
_date_line = ""


def date_line() -> str:
    """`Date: ...\\r\\n`, formatted once a second."""
    global _date_second, _date_line
    now = int(time.time())
    if now != _date_second:
        _date_second = now
        _date_line = f"Date: {formatdate(now, usegmt=True)}\r\n"
    return _date_line


class Responder:
    """One response on a connection; `keep_alive` says whether the connection may go on."""

    __slots__ = ("sock", "version", "method", "keep_alive", "status", "headers", "head_sent",
                 "sent", "_chunked", "_no_body")

    def __init__(self, sock, version: tuple[int, int], method: str, keep_alive: bool):
        self.sock = sock
        self.version = version
        self.method = method
        self.keep_alive = keep_alive
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.head_sent = False
        self.sent = 0  # body bytes (access log)
        self._chunked = False
        self._no_body = False

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info=None):
        if exc_info is not None and self.head_sent:
            raise exc_info[1].with_traceback(exc_info[2])
        self.status = status
        self.headers = headers
        return self._write

    def _head(self) -> bytes:
        code = int(self.status[:3])
        self._no_body = self.method == "HEAD" or code < 200 or code in (204, 304)
        lines = [f"HTTP/{self.version[0]}.{self.version[1]} {self.status}\r\n"]
        length = date = False
        for name, value in self.headers:
            low = name.lower()
            if low in _OURS:
                continue
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
                raise ValueError(f"invalid response header {name!r}")
            if low == "content-length":
                length = True
            elif low == "date":
                date = True
            lines.append(f"{name}: {value}\r\n")
        if not date:
            lines.append(date_line())
        if not length and not self._no_body:
            if self.version >= (1, 1):
                self._chunked = True
                lines.append("Transfer-Encoding: chunked\r\n")
            else:
                self.keep_alive = False  # the end of the body is the end of the connection
        lines.append("Connection: keep-alive\r\n\r\n" if self.keep_alive
                     else "Connection: close\r\n\r\n")
        return "".join(lines).encode("latin-1")

    def _write(self, data: bytes) -> None:
        """WSGI's write() callable, and each body piece."""
        if not self.head_sent:
            head = self._head()
            self.head_sent = True
            if self._no_body or not data:
                self.sock.sendall(head)
                return
            if self._chunked:
                data = b"%x\r\n%s\r\n" % (len(data), data)
            self.sent += len(data)
            if len(data) <= JOIN_LIMIT:
                self.sock.sendall(head + data)
            else:
                self.sock.sendall(head)
                self.sock.sendall(data)
            return
        if self._no_body or not data:
            return
        self.sent += len(data)
        if self._chunked:
            self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.sock.sendall(data)

    def send(self, result) -> None:
        """Send the application's result (an iterable of bytes) and end the response."""
        write = self._write
        for data in result:
            if data:
                write(data)
        if not self.head_sent:
            self.sock.sendall(self._head())
            self.head_sent = True
        if self._chunked:
            self.sock.sendall(b"0\r\n\r\n")
