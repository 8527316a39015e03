"""Delivery as a user sees it: `sidecar serve`, a real registry, skopeo, real receivers.

Retries, give-ups with their reasons in /sidecar/status, Retry-After, the Authorization header,
and exactly one delivery per event when several gunicorn workers share the queue.
"""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import webhook_rules
from tests.support import clients
from tests.support.ports import free_port
from tests.support.receiver import Reply
from tests.support.receiver import first_try_fails

pytestmark = pytest.mark.e2e

PUSH_ONLY = ("PUSH_ARTIFACT",)


def harbor_yml(max_retry: int = 3, timeout: float = 10, backoff: float = 0.2) -> dict:
    """Short backoff; a generous timeout, so a slow answer on a loaded machine is no retry."""
    return {
        "notification": {"webhook_job_max_retry": max_retry,
                         "webhook_job_http_client_timeout": timeout},
        "sidecar": {"delivery": {"backoff_seconds": backoff,
                                 "backoff_max_seconds": max(backoff, 0.5)}},
    }


def rules(address: str, auth_header: str | None = "Bearer t0ken") -> dict:
    return webhook_rules(address, event_types=PUSH_ONLY, auth_header=auth_header)


def only_delivery(sidecar, predicate, timeout: float = 20.0) -> dict:
    """Wait until the sidecar holds exactly one delivery and `predicate` holds for it."""
    def check(status):
        return len(status["recent"]) == 1 and predicate(status["recent"][0])
    return sidecar.wait_status(check, timeout=timeout)["recent"][0]


def push(sidecar, image, repo: str = "proj/app", tag: str = "v1") -> str:
    layout, digest = image(tag)
    clients.push(layout, tag, f"{sidecar.netloc}/{repo}:{tag}")
    return digest


def test_server_errors_are_retried_until_delivered(sidecar_factory, receiver_factory, image):
    receiver = receiver_factory([Reply(503), Reply(503), Reply(200)])
    sidecar = sidecar_factory(rules(receiver.url, auth_header="Bearer ${CI_TOKEN}"),
                              config=harbor_yml(max_retry=3), env={"CI_TOKEN": "s3cret"})
    digest = push(sidecar, image)
    received = receiver.wait_for(3)
    delivery = only_delivery(sidecar, lambda d: d["status"] == "delivered")
    assert delivery["attempts"] == 3 and delivery["last_status_code"] == 200
    assert [h["status_code"] for h in delivery["history"]] == [503, 503, 200]
    # the same event each time, with the policy's auth header exactly
    assert len({r.body for r in received}) == 1
    assert received[0].json()["event_data"]["resources"][0]["digest"] == digest
    assert [r.headers["authorization"] for r in received] == ["Bearer s3cret"] * 3
    assert len(receiver.requests) == 3


def test_no_authorization_header_when_none_configured(sidecar_factory, receiver, image):
    sidecar = sidecar_factory(rules(receiver.url, auth_header=None))
    push(sidecar, image)
    [request] = receiver.wait_for(1)
    assert "authorization" not in request.headers
    only_delivery(sidecar, lambda d: d["status"] == "delivered")


def test_retry_after_is_honoured(sidecar_factory, receiver_factory, image):
    receiver = receiver_factory([Reply(429, headers={"Retry-After": "1"}), Reply(200)])
    sidecar = sidecar_factory(rules(receiver.url),
                              config=harbor_yml(backoff=0.05))
    push(sidecar, image)
    first, second = receiver.wait_for(2)
    assert second.at - first.at >= 0.95  # the backoff alone would have been ~0.05 s
    delivery = only_delivery(sidecar, lambda d: d["status"] == "delivered")
    assert delivery["attempts"] == 2


@pytest.mark.parametrize("code,attempts", [(401, 3), (410, 1)])
def test_client_error_ends_failed_with_its_code(sidecar_factory, receiver_factory, image,
                                                code, attempts):
    receiver = receiver_factory([Reply(code)])
    sidecar = sidecar_factory(rules(receiver.url),
                              config=harbor_yml(max_retry=3))
    push(sidecar, image)
    status = sidecar.wait_status(lambda s: s["deliveries"]["failed"] == 1)
    [failure] = status["recent_failures"]
    assert failure["attempts"] == attempts
    assert failure["last_status_code"] == code
    assert str(code) in failure["last_error"]
    assert len(receiver.requests) == attempts


def test_endpoint_that_never_answers_fails_with_timeout(sidecar_factory, image):
    with socket.socket() as silent:  # the kernel accepts connections; nobody ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        address = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        sidecar = sidecar_factory(rules(address),
                                  config=harbor_yml(max_retry=2, timeout=0.5, backoff=0.05))
        push(sidecar, image)
        status = sidecar.wait_status(lambda s: s["deliveries"]["failed"] == 1)
    [failure] = status["recent_failures"]
    assert failure["attempts"] == 2 and failure["last_status_code"] is None
    assert "timeout" in failure["last_error"]


def test_closed_port_fails_with_connection_reason(sidecar_factory, image):
    address = f"http://127.0.0.1:{free_port()}/hook"
    sidecar = sidecar_factory(rules(address),
                              config=harbor_yml(max_retry=2, backoff=0.05))
    push(sidecar, image)
    status = sidecar.wait_status(lambda s: s["deliveries"]["failed"] == 1)
    [failure] = status["recent_failures"]
    assert failure["attempts"] == 2 and failure["last_status_code"] is None
    # a sentence a person can read, without urllib3's nesting and quotes around it
    assert failure["last_error"] == (
        "connection failed: [Errno 111] Connection refused (gave up after 2 attempts)")


def test_uid_is_stable_across_retries(sidecar_factory, receiver_factory, image):
    gate = threading.Event()
    receiver = receiver_factory(lambda _r: Reply(200) if gate.is_set() else Reply(503))
    sidecar = sidecar_factory(rules(receiver.url),
                              config=harbor_yml(max_retry=20, backoff=0.1))
    push(sidecar, image)
    retrying = only_delivery(sidecar, lambda d: d["attempts"] >= 2 and d["status"] != "failed")
    gate.set()
    delivered = only_delivery(sidecar, lambda d: d["status"] == "delivered")
    assert delivered["uid"] == retrying["uid"] and delivered["uid"]
    assert delivered["id"] == retrying["id"]


@pytest.mark.parametrize("workers", [3])
def test_several_workers_deliver_each_event_exactly_once(sidecar_factory, receiver_factory,
                                                         image, workers):
    script, seen = first_try_fails()  # so retries are claimed again, by anyone
    receiver = receiver_factory(script)
    sidecar = sidecar_factory(rules(receiver.url),
                              config=harbor_yml(max_retry=5, backoff=0.1), workers=workers)
    pushes = 8
    layouts = [image("v1") for _ in range(pushes)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: clients.push(layouts[n][0], "v1",
                                             f"{sidecar.netloc}/proj/app{n}:v1"),
                      range(pushes)))
    digests = [digest for _, digest in layouts]
    sidecar.wait_status(lambda s: s["deliveries"]["delivered"] == pushes
                        and s["queue"]["depth"] == 0)
    assert len(receiver.requests) == 2 * pushes
    assert sorted(seen) == sorted(digests)
    assert set(seen.values()) == {2}  # one failed try, one delivery: no duplicates
