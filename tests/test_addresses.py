"""The address classification table behind `network.allow_private_network_access: false`:
which resolved addresses a webhook may not reach, IPv4 and IPv6 (v4-mapped too), and how
`sidecar.webhook_allowed_networks` lets an internal receiver through."""

from __future__ import annotations

import ipaddress

import pytest

from sidecar.dispatch.addresses import AddressPolicy
from sidecar.dispatch.addresses import AddressRefused
from sidecar.dispatch.addresses import classify
from sidecar.dispatch.addresses import parse_networks


@pytest.mark.parametrize("address, kind", [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "private"),  # carrier-grade NAT
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fd00::1", "unique-local"),
    ("fc00::1", "unique-local"),
    ("fec0::1", "site-local"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("::", "unspecified"),
    ("255.255.255.255", "reserved"),
    ("240.0.0.1", "reserved"),
    # IPv4-mapped and NAT64 forms reach the IPv4 address inside them
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.1.2.3", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("64:ff9b::a9fe:a9fe", "link-local"),
    ("64:ff9b::7f00:1", "loopback"),
])
def test_restricted_addresses(address, kind):
    assert classify(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize("address", [
    "1.1.1.1", "8.8.8.8", "93.184.215.14", "172.32.0.1", "172.15.255.255", "100.128.0.1",
    "169.253.255.255", "223.255.255.255", "2606:4700:4700::1111", "2001:4860:4860::8888",
    "::ffff:8.8.8.8", "64:ff9b::808:808",
])
def test_public_addresses(address):
    assert classify(ipaddress.ip_address(address)) is None


def test_harbors_default_allows_everything():
    policy = AddressPolicy()
    assert not policy.restricts
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("169.254.169.254") is None


def test_restricted_addresses_are_refused_with_what_they_are():
    policy = AddressPolicy.of(False)
    assert policy.refusal("127.0.0.1") == "127.0.0.1 is a loopback address"
    assert policy.refusal("169.254.169.254") == "169.254.169.254 is a link-local address"
    assert policy.refusal("fd12::1") == "fd12::1 is a unique-local address"
    assert policy.refusal("0.0.0.0") == "0.0.0.0 is an unspecified address"
    assert policy.refusal("::ffff:192.168.0.9").endswith(" is a private address")
    assert policy.refusal("8.8.8.8") is None


def test_allowed_networks_let_internal_receivers_through():
    policy = AddressPolicy.of(False, ["10.20.0.0/16", "fd00:1::/32", "127.0.0.1"])
    assert policy.refusal("10.20.3.4") is None
    assert policy.refusal("::ffff:10.20.3.4") is None  # the mapped form of an allowed address
    assert policy.refusal("fd00:1::5") is None
    assert policy.refusal("127.0.0.1") is None  # a single address is a /32
    assert policy.refusal("127.0.0.2") == "127.0.0.2 is a loopback address"
    assert policy.refusal("10.21.0.1") == "10.21.0.1 is a private address"
    assert policy.refusal("169.254.169.254") is not None


@pytest.mark.parametrize("value", ["10.0.0.0/33", "10.0.0.1/8", "localhost", "", "fd00::/129"])
def test_networks_that_do_not_parse_are_refused_naming_them(value):
    with pytest.raises(ValueError, match="is not a CIDR network"):
        parse_networks([value])


def test_the_refusal_names_host_address_and_the_way_out():
    by_name = str(AddressRefused("localhost", ["127.0.0.1 is a loopback address"]))
    assert by_name == (
        "refused: localhost resolves to 127.0.0.1, a loopback address "
        "(network.allow_private_network_access is false; list the receiver's network in "
        "sidecar.webhook_allowed_networks to allow it)")
    literal = str(AddressRefused("169.254.169.254", ["169.254.169.254 is a link-local address"]))
    assert literal.startswith("refused: 169.254.169.254 is a link-local address (")
