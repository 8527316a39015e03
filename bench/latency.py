"""Push -> webhook received: how long after a push its webhook arrives, at a steady push rate.

    python3 bench/latency.py                    # 50 pushes/s for 10 s, 1 and 2 workers
    python3 bench/latency.py --rate 50 --seconds 20 --workers 1

Each push is a manifest PUT through the sidecar under a new tag (the image's blobs are in the
registry already), from a few client threads on a fixed schedule. A rule sends every
PUSH_ARTIFACT to a receiver in this process, which notes when each tag's webhook arrives. The
latency is from the client having the registry's 201 to the receiver having the POST (both
clocks are this process's). Also printed: the sidecar's CPU per push, webhook included.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
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

from bench.measure import cpu_seconds  # noqa: E402
from bench.services import sidecar_pids  # noqa: E402
from bench.services import start_sidecar  # noqa: E402
from tests.support import clients  # noqa: E402
from tests.support.images import make_image  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.registry import Registry  # noqa: E402

REPO = "bench/latency"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Arrivals(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int):
        super().__init__(("127.0.0.1", port), _Handler)
        self.seen: dict[str, float] = {}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        now = time.monotonic()
        tag = json.loads(body)["event_data"]["resources"][0]["tag"]
        self.server.seen.setdefault(tag, now)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def push_rules(address: str) -> dict:
    return {"projects": [{"name": "bench", "public": False, "webhooks": [{
        "name": "pushes", "enabled": True, "event_types": ["PUSH_ARTIFACT"],
        "targets": [{"type": "http", "address": address, "skip_cert_verify": False,
                     "payload_format": "Default"}]}]}]}


def run(sidecar, manifest: bytes, rate: float, seconds: float, arrivals: Arrivals,
        prefix: str) -> dict:
    local = threading.local()
    done: dict[str, float] = {}
    put_ms: list[float] = []
    failed: list[int] = []

    def put(tag: str, at: float) -> None:
        time.sleep(max(0.0, at - time.monotonic()))
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection("127.0.0.1", sidecar.port, timeout=30)
        started = time.monotonic()
        conn.request("PUT", f"/v2/{REPO}/manifests/{tag}", body=manifest,
                     headers={"Content-Type": OCI_MANIFEST})
        response = conn.getresponse()
        response.read()
        finished = time.monotonic()
        if response.status == 201:
            done[tag] = finished
            put_ms.append((finished - started) * 1000)
        else:
            failed.append(response.status)

    count = int(rate * seconds)
    pids = sidecar_pids(sidecar)
    cpu_before = cpu_seconds(pids)
    start = time.monotonic() + 0.2
    with ThreadPoolExecutor(max_workers=8) as pool:
        for index in range(count):
            pool.submit(put, f"{prefix}{index}", start + index / rate).add_done_callback(
                lambda f: f.exception() and failed.append(repr(f.exception())))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(t not in arrivals.seen for t in done):
        time.sleep(0.05)
    cpu = cpu_seconds(pids) - cpu_before
    latencies = sorted((arrivals.seen[t] - done[t]) * 1000 for t in done if t in arrivals.seen)
    if failed:
        print(f"  {len(failed)} pushes failed: {sorted(set(map(str, failed)))[:5]}",
              file=sys.stderr)
    return {"pushed": len(done), "received": len(latencies), "latencies": latencies,
            "put_ms": statistics.median(put_ms) if put_ms else float("nan"),
            "cpu_us_per_push": cpu * 1e6 / max(len(done), 1)}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="pushes per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", default="1,2")
    measure(parser.parse_args(argv))
    return 0


def measure(args: argparse.Namespace) -> dict[int, dict]:
    """Prints the table; returns worker count -> {p50, p99, cpu_us_per_push}."""
    results: dict[int, dict] = {}
    workdir = Path(tempfile.mkdtemp(prefix="sidecar-latency-"))
    registry = Registry(workdir / "registry").start()
    port = free_port()
    arrivals = Arrivals(port)
    threading.Thread(target=arrivals.serve_forever, daemon=True).start()
    try:
        layout = workdir / "image"
        digest = make_image(layout, tag="v1", layers=1, layer_size=4096)
        clients.push(layout, "v1", f"{registry.netloc}/{REPO}:v1")
        manifest = (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
        print(f"\n## Push -> webhook received ({args.rate:g} pushes/s for {args.seconds:g} s; "
              f"`python3 bench/latency.py --rate {args.rate:g} --seconds {args.seconds:g}`)")
        print(f"{'sidecar':<12}{'pushed':>8}{'received':>10}{'p50 ms':>9}{'p90 ms':>9}"
              f"{'p99 ms':>9}{'max ms':>9}{'PUT ms':>8}{'CPU us/push':>13}")
        for workers in (int(w) for w in args.workers.split(",")):
            sidecar = start_sidecar(workdir / f"sidecar-{workers}", registry.url, workers,
                                    rules=push_rules(f"http://127.0.0.1:{port}/hook"))
            try:
                run(sidecar, manifest, args.rate, 1.0, arrivals, f"warm{workers}-")
                result = run(sidecar, manifest, args.rate, args.seconds, arrivals,
                             f"w{workers}-")
            finally:
                sidecar.stop()
            lat = result["latencies"]
            print(f"{workers} worker{'s' if workers > 1 else '':<5}{result['pushed']:>8}"
                  f"{result['received']:>10}{percentile(lat, 0.5):>9.1f}"
                  f"{percentile(lat, 0.9):>9.1f}{percentile(lat, 0.99):>9.1f}"
                  f"{(lat[-1] if lat else float('nan')):>9.1f}{result['put_ms']:>8.1f}"
                  f"{result['cpu_us_per_push']:>13.0f}")
            results[workers] = {"p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99),
                                "cpu_us_per_push": result["cpu_us_per_push"]}
        print("target: p50 <= 20 ms, p99 <= 100 ms")
    finally:
        arrivals.shutdown()
        registry.stop()
    return results


if __name__ == "__main__":
    sys.exit(main())
