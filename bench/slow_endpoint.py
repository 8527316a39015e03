"""A webhook endpoint that answers after 10 s does not slow proxied pulls.

    python3 bench/slow_endpoint.py                  # 600 pulls, 4 clients, 1 worker
    python3 bench/slow_endpoint.py --pulls 2000 --clients 8 --workers 2

Each pull is a manifest GET through the sidecar, which fires PULL_ARTIFACT; a rule sends every
pull to a receiver in this process. Run twice: the receiver answers at once, then only after
`--delay` seconds (the attempt timeout is raised above it, so every send holds a sender for the
whole delay and the queue grows behind them). Printed: pull latency p50/p99 in each run and
their ratio (slow / fast); 1.0 means the endpoint's slowness does not reach the request path.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.services import pull_rules  # noqa: E402
from tests.support import clients  # noqa: E402
from tests.support.images import make_image  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.registry import Registry  # noqa: E402
from tests.support.sidecar import Sidecar  # noqa: E402

REPO = "bench/slow"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Endpoint(http.server.ThreadingHTTPServer):
    """Answers every POST 200 after `delay` seconds."""

    daemon_threads = True

    def __init__(self, port: int, delay: float):
        super().__init__(("127.0.0.1", port), _Handler)
        self.delay = delay
        self.received = 0
        self.lock = threading.Lock()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(self.server.delay)
        with self.server.lock:
            self.server.received += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def _pulls(netloc: str, count: int, clients_n: int) -> list[float]:
    host, port = netloc.rsplit(":", 1)

    def one(_i: int) -> float:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            started = time.perf_counter()
            conn.request("GET", f"/v2/{REPO}/manifests/v1", headers={"Accept": OCI_MANIFEST})
            response = conn.getresponse()
            response.read()
            elapsed = time.perf_counter() - started
            if response.status != 200:
                raise RuntimeError(f"pull answered {response.status}")
            return elapsed
        finally:
            conn.close()

    with ThreadPoolExecutor(clients_n) as pool:
        return list(pool.map(one, range(count)))


def _run(workdir: Path, registry: Registry, delay: float, args) -> dict:
    port = free_port()
    endpoint = Endpoint(port, delay)
    threading.Thread(target=endpoint.serve_forever, daemon=True).start()
    sidecar = Sidecar(
        workdir, registry.url, rules=pull_rules(f"http://127.0.0.1:{port}/hook", "bench"),
        workers=args.workers,
        config={"notification": {"webhook_job_http_client_timeout": delay + 5},
                "sidecar": {"rules_poll_seconds": 2.0}},
        record_unmatched=False)
    sidecar.start()
    try:
        _pulls(sidecar.netloc, 50, args.clients)  # warm-up
        latencies = sorted(_pulls(sidecar.netloc, args.pulls, args.clients))
        status = sidecar.status()
    finally:
        sidecar.stop()
        endpoint.shutdown()
    return {"p50": statistics.median(latencies) * 1000,
            "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
            "queued": status["queue"]["depth"], "received": endpoint.received}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pulls", type=int, default=600)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--delay", type=float, default=10.0, help="the slow endpoint's delay")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-slow-"))
    registry = Registry(workdir / "registry").start()
    try:
        layout = workdir / "image"
        make_image(layout, tag="v1", layers=1, layer_size=4096)
        clients.push(layout, "v1", f"{registry.netloc}/{REPO}:v1")
        fast = _run(workdir / "fast", registry, 0.0, args)
        slow = _run(workdir / "slow", registry, args.delay, args)
    finally:
        registry.stop()
    print(f"\n## Pull latency with a webhook endpoint answering at once vs after "
          f"{args.delay:g} s ({args.pulls} pulls, {args.clients} clients, "
          f"{args.workers} worker{'s' if args.workers > 1 else ''})")
    print(f"{'endpoint':<10}{'p50 ms':>9}{'p99 ms':>9}{'queued at end':>15}{'answered':>10}")
    for name, run in (("fast", fast), ("slow", slow)):
        print(f"{name:<10}{run['p50']:>9.2f}{run['p99']:>9.2f}{run['queued']:>15}"
              f"{run['received']:>10}")
    print(f"ratio slow/fast: p50 {slow['p50'] / fast['p50']:.2f}, "
          f"p99 {slow['p99'] / fast['p99']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
