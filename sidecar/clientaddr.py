"""Who the client is: the peer, or what a trusted front proxy says in X-Forwarded-For.

`sidecar.trusted_proxies` (CIDRs) names the front proxies (a load balancer, nginx, an
ingress) whose X-Forwarded-For and X-Forwarded-Proto are believed (the scheme is gunicorn's
`forwarded_allow_ips`, which serve.py sets from the same list). Anyone else can write
those headers too, so from other peers they are ignored: the address the login throttle
counts, the default-password lock-down checks and the logs show is then the peer's own.

Pure: no I/O, so the worker, the WSGI entry and the API share one reading.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The CIDRs of front proxies; `client()` reads a request's real client address."""

    def __init__(self, networks: Iterable[str] = ()):
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(str(n).strip(), strict=False) for n in networks)

    def trusts(self, address: str) -> bool:
        if not self.networks or not address:
            return False
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The client: walking X-Forwarded-For from the right (each proxy appends the address
        it saw), the first address that is not a trusted proxy. From an untrusted peer, the
        peer itself."""
        if not forwarded_for or not self.trusts(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return _valid(hop) or peer
        return _valid(hops[0]) if hops and _valid(hops[0]) else peer


def _valid(text: str) -> str:
    """An address as given, or "" when it is not one (a header can hold anything)."""
    candidate = text
    if candidate.startswith("[") and "]" in candidate:  # [v6]:port
        candidate = candidate[1:candidate.index("]")]
    elif candidate.count(":") == 1:  # v4:port
        candidate = candidate.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return ""


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback
