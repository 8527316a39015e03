"""The proxy's own HTTP/1.1 client against a scripted server on a real socket.

The e2e tests drive it through the registry; these pin down the framing and connection-reuse
cases a registry rarely shows: chunked and close-delimited bodies, interim 100 responses,
servers that close idle connections, early answers to uploads, bodies cut short.
"""

from __future__ import annotations

import socket
import threading

import pytest
import urllib3

from sidecar.proxy.upstream import Upstream
from sidecar.proxy.upstream import UpstreamError


class Scripted:
    """Answers each request with the next raw reply; records requests and connections."""

    def __init__(self, replies: list[bytes], close_after: bool = False,
                 read_body: bool = True):
        self.replies = list(replies)
        self.close_after = close_after
        self.read_body = read_body
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body)
        self.connections = 0
        self.closed = threading.Event()  # set when the server has closed a connection
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        rfile = conn.makefile("rb")
        try:
            self._answer(conn, rfile)
        finally:
            rfile.close()
            conn.close()
            self.closed.set()

    def _answer(self, conn: socket.socket, rfile) -> None:
        while self.replies:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = rfile.readline()
                if not line:
                    return
                head += line
            body = self._body(head, rfile) if self.read_body else b""
            self.requests.append((head, body))
            conn.sendall(self.replies.pop(0))
            if self.close_after or not self.read_body:
                return

    @staticmethod
    def _body(head: bytes, rfile) -> bytes:
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            body = b""
            while True:
                size = int(rfile.readline().split(b";")[0], 16)
                if size == 0:
                    rfile.readline()
                    return body
                body += rfile.read(size)
                rfile.readline()
        for line in lower.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                return rfile.read(int(line.split(b":")[1]))
        return b""

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def scripted():
    servers: list[Scripted] = []

    def make(*args, **kwargs) -> Scripted:
        server = Scripted(*args, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"


def test_keep_alive_reuses_one_connection_for_sequential_requests(scripted):
    server = scripted([OK, OK, OK])
    upstream = Upstream(server.url)
    for _ in range(3):
        response = upstream.request("GET", "/v2/", {"Host": "example:5000"})
        assert response.status == 200
        assert b"".join(response.stream(1024)) == b"hello"
        response.release_conn()
    assert server.connections == 1
    assert server.requests[0][0].startswith(b"GET /v2/ HTTP/1.1\r\nHost: example:5000\r\n")


def test_repeated_headers_kept_in_order_and_joined_on_lookup(scripted):
    reply = (b"HTTP/1.1 401 Unauthorized\r\nWww-Authenticate: Basic realm=a\r\n"
             b"Www-Authenticate: Bearer realm=b\r\nContent-Length: 0\r\n\r\n")
    upstream = Upstream(scripted([reply]).url)
    response = upstream.request("GET", "/v2/", {"Host": "h"}, preload=True)
    assert response.status == 401 and response.reason == "Unauthorized"
    assert [v for k, v in response.headers.iteritems() if k == "Www-Authenticate"] == [
        "Basic realm=a", "Bearer realm=b"]
    assert response.headers.get("www-authenticate") == "Basic realm=a, Bearer realm=b"
    assert "WWW-AUTHENTICATE" in response.headers


def test_chunked_response_is_decoded_and_the_connection_reused(scripted):
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n")
    server = scripted([chunked, OK])
    upstream = Upstream(server.url)
    assert upstream.request("GET", "/a", {"Host": "h"}, preload=True).data == b"abcdefg"
    assert upstream.request("GET", "/b", {"Host": "h"}, preload=True).data == b"hello"
    assert server.connections == 1


def test_body_without_length_is_read_to_close_and_not_reused(scripted):
    server = scripted([b"HTTP/1.1 200 OK\r\n\r\nall of it", OK], close_after=True)
    upstream = Upstream(server.url)
    assert upstream.request("GET", "/a", {"Host": "h"}, preload=True).data == b"all of it"
    assert upstream.request("GET", "/b", {"Host": "h"}, preload=True).data == b"hello"
    assert server.connections == 2


def test_interim_100_continue_is_skipped(scripted):
    reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    upstream = Upstream(scripted([reply]).url)
    response = upstream.request("PUT", "/x", {"Host": "h", "Expect": "100-continue"},
                                body=b"data")
    assert response.status == 201


def test_head_and_304_carry_no_body_and_keep_the_connection(scripted):
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
    not_modified = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n"
    server = scripted([head, not_modified, OK])
    upstream = Upstream(server.url)
    response = upstream.request("HEAD", "/m", {"Host": "h"})
    assert response.headers["Content-Length"] == "1234"
    response.release_conn()
    assert upstream.request("GET", "/m", {"Host": "h"}, preload=True).data == b""
    assert upstream.request("GET", "/m", {"Host": "h"}, preload=True).data == b"hello"
    assert server.connections == 1


def test_a_connection_the_server_closed_while_idle_is_replaced(scripted):
    server = scripted([OK, OK], close_after=True)
    upstream = Upstream(server.url)
    assert upstream.request("GET", "/a", {"Host": "h"}, preload=True).data == b"hello"
    server.closed.wait(5)
    # the server closed that connection after answering; the next request must not fail
    assert upstream.request("GET", "/b", {"Host": "h"}, preload=True).data == b"hello"
    assert server.connections == 2


def test_streamed_upload_is_not_sent_on_a_connection_the_server_closed(scripted):
    created = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    server = scripted([OK, created], close_after=True)
    upstream = Upstream(server.url)
    upstream.request("GET", "/a", {"Host": "h"}, preload=True)
    server.closed.wait(5)
    pieces = iter([b"abc", b"def"])
    response = upstream.request("PATCH", "/up", {"Host": "h"}, body=pieces, chunked=True,
                                preload=True)
    assert response.status == 201
    head, body = server.requests[1]
    assert b"transfer-encoding: chunked" in head.lower() and body == b"abcdef"


def test_file_like_body_is_streamed_with_its_content_length(scripted):
    import io

    server = scripted([b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"])
    upstream = Upstream(server.url)
    data = b"x" * 3_000_000
    response = upstream.request("PUT", "/blob", {"Host": "h", "Content-Length": str(len(data))},
                                body=io.BytesIO(data), preload=True)
    assert response.status == 201
    assert server.requests[0][1] == data


def test_early_answer_to_an_upload_is_returned(scripted):
    denied = (b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\nConnection: close\r\n\r\n"
              b"denied")
    upstream = Upstream(scripted([denied], read_body=False).url)

    def endless():
        while True:
            yield b"z" * 65536

    response = upstream.request("PATCH", "/up", {"Host": "h"}, body=endless(), chunked=True)
    assert response.status == 401
    assert response.data == b"denied"


def test_body_cut_short_raises_an_http_error(scripted):
    short = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"
    upstream = Upstream(scripted([short], close_after=True).url)
    response = upstream.request("GET", "/blob", {"Host": "h"})
    with pytest.raises(urllib3.exceptions.HTTPError, match="unsent"):
        b"".join(response.stream(1024))


def test_unread_body_closes_the_connection_instead_of_reusing_it(scripted):
    server = scripted([OK, OK])
    upstream = Upstream(server.url)
    upstream.request("GET", "/a", {"Host": "h"}).release_conn()  # body never read
    assert upstream.request("GET", "/b", {"Host": "h"}, preload=True).data == b"hello"
    assert server.connections == 2


def test_refused_connection_is_an_upstream_error_naming_the_errno():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    upstream = Upstream(f"http://127.0.0.1:{port}", connect_timeout=1)
    with pytest.raises(UpstreamError, match=r"\[Errno 111\]"):
        upstream.request("GET", "/v2/", {"Host": "h"})
    assert not upstream.healthy()


def test_missing_host_and_body_length_are_filled_in(scripted):
    server = scripted([OK, OK])
    upstream = Upstream(server.url)
    upstream.request("POST", "/v2/r/blobs/uploads/", {}, preload=True)
    upstream.request("PUT", "/x", {"Host": "h"}, body=b"12345", preload=True)
    first, second = server.requests[0][0].lower(), server.requests[1]
    assert f"host: {server.url[7:]}".encode() in first and b"content-length: 0" in first
    assert b"content-length: 5" in second[0].lower() and second[1] == b"12345"
