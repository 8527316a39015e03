"""The webhook sender's own HTTP/1.1 client (sidecar/dispatch/client.py) against real sockets:
connections kept per endpoint, redirects as requests followed them (the address policy on
every hop), a closed kept-alive connection replaced without sending a webhook twice, timeouts,
TLS per target, and the answer's excerpt."""

from __future__ import annotations

import gzip
import socket
import struct
import threading
import time

import pytest

from sidecar.dispatch import client as client_module
from sidecar.dispatch.addresses import AddressPolicy
from sidecar.dispatch.render import Request
from sidecar.dispatch.retry import RetryPolicy
from sidecar.dispatch.sender import Sender
from sidecar.dispatch.worker import Dispatcher
from sidecar.dispatch.worker import DispatchSettings
from sidecar.store import db as store_db
from sidecar.store import delivery_queue as queue
from sidecar.store.executor import Executor
from sidecar.store.models import DELIVERED
from sidecar.store.models import PENDING
from sidecar.store.models import Attempt
from sidecar.store.models import Delivery
from tests.support.certs import self_signed
from tests.support.receiver import Reply

OPEN = AddressPolicy()
BODY = b'{"type":"PUSH_ARTIFACT"}'


def post(url: str, auth: str = "", verify: bool = True) -> Request:
    headers = {"Content-Type": "application/json", "User-Agent": "registry-webhook-sidecar"}
    if auth:
        headers["Authorization"] = auth
    return Request(url, BODY, headers, verify)


class RawServer:
    """A loopback HTTP server whose every connection runs `serve(conn, server)`: for what a
    well-behaved receiver never does (closing a kept-alive connection, answering nothing)."""

    def __init__(self, serve):
        self._serve = serve
        self.requests: list[bytes] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn, self), daemon=True).start()

    def read_request(self, conn: socket.socket) -> bool:
        """Read one request (head and Content-Length body); False at the end of the stream."""
        data = b""
        while b"\r\n\r\n" not in data:
            piece = conn.recv(65536)
            if not piece:
                return False
            data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += conn.recv(65536)
        with self._lock:
            self.requests.append(head + b"\r\n\r\n" + body)
        return True

    def close(self) -> None:
        self._listener.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
def raw_servers():
    servers: list[RawServer] = []

    def make(serve) -> RawServer:
        servers.append(RawServer(serve))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


# -- keep-alive ---------------------------------------------------------------------------

def test_each_endpoint_keeps_its_own_connection_across_deliveries(receiver_factory):
    first, second = receiver_factory(), receiver_factory()
    sender = Sender(5.0, OPEN)
    for _ in range(3):
        assert sender.send(post(first.url)).status_code == 200
        assert sender.send(post(second.url)).status_code == 200
    assert len({r.client_port for r in first.wait_for(3)}) == 1
    assert len({r.client_port for r in second.wait_for(3)}) == 1


def test_a_chunked_answer_read_to_its_end_keeps_the_connection(raw_servers):
    def serve(conn, server):
        with conn:
            while server.read_request(conn):
                conn.sendall(b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")

    server = raw_servers(serve)
    sender = Sender(5.0, OPEN)
    answers = [sender.send(post(server.url)) for _ in range(3)]
    assert [(a.status_code, a.excerpt) for a in answers] == [(202, "hello world")] * 3
    assert server.connections == 1


def test_a_kept_alive_connection_the_receiver_closed_is_replaced(raw_servers):
    """The receiver answers with keep-alive, then closes while idle (an idle timeout): the
    next webhook goes on a new connection and is delivered, once."""
    def serve(conn, server):
        with conn:
            if server.read_request(conn):
                conn.sendall(OK)
                time.sleep(0.05)

    server = raw_servers(serve)
    sender = Sender(5.0, OPEN)
    assert sender.send(post(server.url)).status_code == 200
    time.sleep(0.3)  # the receiver has closed its side by now
    second = sender.send(post(server.url))
    assert second.status_code == 200 and second.error == ""
    assert len(server.requests) == 2 and server.connections == 2


def test_a_write_refused_by_a_reset_connection_is_sent_once_more_on_a_new_one(
        raw_servers, monkeypatch):
    """The receiver resets the idle connection just after the sender's check (forced here by
    skipping the check): the write fails, nothing reached the receiver, so the webhook goes
    out once on a new connection."""
    def serve(conn, server):
        if server.read_request(conn):
            conn.sendall(OK)
            if server.connections == 1:
                time.sleep(0.05)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()  # RST
                return
            while server.read_request(conn):
                conn.sendall(OK)
        conn.close()

    server = raw_servers(serve)
    sender = Sender(5.0, OPEN)
    assert sender.send(post(server.url)).status_code == 200
    time.sleep(0.3)
    monkeypatch.setattr(client_module._Conn, "dropped", lambda self: False)
    second = sender.send(post(server.url))
    assert second.status_code == 200 and second.error == ""
    assert len(server.requests) == 2 and server.connections == 2


def test_a_request_that_was_written_is_never_written_again(raw_servers):
    """A receiver that reads the webhook and closes without answering may have acted on it:
    the attempt fails (the retry schedule decides), the receiver saw it once."""
    def serve(conn, server):
        with conn:
            server.read_request(conn)

    server = raw_servers(serve)
    answer = Sender(5.0, OPEN).send(post(server.url))
    assert answer.status_code is None and not answer.final
    assert answer.error == ("connection failed: the receiver closed the connection "
                            "without answering")
    time.sleep(0.2)
    assert len(server.requests) == 1 and server.connections == 1


# -- timeouts -----------------------------------------------------------------------------

@pytest.fixture
def store(tmp_path):
    db = store_db.bind(f"sqlite:///{tmp_path / 'client.db'}")
    yield db
    db.close()


def test_a_silent_receiver_is_a_recorded_timeout(store, raw_servers):
    def serve(conn, server):
        with conn:
            server.read_request(conn)
            time.sleep(3)

    server = raw_servers(serve)
    target = {"type": "http", "address": server.url, "payload_format": "Default"}
    queue.record_events([queue.NewEvent(
        type="PUSH_ARTIFACT", occur_at=1, operator="alice", project="proj",
        repository="proj/app", request_id="r1", payload={"type": "PUSH_ARTIFACT"},
        deliveries=(queue.NewDelivery(None, "ci", target),))], max_attempts=3)
    dispatcher = Dispatcher(Executor(), DispatchSettings(
        timeout=0.3, retry=RetryPolicy(max_attempts=3, backoff=60)))
    [claimed] = queue.claim(1, 60.0)
    started = time.monotonic()
    dispatcher.deliver(claimed)
    assert time.monotonic() - started < 2
    row = Delivery.get_by_id(claimed.id)
    assert (row.status, row.attempts, row.last_status_code) == (PENDING, 1, None)
    assert row.last_error == "timeout after 0.3s"
    [attempt] = Attempt.select().where(Attempt.delivery == claimed.id)
    assert attempt.error == "timeout after 0.3s" and attempt.status_code is None


def test_an_answer_whose_body_stalls_still_counts_by_its_status(store, raw_servers):
    def serve(conn, server):
        with conn:
            server.read_request(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            time.sleep(2)

    server = raw_servers(serve)
    answer = Sender(0.3, OPEN).send(post(server.url))
    assert answer.status_code == 200 and answer.error == ""
    assert answer.excerpt == ""  # not the whole body: nothing half-read is shown


# -- redirects ----------------------------------------------------------------------------

@pytest.mark.parametrize("code, repeated", [(301, False), (302, False), (303, False),
                                             (307, True), (308, True)])
def test_redirects_repeat_the_post_or_turn_it_into_a_get_as_before(raw_servers, code,
                                                                   repeated):
    def serve(conn, server):
        with conn:
            while server.read_request(conn):
                if len(server.requests) == 1:
                    conn.sendall(b"HTTP/1.1 %d Moved\r\nLocation: /moved?n=1\r\n"
                                 b"Content-Length: 0\r\n\r\n" % code)
                else:
                    conn.sendall(OK)

    server = raw_servers(serve)
    answer = Sender(5.0, OPEN).send(post(server.url, auth="Basic c2VjcmV0"))
    assert answer.status_code == 200
    first, second = server.requests
    assert first.startswith(b"POST /hook HTTP/1.1\r\n") and first.endswith(BODY)
    if repeated:
        assert second.startswith(b"POST /moved?n=1 HTTP/1.1\r\n") and second.endswith(BODY)
    else:
        assert second.startswith(b"GET /moved?n=1 HTTP/1.1\r\n")
        assert second.endswith(b"\r\n\r\n")
        assert b"content-length" not in second.lower()
        assert b"content-type" not in second.lower()
    assert b"Authorization: Basic c2VjcmV0" in second  # same origin: kept
    assert server.connections == 1  # the redirect's connection carried the next hop


def test_the_auth_header_is_not_sent_to_another_host(receiver_factory):
    other = receiver_factory(host="127.0.0.2")
    first = receiver_factory([Reply(307, headers={"Location": other.url})])
    answer = Sender(5.0, OPEN).send(post(first.url, auth="Bearer s3cret"))
    assert answer.status_code == 200
    [sent] = first.wait_for(1)
    [followed] = other.wait_for(1)
    assert sent.headers["authorization"] == "Bearer s3cret"
    assert "authorization" not in followed.headers
    assert followed.body == BODY


def test_a_redirect_to_a_name_of_a_private_address_is_refused(receiver_factory):
    inside = receiver_factory()  # 127.0.0.1, reached as localhost
    outside = receiver_factory(
        [Reply(302, headers={"Location": inside.url.replace("127.0.0.1", "localhost")})],
        host="127.0.0.2")
    answer = Sender(2, AddressPolicy.of(False, ["127.0.0.2/32"])).send(post(outside.url))
    assert answer.final and answer.status_code is None
    assert answer.error.startswith("refused: localhost resolves to ")
    assert len(outside.requests) == 1 and inside.requests == []


def test_a_redirect_loop_ends_after_30_hops(receiver_factory):
    loop = receiver_factory([Reply(307, headers={"Location": "/hook"})])
    answer = Sender(5.0, OPEN).send(post(loop.url))
    assert answer.status_code is None and answer.error == "request failed: Exceeded 30 redirects."
    assert len(loop.wait_for(31)) == 31


# -- TLS, headers, answers ----------------------------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("tls"))


def test_tls_is_verified_unless_the_target_skips_it(receiver_factory, certificate):
    receiver = receiver_factory(tls=certificate)
    sender = Sender(5.0, OPEN)
    refused = sender.send(post(receiver.url))
    assert refused.status_code is None
    assert refused.error == "TLS error: certificate verify failed: self-signed certificate"
    assert receiver.requests == []
    for _ in range(2):
        assert sender.send(post(receiver.url, verify=False)).status_code == 200
    assert len({r.client_port for r in receiver.wait_for(2)}) == 1


def test_a_header_with_a_line_break_is_refused_without_echoing_it(receiver):
    answer = Sender(5.0, OPEN).send(post(receiver.url, auth="Bearer x\r\nX-Injected: 1"))
    assert answer.status_code is None
    assert answer.error.startswith("request failed: invalid header 'Authorization'")
    assert "Bearer" not in answer.error and "Injected" not in answer.error
    time.sleep(0.1)
    assert receiver.requests == []


def test_the_request_carries_the_headers_requests_sent(receiver):
    assert Sender(5.0, OPEN).send(post(receiver.url)).status_code == 200
    [request] = receiver.wait_for(1)
    assert [name.lower() for name, _ in request.header_list] == [
        "host", "user-agent", "accept-encoding", "accept", "connection", "content-type",
        "content-length"]
    assert request.headers["accept-encoding"] == "gzip, deflate"
    assert request.headers["content-length"] == str(len(BODY))


def test_a_compressed_answer_is_shown_decoded(receiver_factory):
    receiver = receiver_factory([Reply(400, headers={"Content-Encoding": "gzip"},
                                       body=gzip.compress(b'{"error":"bad signature"}'))])
    answer = Sender(5.0, OPEN).send(post(receiver.url))
    assert answer.status_code == 400 and answer.excerpt == '{"error":"bad signature"}'


def test_a_closed_port_and_an_unknown_name_say_so():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    closed = Sender(2, OPEN).send(post(f"http://127.0.0.1:{port}/hook"))
    assert closed.error == "connection failed: [Errno 111] Connection refused"
    unknown = Sender(2, OPEN).send(post("http://no-such-host.invalid/hook"))
    assert unknown.error.startswith("connection failed: [Errno -")
    assert unknown.status_code is None and not unknown.final


def test_delivered_through_the_dispatcher_with_the_answer_recorded(store, receiver):
    receiver._script = [Reply(201, body=b"thanks")]
    target = {"type": "http", "address": receiver.url, "payload_format": "Default"}
    queue.record_events([queue.NewEvent(
        type="PUSH_ARTIFACT", occur_at=1, operator="alice", project="proj",
        repository="proj/app", request_id="r1", payload={"type": "PUSH_ARTIFACT"},
        deliveries=(queue.NewDelivery(None, "ci", target),))], max_attempts=3)
    [claimed] = queue.claim(1, 60.0)
    Dispatcher(Executor(), DispatchSettings(timeout=5)).deliver(claimed)
    row = Delivery.get_by_id(claimed.id)
    assert (row.status, row.last_status_code) == (DELIVERED, 201)
    [attempt] = Attempt.select().where(Attempt.delivery == claimed.id)
    assert attempt.response_excerpt == "thanks"
