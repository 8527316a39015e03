"""Destinations that misbehave, for replication's bad-input tests: one that answers every
request with an HTML page, one that redirects every request to itself, and one in front of a
real registry that names a wrong digest for every manifest it holds; and one in front of a real
registry that is slow to delete ("slow-delete": retention's kill -9 test cuts a run short)."""

from __future__ import annotations

import http.client
import http.server
import threading
import time
from urllib.parse import urlsplit

from tests.support.ports import free_port

WRONG_DIGEST = "sha256:" + "0" * 64
GARBAGE = b"<html><body><h1>Welcome to nginx!</h1></body></html>"


class BadRegistry:
    """`mode`: "garbage", "redirect", "wrong-digest" or "slow-delete" (which need
    `upstream`). `answers` records (method, path, status) of what was forwarded."""

    def __init__(self, mode: str, upstream: str | None = None, delay: float = 0.5):
        self.mode = mode
        self.upstream = urlsplit(upstream) if upstream else None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[tuple[str, str]] = []
        self.answers: list[tuple[str, str, int]] = []
        self.delay = delay
        self._server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> BadRegistry:
        bad = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self):
                bad.requests.append((self.command, self.path))
                body = self._body()
                if bad.mode == "garbage":
                    self._reply(200, {"Content-Type": "text/html"}, GARBAGE)
                elif bad.mode == "redirect":
                    self._reply(307, {"Location": self.path}, b"")
                else:
                    self._forward(body)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self, body: bytes) -> None:
                upstream = http.client.HTTPConnection(bad.upstream.hostname,
                                                      bad.upstream.port, timeout=30)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "transfer-encoding", "content-length")}
                if body or self.command in ("PUT", "POST", "PATCH"):
                    headers["Content-Length"] = str(len(body))
                if bad.mode == "slow-delete" and self.command == "DELETE":
                    time.sleep(bad.delay)
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                answer = upstream.getresponse()
                bad.answers.append((self.command, self.path, answer.status))
                data = answer.read()
                out = {k: v for k, v in answer.getheaders()
                       if k.lower() not in ("transfer-encoding", "content-length",
                                            "connection")}
                if bad.mode == "wrong-digest" and "/manifests/" in self.path and \
                        "Docker-Content-Digest" in out:
                    out["Docker-Content-Digest"] = WRONG_DIGEST
                self._reply(answer.status, out, data, head=self.command == "HEAD",
                            length=answer.getheader("Content-Length"))
                upstream.close()

            def _reply(self, status: int, headers: dict[str, str], body: bytes,
                       head: bool = False, length: str | None = None) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", length if head and length else
                                 str(len(body)))
                self.end_headers()
                if not head and self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _any  # noqa: N815

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
