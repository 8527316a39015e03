"""A webhook receiver for the benchmark: answers 200, counts, keeps nothing.

Runs as its own process so its CPU shows apart from the sidecar's. GET /count returns how many
POSTs arrived.

    python3 bench/receiver.py PORT
"""

from __future__ import annotations

import http.server
import sys
import threading

_count = 0
_lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802
        global _count
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with _lock:
            _count += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):  # noqa: N802
        body = str(_count).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
