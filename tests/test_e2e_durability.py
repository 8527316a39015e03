"""Recorded events survive the sidecar being killed: a new `sidecar serve` on the same database
delivers them. SIGKILL of the whole process group (gunicorn master and workers), no cleanup.
"""

from __future__ import annotations

import signal
import sqlite3
import time

import pytest

from tests.conftest import webhook_rules
from tests.support import clients
from tests.support.ports import free_port
from tests.support.receiver import Reply

pytestmark = pytest.mark.e2e


def harbor_yml(max_retry: int = 20, timeout: float = 1, backoff: float = 0.5) -> dict:
    return {
        "notification": {"webhook_job_max_retry": max_retry,
                         "webhook_job_http_client_timeout": timeout},
        "sidecar": {"delivery": {"backoff_seconds": backoff, "backoff_max_seconds": backoff}},
    }


def rules(address: str) -> dict:
    return webhook_rules(address, event_types=("PUSH_ARTIFACT",), auth_header="Bearer t0ken")


def delivery_rows(sidecar) -> list[tuple[str, int]]:
    """(status, attempts) of every delivery, read straight from the dead sidecar's SQLite file."""
    path = sidecar.database.split(":///", 1)[1]
    with sqlite3.connect(path) as conn:
        return list(conn.execute("SELECT status, attempts FROM delivery ORDER BY id"))


def test_killed_while_receiver_is_down_then_delivered_after_restart(
        sidecar_factory, receiver_factory, image):
    port = free_port()  # nothing listens here yet
    address = f"http://127.0.0.1:{port}/hook"
    first = sidecar_factory(rules(address), config=harbor_yml())
    layout, digest = image("v1")
    clients.push(layout, "v1", f"{first.netloc}/proj/app:v1")
    first.wait_status(lambda s: s["recent"] and s["recent"][0]["attempts"] >= 1)
    first.kill(signal.SIGKILL)
    [(status, attempts)] = delivery_rows(first)
    assert status in ("pending", "sending") and attempts >= 1

    second = sidecar_factory(rules(address), config=harbor_yml(), database=first.database)
    receiver = receiver_factory(port=port)
    [request] = receiver.wait_for(1, timeout=30)
    assert request.json()["type"] == "PUSH_ARTIFACT"
    assert request.json()["event_data"]["resources"][0]["digest"] == digest
    assert request.headers["authorization"] == "Bearer t0ken"
    status = second.wait_status(lambda s: s["deliveries"]["delivered"] == 1)
    assert status["recent"][0]["attempts"] > attempts
    assert len(receiver.requests) == 1


def test_killed_mid_send_is_taken_over_after_the_lease(sidecar_factory, receiver_factory, image):
    # the first request hangs (the sidecar dies waiting for it); later ones are answered
    receiver = receiver_factory([Reply(200, delay=10), Reply(200)])
    # timeout 2 s: the claim's lease is 2 * 2 + 10 = 14 s; the kill lands well within 2 s
    first = sidecar_factory(rules(receiver.url), config=harbor_yml(timeout=2))
    layout, digest = image("v1")
    clients.push(layout, "v1", f"{first.netloc}/proj/app:v1")
    receiver.wait_for(1)
    first.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    if delivery_rows(first) != [("sending", 0)]:
        pytest.fail(f"the kill did not land mid-send: {delivery_rows(first)}")

    second = sidecar_factory(rules(receiver.url), config=harbor_yml(timeout=2),
                             database=first.database)
    received = receiver.wait_for(2, timeout=30)
    assert time.monotonic() - killed_at >= 10  # not before the dead worker's lease ran out
    assert received[1].body == received[0].body
    status = second.wait_status(lambda s: s["deliveries"]["delivered"] == 1)
    # the send the dead worker made counts as attempt 1 (the endpoint may have got it)
    assert status["recent"][0]["attempts"] == 2
    assert status["recent"][0]["last_status_code"] == 200
    assert received[1].json()["event_data"]["resources"][0]["digest"] == digest


def test_graceful_stop_mid_send_records_the_outcome(sidecar_factory, receiver_factory, image):
    receiver = receiver_factory([Reply(200, delay=0.5)])
    first = sidecar_factory(rules(receiver.url), config=harbor_yml(timeout=3))
    layout, _ = image("v1")
    clients.push(layout, "v1", f"{first.netloc}/proj/app:v1")
    receiver.wait_for(1)
    first.stop()  # SIGTERM: gunicorn's graceful stop
    assert delivery_rows(first) == [("delivered", 1)]
    second = sidecar_factory(rules(receiver.url), config=harbor_yml(timeout=3),
                             database=first.database)
    assert second.status()["deliveries"]["delivered"] == 1
    time.sleep(0.5)
    assert len(receiver.requests) == 1  # not sent again


def test_sigterm_right_after_a_push_loses_nothing_and_does_not_wait_for_idle_clients(
        sidecar_factory, image):
    """A graceful stop flushes the recorder's buffer, even with a keep-alive client idling."""
    import http.client

    dead_port = free_port()  # nothing listens: every send fails, the delivery stays queued
    sidecar = sidecar_factory(rules(f"http://127.0.0.1:{dead_port}/hook"),
                              config=harbor_yml(backoff=30), workers=1)
    idle = http.client.HTTPConnection("127.0.0.1", sidecar.port, timeout=10)
    idle.request("GET", "/v2/")
    idle.getresponse().read()  # the connection stays open, idle
    layout, _ = image("v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1")
    started = time.monotonic()
    sidecar.stop()  # SIGTERM at once: the event may still be in the recorder's buffer
    stopped_after = time.monotonic() - started
    idle.close()
    assert [status for status, _ in delivery_rows(sidecar)] == ["pending"]
    # the idle client is dropped after the 5 s keep-alive, long before the 30 s graceful
    # timeout (or Kubernetes' SIGKILL) would cut the flush short
    assert stopped_after < 15, stopped_after
    assert "graceful timeout" not in sidecar.log().lower()
