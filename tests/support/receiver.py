"""A real HTTP webhook receiver on loopback that records what it got and answers as told."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field

from tests.support.ports import free_port


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    header_list: list[tuple[str, str]]
    body: bytes
    at: float
    client_port: int = 0  # the sender's side of the connection: one port, one connection

    def json(self):
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


class Receiver:
    """Answers each POST with the next Reply of `script` (the last one repeats)."""

    def __init__(self, script: list[Reply] | Callable[[Received], Reply] | None = None,
                 port: int | None = None, tls: tuple[str, str] | None = None,
                 host: str = "127.0.0.1"):
        self.host = host  # any loopback address (127.0.0.2 for a second "host")
        self.port = port or free_port()
        self.tls = tls  # (certfile, keyfile): serve HTTPS
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}/hook"
        self.requests: list[Received] = []
        self._script = script or [Reply()]
        self._lock = threading.Condition()
        self._server: http.server.ThreadingHTTPServer | None = None

    def _reply_for(self, request: Received) -> Reply:
        if callable(self._script):
            return self._script(request)
        index = min(len(self.requests) - 1, len(self._script) - 1)
        return self._script[index]

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                request = Received(
                    method="POST", path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    header_list=list(self.headers.items()), body=body, at=time.time(),
                    client_port=self.client_address[1],
                )
                with receiver._lock:
                    receiver.requests.append(request)
                    reply = receiver._reply_for(request)
                    receiver._lock.notify_all()
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass

            do_PUT = do_POST  # noqa: N815

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 128  # listen backlog: a sidecar opens up to 10 per worker at once

        self._server = Server((self.host, self.port), Handler)
        self._server.daemon_threads = True
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """Block until `count` requests arrived; return them (raise if they did not)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"receiver got {len(self.requests)} requests, expected {count}: "
                        f"{[r.body[:200] for r in self.requests]}")
                self._lock.wait(left)
            return list(self.requests)

    def events(self) -> list[dict]:
        return [r.json() for r in self.requests]


def first_try_fails() -> tuple[Callable[[Received], Reply], dict[str, int]]:
    """A script that answers 503 to the first send of each event (by digest), 200 after, so
    retries are claimed again; and the count of sends per digest it saw."""
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def script(request: Received) -> Reply:
        digest = request.json()["event_data"]["resources"][0]["digest"]
        with lock:
            seen[digest] = seen.get(digest, 0) + 1
            return Reply(503 if seen[digest] == 1 else 200)

    return script, seen
