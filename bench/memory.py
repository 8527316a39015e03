"""Memory of the whole sidecar process tree (master + workers) while 1 GiB streams through it.

Run by bench/run.py (`--only rss`). A fresh sidecar with 2 workers, started as a deployment's
probes see it (polled on /sidecar/healthz: no admin request): a blob uploaded through it in one
chunked PATCH, then downloaded. VmRSS of every process is sampled every 50 ms; printed are each
process's RSS after start (once every worker has loaded) and at its peak, and the tree's sum
(what `ps` adds up; it counts pages shared by master and workers more than once).

A worker builds its admin plane (Flask, the API, the UI) on its first admin request, so the
tree is measured again after one GET /sidecar/status with the admin's login, and once every
worker has answered one (what a sidecar whose API or UI is in use holds).
"""

from __future__ import annotations

import time
import urllib.request
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
    sidecar = start_sidecar(workdir / "sidecar-rss", registry.url, workers=workers,
                            ready="/sidecar/healthz")
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
        admin = admin_plane_kib(sidecar, pids)
        return {"size_mib": size_mib, "pids": pids, "master": sidecar.process.pid,
                "start": start_kib, "end": end_kib, "pss_end": pss_end,
                "peak": dict(sampler.peak_kib), **admin,
                "upload_s": up, "download_s": min(down, down2), "direct_download_s": direct}
    finally:
        sidecar.stop()


def admin_plane_kib(sidecar, pids: list[int], tries: int = 60) -> dict:
    """The tree's RSS after one admin request (GET /sidecar/status, on a fresh connection), and
    after more until every worker has built its admin plane (or `tries` ran out); the first
    request's seconds (it imports Flask and the blueprints in the worker that takes it)."""
    workers = [pid for pid in pids if pid != sidecar.process.pid]
    started = time.monotonic()
    _admin_get(sidecar)
    first_s = time.monotonic() - started
    one = settled_kib(pids)
    loaded = [pid for pid in workers if admin_plane_in(pid)]
    one_workers = len(loaded)
    for _ in range(tries):
        if len(loaded) == len(workers):
            break
        _admin_get(sidecar)
        loaded = [pid for pid in workers if admin_plane_in(pid)]
    every = settled_kib(pids)
    started = time.monotonic()
    _admin_get(sidecar)  # a worker that has it: what the first one cost beyond this
    later_s = time.monotonic() - started
    return {"admin_first_s": first_s, "admin_later_s": later_s, "admin_one": one,
            "admin_one_workers": one_workers, "admin_every": every,
            "admin_every_workers": len(loaded), "pss_admin": sum(pss_kib(pid) for pid in pids)}


def _admin_get(sidecar) -> None:
    request = urllib.request.Request(f"{sidecar.url}/sidecar/status",
                                     headers=sidecar.admin_headers())
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def admin_plane_in(pid: int) -> bool:
    """Whether a worker has loaded Flask's stack: Flask, Werkzeug and Jinja2 all import
    markupsafe, whose compiled speedups then show among its mapped files."""
    try:
        with open(f"/proc/{pid}/maps") as maps:
            return "markupsafe/_speedups" in maps.read()
    except OSError:
        return False


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
    workers = len(result["pids"]) - 1
    one = sum(result["admin_one"].values()) / 1024
    every = sum(result["admin_every"].values()) / 1024
    print(f"admin plane: the first GET /sidecar/status took "
          f"{result['admin_first_s'] * 1000:.0f} ms (a later one "
          f"{result['admin_later_s'] * 1000:.0f} ms); tree {one:.0f} MB after it "
          f"({result['admin_one_workers']} of {workers} workers loaded), {every:.0f} MB with it "
          f"in {result['admin_every_workers']} of {workers} "
          f"(PSS {result['pss_admin'] / 1024:.0f} MB)")
    return peak
