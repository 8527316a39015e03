"""What bounds the proxy's figures: the same work with less machinery around it.

    python3 bench/floor.py

Serves GET /v2/<repo>/tags/list (proxied, no event) and a 200 MB blob through:
- gunicorn-static: gunicorn + gevent answering a fixed body (no upstream): gunicorn's own cost;
- gunicorn-proxy: gunicorn + gevent, a bare WSGI app forwarding with sidecar's Upstream client;
- gevent-proxy: gevent's StreamServer with a minimal HTTP/1.1 loop and the same client;
- thread-relay (blob only): blocking sockets, one thread per connection, 256 KiB copies.
Only for diagnosis: these servers skip everything a real proxy must do (limits, chunked request
bodies, errors); the sidecar's numbers come from bench/run.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.blobs import make_blob  # noqa: E402
from bench.blobs import upload_blob  # noqa: E402
from bench.measure import curl_get_seconds  # noqa: E402
from bench.measure import spread  # noqa: E402
from bench.measure import wrk  # noqa: E402
from bench.services import process_tree  # noqa: E402
from tests.support import clients  # noqa: E402
from tests.support.images import make_image  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.ports import wait_http  # noqa: E402
from tests.support.registry import Registry  # noqa: E402

BODY = b'{"name":"bench/small","tags":["v1"]}\n'
_upstream = None


def static_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(BODY)))])
    return [BODY]


def proxy_app(environ, start_response):
    global _upstream
    if _upstream is None:
        from sidecar.proxy.upstream import Upstream

        _upstream = Upstream(os.environ["FLOOR_UPSTREAM"])
    response = _upstream.request(environ["REQUEST_METHOD"], environ["RAW_URI"],
                                 {"Host": environ.get("HTTP_HOST", "")})
    start_response(f"{response.status} {response.reason}", list(response.headers.iteritems()))
    return response.stream(256 * 1024)


def serve_gevent(port: int, upstream_url: str) -> None:
    from gevent import monkey

    monkey.patch_all()
    from gevent.server import StreamServer

    from sidecar.proxy.upstream import Upstream

    upstream = Upstream(upstream_url)

    def handle(sock, _address):
        rfile = sock.makefile("rb", buffering=65536)
        while True:
            line = rfile.readline(65537)
            if not line:
                return
            method, target, _ = line.decode("latin-1").split(" ", 2)
            headers = {}
            while (header := rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
                name, _, value = header.decode("latin-1").partition(":")
                headers[name] = value.strip()
            response = upstream.request(method, target, headers)
            head = [f"HTTP/1.1 {response.status} {response.reason}\r\n"]
            head += [f"{k}: {v}\r\n" for k, v in response.headers.iteritems()]
            first = True
            for data in response.stream(256 * 1024):
                sock.sendall(("".join(head) + "\r\n").encode("latin-1") + data if first
                             else data)
                first = False
            if first:
                sock.sendall(("".join(head) + "\r\n").encode("latin-1"))

    StreamServer(("127.0.0.1", port), handle).serve_forever()


def serve_relay(port: int, upstream_port: int) -> None:
    listener = socket.create_server(("127.0.0.1", port))

    def handle(client: socket.socket) -> None:
        rfile = client.makefile("rb")
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = rfile.readline()
                if not line:
                    return
                head += line
            with socket.create_connection(("127.0.0.1", upstream_port)) as up:
                up.sendall(head)
                ufile = up.makefile("rb", buffering=256 * 1024)
                answer = b""
                while not answer.endswith(b"\r\n\r\n"):
                    answer += ufile.readline()
                length = next(int(line.split(b":")[1]) for line in answer.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                client.sendall(answer)
                while length:
                    data = ufile.read1(min(length, 256 * 1024))
                    client.sendall(data)
                    length -= len(data)

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def _start(kind: str, registry: Registry) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "FLOOR_UPSTREAM": registry.url,
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    if kind.startswith("gunicorn"):
        app = "bench.floor:static_app" if kind == "gunicorn-static" else "bench.floor:proxy_app"
        args = [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1",
                "--worker-connections", "1000", "-b", f"127.0.0.1:{port}", app]
    else:
        flag = "--serve-gevent" if kind == "gevent-proxy" else "--serve-relay"
        args = [sys.executable, __file__, flag, str(port),
                registry.url if kind == "gevent-proxy" else str(registry.port)]
    process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/v2/", ok=(200, 401, 404))
    return process, f"http://127.0.0.1:{port}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", default="4s")
    parser.add_argument("--serve-gevent", nargs=2, metavar=("PORT", "UPSTREAM"))
    parser.add_argument("--serve-relay", nargs=2, metavar=("PORT", "UPSTREAM_PORT"))
    args = parser.parse_args()
    if args.serve_gevent:
        serve_gevent(int(args.serve_gevent[0]), args.serve_gevent[1])
        return 0
    if args.serve_relay:
        serve_relay(int(args.serve_relay[0]), int(args.serve_relay[1]))
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="sidecar-floor-"))
    processes: list[subprocess.Popen] = []
    registry = Registry(workdir / "registry").start()
    try:
        make_image(workdir / "image", tag="v1", layers=1, layer_size=16 * 1024)
        clients.push(workdir / "image", "v1", f"{registry.netloc}/bench/small:v1")
        blob, digest = make_blob(Path(tempfile.gettempdir()) / "sidecar-bench", 200)
        upload_blob(registry.url, "bench/blob", blob, digest)
        targets = [("direct", registry.url, [registry.process.pid])]
        for kind in ("gunicorn-static", "gunicorn-proxy", "gevent-proxy", "thread-relay"):
            process, url = _start(kind, registry)
            processes.append(process)
            targets.append((kind, url, process_tree(process.pid)))
        cpu: dict[str, list[float]] = {name: [] for name, _, _ in targets}
        rps: dict[str, list[float]] = {name: [] for name, _, _ in targets}
        blob_s: dict[str, list[float]] = {name: [] for name, _, _ in targets}
        for _ in range(args.rounds):
            for name, url, pids in targets:
                if name != "thread-relay":
                    result = wrk(f"{url}/v2/bench/small/tags/list", args.duration,
                                 watch={"own": pids})
                    cpu[name].append(result.cpu_us_per_request["own"])
                    rps[name].append(result.rps)
                if name != "gunicorn-static":
                    blob_s[name].append(curl_get_seconds(f"{url}/v2/bench/blob/blobs/{digest}"))
        direct_rps = statistics.median(rps["direct"])
        direct_blob = min(blob_s["direct"])
        print(f"\n{'server':<18}{'tags/list req/s':>22}{'/direct':>9}{'CPU us/req':>12}"
              f"{'200 MB GET best s':>19}{'direct/it':>11}")
        for name, _, _ in targets:
            own = f"{statistics.median(cpu[name]):.0f}" if cpu[name] and name != "direct" else "-"
            ratio = f"{statistics.median(rps[name]) / direct_rps:.2f}" if rps[name] else "-"
            best = f"{min(blob_s[name]):.3f}" if blob_s[name] else "-"
            blob_ratio = f"{direct_blob / min(blob_s[name]):.2f}" if blob_s[name] else "-"
            print(f"{name:<18}{spread(rps[name], 0) if rps[name] else '-':>22}{ratio:>9}"
                  f"{own:>12}{best:>19}{blob_ratio:>11}")
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, 15)
            except ProcessLookupError:
                pass
            process.wait(10)
        registry.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
