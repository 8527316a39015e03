"""Kept-alive connections: a socket with its buffered reader, and whether it can carry the
next request.

The registry client (proxy/upstream.py) and the webhook client (dispatch/client.py) both keep
connections between requests; one the peer closed meanwhile must be replaced before a request
is written to it, not noticed after.
"""

from __future__ import annotations

import select
import socket

from sidecar.native import original

# gevent's monkey-patching removes select.poll; a zero-timeout poll never blocks anyway
_poll = original("select", "poll")


def dropped(sock: socket.socket) -> bool:
    """An idle connection is readable only if the peer closed it (or sent something unasked,
    which makes it unusable too)."""
    try:
        poller = _poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


class Connection:
    """A connected socket and the buffered reader its answers are read through."""

    __slots__ = ("sock", "rfile")

    def __init__(self, sock: socket.socket, buffering: int):
        self.sock = sock
        self.rfile = sock.makefile("rb", buffering=buffering)

    def close(self) -> None:
        try:
            self.rfile.close()
        finally:
            self.sock.close()

    def dropped(self) -> bool:
        return dropped(self.sock)
