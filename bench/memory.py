"""Memory of the whole sidecar process tree (master + workers) while 1 GiB streams through it.

Run by bench/run.py (`--only rss`). A fresh sidecar with 2 workers: a blob uploaded through it
in one chunked PATCH, then downloaded. VmRSS of every process is sampled every 50 ms; printed
are each process's RSS after start (once every worker has loaded) and at its peak, and the
tree's sum (what `ps` adds up; it counts pages shared by master and workers more than once).
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.blobs import make_blob
from bench.blobs import upload_blob
from bench.measure import RssSampler
from bench.measure import curl_get_seconds
from bench.measure import memory_kib
from bench.measure import pss_kib
from bench.services import sidecar_pids
from bench.services import start_sidecar

TARGET_TREE_MB = 120


def bench_rss(workdir: Path, registry, cache: Path, size_mib: int, workers: int = 2) -> dict:
    path, digest = make_blob(cache, size_mib)
    sidecar = start_sidecar(workdir / "sidecar-rss", registry.url, workers=workers)
    try:
        pids = sidecar_pids(sidecar)
        start_kib = settled_kib(pids)
        with RssSampler(pids) as sampler:
            up = upload_blob(sidecar.url, "bench/rss", path, digest, chunked=True)
            down = curl_get_seconds(f"{sidecar.url}/v2/bench/rss/blobs/{digest}")
            down2 = curl_get_seconds(f"{sidecar.url}/v2/bench/rss/blobs/{digest}")
        end_kib = {pid: memory_kib(pid, "VmRSS") for pid in pids}
        pss_end = sum(pss_kib(pid) for pid in pids)
        direct = curl_get_seconds(f"{registry.url}/v2/bench/rss/blobs/{digest}")
        return {"size_mib": size_mib, "pids": pids, "master": sidecar.process.pid,
                "start": start_kib, "end": end_kib, "pss_end": pss_end,
                "peak": dict(sampler.peak_kib),
                "upload_s": up, "download_s": min(down, down2), "direct_download_s": direct}
    finally:
        sidecar.stop()


def settled_kib(pids: list[int], quiet: float = 1.0, limit: float = 20.0) -> dict[int, int]:
    """VmRSS of each process once none has grown for `quiet` seconds (at most `limit`).

    The sidecar answers as soon as one worker has loaded the application; the other may still
    be importing it, and its RSS "after start" was then a few MB short (the tree looked to
    grow by up to 10 MB under traffic when it had only finished starting).
    """
    last = {pid: memory_kib(pid, "VmRSS") for pid in pids}
    still = time.monotonic()
    deadline = still + limit
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = {pid: memory_kib(pid, "VmRSS") for pid in pids}
        if any(now[pid] > last[pid] for pid in pids):
            still = time.monotonic()
        last = now
        if time.monotonic() - still >= quiet:
            break
    return last


def print_rss(result: dict) -> float:
    """Prints the figures; returns the tree's peak in MB."""
    size = result["size_mib"]
    print(f"\n## Process tree memory while {size} MiB stream through (master + 2 workers; "
          f"`python3 bench/run.py --only rss`)")
    print(f"chunked PATCH upload {result['upload_s']:.1f} s, GET {result['download_s']:.1f} s "
          f"(direct {result['direct_download_s']:.1f} s)")
    for pid in result["pids"]:
        role = "master" if pid == result["master"] else "worker"
        print(f"{role} {pid}: RSS after start {result['start'][pid] / 1024:.0f} MB, sampled "
              f"peak {result['peak'][pid] / 1024:.0f} MB, at the end "
              f"{result['end'][pid] / 1024:.0f} MB")
    start = sum(result["start"].values()) / 1024
    peak = sum(result["peak"].values()) / 1024
    verdict = "met" if peak <= TARGET_TREE_MB and peak - start < 10 else "NOT met"
    print(f"tree: {start:.0f} MB after start, {peak:.0f} MB at the peak "
          f"(target <= {TARGET_TREE_MB} MB and flat: {verdict}); PSS at the end "
          f"{result['pss_end'] / 1024:.0f} MB (shared pages counted once)")
    return peak
