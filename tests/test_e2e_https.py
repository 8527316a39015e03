"""Webhooks to HTTPS endpoints: certificates are verified unless `skip_cert_verify`, and a slow
TLS endpoint never stalls the registry traffic the same gevent worker carries."""

from __future__ import annotations

import threading
import time
import urllib.request

import pytest

from tests.conftest import webhook_rules
from tests.support import clients
from tests.support.certs import self_signed
from tests.support.receiver import Reply

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, made with openssl."""
    return self_signed(tmp_path_factory.mktemp("tls"))


def test_self_signed_endpoint_is_delivered_when_verification_is_skipped(
        sidecar_factory, receiver_factory, certificate, image):
    receiver = receiver_factory(tls=certificate)
    sidecar = sidecar_factory(webhook_rules(receiver.url, auth_header=None,
                                            event_types=["PUSH_ARTIFACT"],
                                            skip_cert_verify=True))
    layout, digest = image("v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1")
    [request] = receiver.wait_for(1)
    assert request.json()["event_data"]["resources"][0]["digest"] == digest
    sidecar.wait_status(lambda s: s["deliveries"]["delivered"] == 1)


def test_self_signed_endpoint_fails_verification_with_the_reason(
        sidecar_factory, receiver_factory, certificate, image):
    receiver = receiver_factory(tls=certificate)
    sidecar = sidecar_factory(webhook_rules(receiver.url, auth_header=None,
                                            event_types=["PUSH_ARTIFACT"]))
    layout, _ = image("v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1")
    status = sidecar.wait_status(lambda s: s["deliveries"]["failed"] == 1)
    failure = status["recent_failures"][0]
    assert failure["attempts"] == 3
    assert "TLS" in failure["last_error"] or "certificate" in failure["last_error"]
    assert receiver.requests == []  # the handshake failed: nothing was sent


def test_a_slow_tls_endpoint_does_not_stall_pulls(sidecar_factory, receiver_factory,
                                                  certificate, image):
    # one worker: the webhook send and the pulls share its event loop
    receiver = receiver_factory([Reply(200, delay=4)], tls=certificate)
    sidecar = sidecar_factory(
        webhook_rules(receiver.url, auth_header=None, event_types=["PUSH_ARTIFACT"],
                      skip_cert_verify=True),
        config={"notification": {"webhook_job_http_client_timeout": 10}}, workers=1)
    layout, _ = image("v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1")
    receiver.wait_for(1)  # the endpoint now holds the TLS connection for 4 s
    durations = []

    def pull() -> None:
        request = urllib.request.Request(
            f"{sidecar.url}/v2/proj/app/manifests/v1",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        durations.append(time.monotonic() - started)

    threads = [threading.Thread(target=pull) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(durations) == 5
    # a blocking TLS read would hold every pull until the endpoint answers (4 s)
    assert max(durations) < 2.0, durations
