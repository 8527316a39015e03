"""What a storage quota costs a push: the same pushes through one sidecar into a project without
a quota and into one with a quota, and straight to the registry, in one run.

    python3 bench/quota.py                            # 5 rounds of 40 pushes, 4 at a time
    python3 bench/quota.py --rounds 3 --pushes 20 --layers 3 --layer-kib 256
    python3 bench/quota.py --database postgresql://postgres@127.0.0.1:5432/bench

A push is what skopeo sends: per blob POST, PATCH (Content-Length), PUT ?digest=; then the
manifest PUT. Every push has fresh random blobs, made before the clock starts, so each blob
upload is a reservation in the quota project (one store round trip) and a settle after it.
Targets alternate round by round; figures are medians with their (min-max) spread, and the
sidecar's CPU per push is printed beside throughput (it moves less with machine load).
Nothing is asserted (see bench/README.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from urllib.parse import urljoin

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.measure import cpu_seconds  # noqa: E402
from bench.measure import spread  # noqa: E402
from bench.services import process_tree  # noqa: E402
from tests.support.registry import Registry  # noqa: E402
from tests.support.sidecar import Sidecar  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_local = threading.local()


@dataclass
class Target:
    name: str
    url: str
    project: str
    pids: list[int] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    registry_ms: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Image:
    blobs: tuple[tuple[str, bytes], ...]  # config first
    manifest: bytes


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_image(layers: int, layer_size: int) -> Image:
    blobs = [os.urandom(layer_size) for _ in range(layers)]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [_digest(b) for b in blobs]},
                         "seed": os.urandom(8).hex()}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": _digest(b), "size": len(b)} for b in blobs],
    }).encode()
    return Image(tuple((_digest(b), b) for b in [config, *blobs]), manifest)


def _session() -> requests.Session:
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
        _local.session.trust_env = False
    return _local.session


def push(base: str, repository: str, image: Image) -> None:
    """POST, PATCH, PUT ?digest= per blob, then the manifest: skopeo's sequence."""
    http = _session()
    for digest, data in image.blobs:
        start = http.post(f"{base}/v2/{repository}/blobs/uploads/", timeout=60)
        assert start.status_code == 202, start.text
        location = urljoin(base, start.headers["Location"])
        patch = http.patch(location, data=data, timeout=60,
                           headers={"Content-Type": "application/octet-stream"})
        assert patch.status_code == 202, patch.text
        location = urljoin(base, patch.headers["Location"])
        done = http.put(f"{location}&digest={digest}", timeout=60)
        assert done.status_code == 201, done.text
    put = http.put(f"{base}/v2/{repository}/manifests/v1", data=image.manifest, timeout=60,
                   headers={"Content-Type": OCI_MANIFEST})
    assert put.status_code == 201, put.text


def run_round(target: Target, images: list[Image], concurrency: int, round_no: int,
              registry_pids: list[int]) -> float:
    before, registry_before = cpu_seconds(target.pids), cpu_seconds(registry_pids)
    start = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda n: push(target.url, f"{target.project}/r{round_no}-{n}",
                                     images[n]), range(len(images))))
    seconds = time.monotonic() - start
    rate = len(images) / seconds
    target.rate.append(rate)
    if target.pids:
        target.cpu_ms.append((cpu_seconds(target.pids) - before) * 1000 / len(images))
    target.registry_ms.append((cpu_seconds(registry_pids) - registry_before) * 1000
                              / len(images))
    log(f"  round {round_no + 1} {target.name:<28} {rate:7.1f} pushes/s")
    return rate


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pushes", type=int, default=40, help="pushes per target per round")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--layer-kib", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database", help="the sidecar's store (default: SQLite)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="sidecar-bench-quota-"))
    registry = Registry(workdir / "registry").start()
    rules = {"projects": [{"name": "free"},
                          {"name": "quota", "quota": {"storage": "1024TiB"}}]}
    sidecar = None
    log(f"load average before: {load_average()}")
    try:
        # default poll intervals, as bench/run.py's sidecars
        sidecar = Sidecar(workdir / "sidecar", registry.url, rules=rules,
                          config={"sidecar": {"rules_poll_seconds": 2.0}},
                          workers=args.workers, database=args.database,
                          record_unmatched=False).start()
        pids = process_tree(sidecar.process.pid)
        registry_pids = process_tree(registry.process.pid)
        direct = Target("direct", registry.url, "free")
        free = Target("sidecar, no quota", sidecar.url, "free", pids)
        quota = Target("sidecar, quota", sidecar.url, "quota", pids)
        targets = [direct, free, quota]
        for target in targets:  # warm pools
            push(target.url, f"{target.project}/warm", make_image(1, 1024))
        for round_no in range(args.rounds):
            order = targets[round_no % 3:] + targets[:round_no % 3]
            rates = {}
            for target in order:
                images = [make_image(args.layers, args.layer_kib * 1024)
                          for _ in range(args.pushes)]
                rates[target.name] = run_round(target, images, args.concurrency, round_no,
                                               registry_pids)
            free.ratios.append(rates[free.name] / rates[direct.name])
            quota.ratios.append(rates[quota.name] / rates[free.name])
        status = sidecar.status()
    finally:
        if sidecar is not None:
            sidecar.stop()
        registry.stop()
    print(f"\n## Push through the sidecar, with and without a quota ({args.rounds} rounds of "
          f"{args.pushes} pushes, {args.concurrency} at a time, {args.layers} x "
          f"{args.layer_kib} KiB layers + config, {args.workers} worker(s), "
          f"{'SQLite' if not args.database else 'PostgreSQL'})")
    print(f"{'target':<28}{'pushes/s':>22}{'sidecar CPU ms/push':>22}"
          f"{'registry CPU ms/push':>22}")
    for target in targets:
        own = f"{statistics.median(target.cpu_ms):.1f}" if target.cpu_ms else "-"
        print(f"{target.name:<28}{spread(target.rate, 1):>22}{own:>22}"
              f"{statistics.median(target.registry_ms):>22.1f}")
    print(f"RATIO sidecar without quota / direct = {spread(free.ratios)}")
    print(f"RATIO sidecar with quota / without = {spread(quota.ratios)}")
    extra = statistics.median(quota.cpu_ms) - statistics.median(free.cpu_ms)
    print(f"quota's extra sidecar CPU per push: {extra:.1f} ms "
          f"({extra * 1000 / (args.layers + 2):.0f} us per request that adds bytes)")
    print(f"load average after: {load_average()}")
    quotas = status.get("quotas")
    if quotas:
        print(f"quota usage at the end: {json.dumps(quotas)[:300]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
