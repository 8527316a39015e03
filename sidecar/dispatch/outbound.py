"""Sessions whose connections go only where the address policy allows.

The check sits where the socket is made: each new connection resolves the host once, asks the
policy about every address, and connects to an allowed one of exactly those, so nothing can
change between the check and the connect (DNS rebinding) and every redirect hop, which opens
its own connection, is checked the same way. TLS still names the host (SNI, certificate check)
and the Host header is untouched: only the address is pinned.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from urllib3.connection import HTTPConnection
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError
from urllib3.exceptions import NameResolutionError
from urllib3.exceptions import NewConnectionError
from urllib3.util.connection import allowed_gai_family
from urllib3.util.connection import create_connection

from sidecar.dispatch.addresses import AddressPolicy
from sidecar.dispatch.addresses import AddressRefused

if TYPE_CHECKING:  # its users bring requests (the endpoint test): see sidecar/lazy.py
    import requests
    from requests.adapters import HTTPAdapter


def _guarded_connect(conn: HTTPConnection, policy: AddressPolicy) -> socket.socket:
    """urllib3's `_new_conn`, with the resolution done here and checked before connecting."""
    try:
        infos = socket.getaddrinfo(conn._dns_host, conn.port, allowed_gai_family(),
                                   socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    allowed: list[str] = []
    refused: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        reason = policy.refusal(address)
        if reason:
            refused.append(reason)
        elif address not in allowed:
            allowed.append(address)
    if not allowed:
        raise AddressRefused(conn.host, refused)
    last: OSError | None = None
    for address in allowed:  # as create_connection does: the next address when one fails
        try:
            return create_connection((address, conn.port), conn.timeout,
                                     source_address=conn.source_address,
                                     socket_options=conn.socket_options)
        except TimeoutError as exc:
            last = exc
            error: Exception = ConnectTimeoutError(
                conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})")
        except OSError as exc:
            last = exc
            error = NewConnectionError(conn, f"Failed to establish a new connection: {exc}")
    raise error from last


def _adapter_for(policy: AddressPolicy) -> HTTPAdapter:
    from requests.adapters import HTTPAdapter  # loaded already: the session it guards is one

    class GuardedHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return _guarded_connect(self, policy)

    class GuardedHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return _guarded_connect(self, policy)

    class GuardedHTTPPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    class GuardedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {
                "http": GuardedHTTPPool, "https": GuardedHTTPSPool}

    return GuardedAdapter()


def guard(session: requests.Session, policy: AddressPolicy) -> requests.Session:
    """Make every http(s) connection of `session` obey `policy` (nothing to do when it
    allows everything: Harbor's default keeps the plain transport)."""
    if policy.restricts:
        adapter = _adapter_for(policy)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    return session
