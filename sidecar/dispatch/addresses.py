"""Which addresses a webhook may be sent to: Harbor's `network.allow_private_network_access`.

Pure: the decision is made on an address that was already resolved (see dispatch.outbound,
which resolves once, asks here, and connects to exactly that address). The table below is ours
rather than `ipaddress.is_private`, whose answers changed between Python patch releases.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: (network, what it is), first match wins. Reaching any of these from a webhook lets whoever
#: writes a policy probe the sidecar's own network (SSRF, CWE-918).
RESTRICTED: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(cidr), kind) for cidr, kind in (
        ("0.0.0.0/8", "unspecified"),  # "this network": 0.0.0.0 reaches the local host
        ("127.0.0.0/8", "loopback"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", "private"),  # carrier-grade NAT, shared address space (RFC 6598)
        ("169.254.0.0/16", "link-local"),  # cloud metadata (169.254.169.254) lives here
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # 255.255.255.255 (broadcast) included
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),  # deprecated, still routed inside some networks
        ("fc00::/7", "unique-local"),
        ("ff00::/8", "multicast"),
    )
)
#: IPv6 forms that carry an IPv4 address the packet ends up at: IPv4-mapped (::ffff:a.b.c.d,
#: a dual-stack socket connects to a.b.c.d) and NAT64's well-known prefix (64:ff9b::a.b.c.d).
_EMBEDS_IPV4 = (ipaddress.ip_network("::ffff:0:0/96"), ipaddress.ip_network("64:ff9b::/96"))

SETTING = "network.allow_private_network_access"
ALLOW_LIST = "sidecar.webhook_allowed_networks"


def classify(address: IPAddress) -> str | None:
    """What kind of restricted address this is, or None for a public one."""
    embedded = embedded_ipv4(address)
    if embedded is not None:
        return classify(embedded)
    for network, kind in RESTRICTED:
        if address.version == network.version and address in network:
            return kind
    return None


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if address.version != 6:
        return None
    for network in _EMBEDS_IPV4:
        if address in network:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs (or single addresses) -> networks; ValueError names the first that does not parse."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(str(value).strip(), strict=True))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a CIDR network ({exc})") from None
    return tuple(networks)


@dataclass(frozen=True)
class AddressPolicy:
    """Harbor's default (True) allows everything; False refuses restricted addresses unless an
    allowed network contains them."""

    allow_private: bool = True
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, allow_private: bool, allowed_networks: Iterable[str] = ()) -> AddressPolicy:
        return cls(allow_private, parse_networks(allowed_networks))

    @property
    def restricts(self) -> bool:
        return not self.allow_private

    def refusal(self, address: str | IPAddress) -> str | None:
        """Why a connection to `address` is refused, or None when it may go ahead."""
        if self.allow_private:
            return None
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        kind = classify(ip)
        if kind is None:
            return None
        candidates = [ip] + [e for e in (embedded_ipv4(ip),) if e is not None]
        for network in self.allowed_networks:
            if any(c.version == network.version and c in network for c in candidates):
                return None
        article = "an" if kind == "unspecified" else "a"
        return f"{ip} is {article} {kind} address"


class AddressRefused(Exception):
    """A connection the policy forbids; raised instead of connecting. Final: a retry would be
    refused the same way, so the delivery fails at once with this reason."""

    def __init__(self, host: str, reasons: list[str]):
        self.host = host
        self.reasons = reasons
        where = reasons[0] if reasons else f"{host} has no address"
        named = host.strip("[]")
        if reasons and not where.startswith(named + " "):  # a name, not an IP literal
            where = f"{host} resolves to " + where.replace(" is ", ", ", 1)
        super().__init__(
            f"refused: {where} ({SETTING} is false; list the receiver's network in "
            f"{ALLOW_LIST} to allow it)")
