"""The dispatcher against a real store and real HTTP receivers (in-process, no sidecar)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from sidecar.dispatch.addresses import AddressPolicy
from sidecar.dispatch.render import render
from sidecar.dispatch.retry import RetryPolicy
from sidecar.dispatch.sender import DRAIN
from sidecar.dispatch.sender import EXCERPT
from sidecar.dispatch.sender import Sender
from sidecar.dispatch.worker import Dispatcher
from sidecar.dispatch.worker import DispatchSettings
from sidecar.events.payload import encode
from sidecar.store import db as store_db
from sidecar.store import delivery_queue as queue
from sidecar.store import policies as policy_store
from sidecar.store.executor import Executor
from sidecar.store.models import DELIVERED
from sidecar.store.models import FAILED
from sidecar.store.models import PENDING
from sidecar.store.models import SENDING
from sidecar.store.models import SKIPPED
from sidecar.store.models import Attempt
from sidecar.store.models import Delivery
from tests.support.ports import free_port
from tests.support.receiver import Receiver
from tests.support.receiver import Reply

LEASE = 60.0


@pytest.fixture
def store(tmp_path):
    db = store_db.bind(f"sqlite:///{tmp_path / 'dispatch.db'}")
    yield db
    db.close()


@pytest.fixture
def receivers():
    started: list[Receiver] = []

    def make(script=None, port=None) -> Receiver:
        receiver = Receiver(script, port=port).start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.stop()


def settings(concurrency: int = 2, timeout: float = 10.0, max_attempts: int = 3,
             backoff: float = 0.05) -> DispatchSettings:
    return DispatchSettings(concurrency=concurrency, timeout=timeout, idle_poll=0.05,
                            retry=RetryPolicy(max_attempts=max_attempts, backoff=backoff,
                                              backoff_max=backoff * 2))


def record(address: str, count: int = 1, max_attempts: int = 3, auth: str = "") -> None:
    target = {"type": "http", "address": address, "payload_format": "Default",
              "skip_cert_verify": False}
    if auth:
        target["auth_header"] = auth
    queue.record_events([
        queue.NewEvent(type="PUSH_ARTIFACT", occur_at=1_700_000_000 + n, operator="alice",
                       project="proj", repository="proj/app", request_id=f"r{n}",
                       payload={"type": "PUSH_ARTIFACT", "occur_at": 1_700_000_000 + n,
                                "operator": "alice"},
                       deliveries=(queue.NewDelivery(None, "ci", target),))
        for n in range(count)
    ], max_attempts=max_attempts)


def attempt_once(dispatcher: Dispatcher) -> Delivery:
    [delivery] = queue.claim(1, LEASE)
    dispatcher.deliver(delivery)
    return Delivery.get_by_id(delivery.id)


def wait_until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached; counts={queue.counts()}")
        time.sleep(0.02)


def test_delivered_request_is_the_recorded_payload_with_exact_auth(store, receivers):
    receiver = receivers()
    record(receiver.url, auth="Basic dXNlcjpwdw==")
    row = attempt_once(Dispatcher(Executor(), settings()))
    assert (row.status, row.attempts, row.last_status_code) == (DELIVERED, 1, 200)
    [request] = receiver.requests
    assert request.headers["authorization"] == "Basic dXNlcjpwdw=="
    assert request.headers["content-type"] == "application/json"
    assert request.body == encode(row.event.payload)
    # Harbor sends no delivery id header in the Default format
    assert not any("id" in name.lower() for name in request.headers if name != "content-type")


def test_no_authorization_header_without_auth_header(store, receivers):
    receiver = receivers()
    record(receiver.url)
    attempt_once(Dispatcher(Executor(), settings()))
    assert "authorization" not in receiver.requests[0].headers


def test_server_error_is_retried_with_backoff(store, receivers):
    receiver = receivers([Reply(503)])
    record(receiver.url)
    before = time.time()
    row = attempt_once(Dispatcher(Executor(), settings(backoff=5)))
    assert (row.status, row.attempts, row.last_status_code) == (PENDING, 1, 503)
    assert row.last_error == "abnormal response code: 503"
    assert before + 2.5 <= row.next_attempt_at <= time.time() + 10  # equal jitter: [b/2, b]


def test_retry_after_sets_the_next_attempt(store, receivers):
    receiver = receivers([Reply(429, headers={"Retry-After": "7"})])
    record(receiver.url)
    before = time.time()
    row = attempt_once(Dispatcher(Executor(), settings(backoff=0.05)))
    assert row.status == PENDING
    assert before + 7 <= row.next_attempt_at <= time.time() + 7


def test_gone_ends_at_once(store, receivers):
    receiver = receivers([Reply(410)])
    record(receiver.url, max_attempts=5)
    row = attempt_once(Dispatcher(Executor(), settings()))
    assert (row.status, row.attempts, row.last_status_code) == (FAILED, 1, 410)
    assert "410" in row.last_error and "not retried" in row.last_error


def test_last_attempt_fails_with_reason(store, receivers):
    receiver = receivers([Reply(401)])
    record(receiver.url, max_attempts=1)
    row = attempt_once(Dispatcher(Executor(), settings()))
    assert (row.status, row.attempts, row.last_status_code) == (FAILED, 1, 401)
    assert row.last_error == "abnormal response code: 401 (gave up after 1 attempts)"


def test_closed_port_is_a_connection_failure(store):
    record(f"http://127.0.0.1:{free_port()}/hook")
    row = attempt_once(Dispatcher(Executor(), settings()))
    assert row.status == PENDING and row.last_status_code is None
    assert row.last_error.startswith("connection failed") and "refused" in row.last_error


def test_silent_endpoint_times_out():
    # accepts the connection (kernel backlog) and never answers
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        from sidecar.dispatch.render import Request

        started = time.monotonic()
        answer = Sender(timeout=0.3, addresses=AddressPolicy()).send(
            Request(f"http://127.0.0.1:{port}/", b"{}", {}, True))
    assert answer.status_code is None and answer.error == "timeout after 0.3s"
    assert time.monotonic() - started < 5


def test_request_that_cannot_be_built_fails_instead_of_looping(store):
    queue.record_events([queue.NewEvent(
        type="PUSH_ARTIFACT", occur_at=1, operator="", project="proj", repository="proj/app",
        request_id="", payload={"type": "PUSH_ARTIFACT"},
        deliveries=(queue.NewDelivery(None, "broken", {"type": "http"}),),  # no address
    )], max_attempts=3)
    row = attempt_once(Dispatcher(Executor(), settings()))
    assert (row.status, row.attempts) == (FAILED, 1)
    assert row.last_error.startswith("cannot build the request")
    assert Attempt.select().count() == 1


def test_running_dispatchers_send_each_delivery_once(store, receivers):
    counter = {"n": 0}
    lock = threading.Lock()

    def script(_request):
        with lock:
            counter["n"] += 1
            # every third answer is a 500: those deliveries are retried
            return Reply(500 if counter["n"] % 3 == 0 else 200)

    receiver = receivers(script)
    record(receiver.url, count=40, max_attempts=10)
    # a generous timeout: on a loaded machine a slow answer would be a legitimate resend
    dispatchers = [Dispatcher(Executor(), settings(concurrency=4, timeout=10, backoff=0.02))
                   for _ in range(2)]
    for dispatcher in dispatchers:
        dispatcher.start()
    try:
        wait_until(lambda: queue.counts()[DELIVERED] == 40)
    finally:
        for dispatcher in dispatchers:
            dispatcher.stop(grace=2)
    ok = [r.json()["occur_at"] for r, n in zip(receiver.requests, range(1, 10**6), strict=False)
          if n % 3]
    assert sorted(ok) == [1_700_000_000 + n for n in range(40)]
    assert Attempt.select().count() == len(receiver.requests)


def test_stop_gives_back_claims_not_yet_sent(store, receivers):
    receiver = receivers([Reply(200, delay=0.5)])
    record(receiver.url, count=5)
    dispatcher = Dispatcher(Executor(), settings(concurrency=5))
    # claimed but not yet picked up by a sender: as if the worker stopped right after claiming
    for delivery in queue.claim(3, LEASE):
        dispatcher.lane._work.put(delivery)
    dispatcher.stop(grace=0)
    assert queue.counts() == {PENDING: 5, SENDING: 0, DELIVERED: 0, FAILED: 0, SKIPPED: 0}
    assert len(queue.claim(5, LEASE)) == 5
    assert receiver.requests == []


def test_stop_waits_for_sends_under_way(store, receivers):
    receiver = receivers([Reply(200, delay=0.5)])
    record(receiver.url, count=2)
    dispatcher = Dispatcher(Executor(), settings(concurrency=2, timeout=5))
    dispatcher.start()
    receiver.wait_for(2, timeout=10)
    dispatcher.stop()
    assert queue.counts()[DELIVERED] == 2


def test_sender_keeps_its_connection_for_the_next_delivery(receivers):
    """A small answer is read to its end, so the next webhook to the same endpoint goes out on
    the same connection (a new one each time was most of a delivery's CPU)."""
    receiver = receivers([Reply(200, body=b"ok" * 100)])
    sender = Sender(5.0, AddressPolicy())
    for n in range(3):
        answer = sender.send(render({"type": "PUSH_ARTIFACT", "n": n},
                                    {"type": "http", "address": receiver.url}, f"u{n}"))
        assert answer.status_code == 200 and answer.excerpt == "ok" * 100
    assert len({r.client_port for r in receiver.wait_for(3)}) == 1


def test_a_long_answer_is_not_read_to_its_end(receivers):
    big = b"x" * (DRAIN + EXCERPT + 10)
    receiver = receivers([Reply(200, body=big)])
    sender = Sender(5.0, AddressPolicy())
    request = render({"type": "PUSH_ARTIFACT"}, {"type": "http", "address": receiver.url}, "u")
    first, second = sender.send(request), sender.send(request)
    assert first.status_code == second.status_code == 200
    assert first.excerpt == "x" * EXCERPT
    assert len({r.client_port for r in receiver.wait_for(2)}) == 2  # closed, not drained


def test_recorded_deliveries_go_straight_to_the_dispatcher_of_the_process(store, receivers):
    """The recorder claims the deliveries it creates for its own dispatcher: they are sent
    without waiting for a poll (here the poll is 30 s and nobody wakes the dispatcher)."""
    from sidecar.events.model import ArtifactEvent
    from sidecar.record.recorder import Recorder
    from sidecar.record.recorder import RecorderSettings
    from sidecar.rules.load import parse_rules

    receiver = receivers()
    executor = Executor()
    rules = {"projects": [{"name": "proj", "webhooks": [{
        "name": "ci", "event_types": ["PUSH_ARTIFACT"],
        "targets": [{"type": "http", "address": receiver.url}]}]}]}
    policy_store.sync_rules(parse_rules(json.dumps(rules), "rules.yaml", {}))
    dispatcher = Dispatcher(executor, DispatchSettings(concurrency=2, idle_poll=30.0))
    recorder = Recorder(executor, RecorderSettings(hostname="h"), handoff=dispatcher)
    dispatcher.start()
    time.sleep(0.2)  # the claimer's first (empty) look is over: from now on it sleeps 30 s
    recorder.start()
    try:
        started = time.monotonic()
        recorder.submit([ArtifactEvent(type="PUSH_ARTIFACT", repository="proj/app",
                                       digest="sha256:" + "a" * 64, operator="alice",
                                       occur_at=1_700_000_000, tags=(f"v{n}",))
                         for n in range(3)])
        arrived = receiver.wait_for(3, timeout=10)
        assert time.monotonic() - started < 5
        assert sorted(r.json()["event_data"]["resources"][0]["tag"] for r in arrived) == [
            "v0", "v1", "v2"]  # 2 slots: one handed over at a time, or two, none lost
    finally:
        recorder.stop()
        dispatcher.stop()
    assert queue.counts()[DELIVERED] == 3
    assert [a.number for a in Attempt.select()] == [1, 1, 1]
