"""The guarded transport against real sockets: the address a request would connect to is checked
when the connection is made (names resolved once, every redirect hop), the refusal is final and
says why, and TLS still verifies the name in the URL while the address is pinned."""

from __future__ import annotations

import pytest
import requests

from sidecar.dispatch.addresses import AddressPolicy
from sidecar.dispatch.outbound import guard
from sidecar.dispatch.probe import send_probe
from sidecar.dispatch.render import Request
from sidecar.dispatch.sender import Sender
from tests.support.certs import self_signed
from tests.support.receiver import Reply

STRICT = AddressPolicy.of(False)
LOOPBACK_ALLOWED = AddressPolicy.of(False, ["127.0.0.0/8"])


def post(url: str) -> Request:
    return Request(url, b'{"type":"PUSH_ARTIFACT"}', {"Content-Type": "application/json"}, True)


def test_a_loopback_target_is_refused_before_anything_is_sent(receiver):
    answer = Sender(timeout=2, addresses=STRICT).send(post(receiver.url))
    assert answer.status_code is None and answer.final
    assert answer.error.startswith("refused: 127.0.0.1 is a loopback address "
                                   "(network.allow_private_network_access is false")
    assert receiver.requests == []


def test_a_name_that_resolves_to_loopback_is_refused(receiver):
    answer = Sender(timeout=2, addresses=STRICT).send(
        post(receiver.url.replace("127.0.0.1", "localhost")))
    assert answer.final and receiver.requests == []
    assert answer.error.startswith("refused: localhost resolves to ")
    assert "a loopback address" in answer.error


@pytest.mark.parametrize("host", ["0x7f000001", "2130706433", "127.1"])
def test_other_spellings_of_loopback_are_refused_too(receiver, host):
    answer = Sender(timeout=2, addresses=STRICT).send(
        post(receiver.url.replace("127.0.0.1", host)))
    assert answer.final and "loopback" in answer.error
    assert receiver.requests == []


def test_an_allowed_network_is_delivered(receiver):
    answer = Sender(timeout=2, addresses=LOOPBACK_ALLOWED).send(post(receiver.url))
    assert answer.status_code == 200 and not answer.final and answer.error == ""
    [request] = receiver.wait_for(1)
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"


def test_every_redirect_hop_is_checked(receiver_factory):
    inside = receiver_factory()  # 127.0.0.1: not allowed
    outside = receiver_factory([Reply(307, headers={"Location": inside.url})], host="127.0.0.2")
    policy = AddressPolicy.of(False, ["127.0.0.2/32"])
    answer = Sender(timeout=2, addresses=policy).send(post(outside.url))
    assert len(outside.requests) == 1  # the first hop is allowed and was sent
    assert inside.requests == []  # the hop it redirected to was not
    assert answer.final and answer.error.startswith("refused: 127.0.0.1 is a loopback address")


def test_the_test_endpoint_obeys_the_same_policy(receiver):
    result = send_probe(post(receiver.url), 2, addresses=STRICT)
    assert not result.ok and result.status_code is None
    assert result.error.startswith("refused: 127.0.0.1 is a loopback address")
    assert receiver.requests == []
    assert send_probe(post(receiver.url), 2, addresses=LOOPBACK_ALLOWED).ok


@pytest.fixture(scope="module")
def localhost_certificate(tmp_path_factory):
    """A self-signed certificate for the name `localhost` only (no IP address in it)."""
    return self_signed(tmp_path_factory.mktemp("tls"), "localhost")


def test_tls_verifies_the_name_while_the_address_is_pinned(receiver_factory,
                                                           localhost_certificate):
    receiver = receiver_factory(tls=localhost_certificate)
    session = guard(requests.Session(), LOOPBACK_ALLOWED)
    session.trust_env = False
    by_name = f"https://localhost:{receiver.port}/hook"
    response = session.post(by_name, data=b"{}", verify=localhost_certificate[0], timeout=5)
    assert response.status_code == 200
    [request] = receiver.wait_for(1)
    assert request.headers["host"] == f"localhost:{receiver.port}"
    # the certificate names localhost, not 127.0.0.1: checked against the URL's name
    with pytest.raises(requests.exceptions.SSLError):
        session.post(f"https://127.0.0.1:{receiver.port}/hook", data=b"{}",
                     verify=localhost_certificate[0], timeout=5)
