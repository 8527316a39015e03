"""Measuring tools: wrk and curl runs, CPU time and memory of processes from /proc."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import threading
from dataclasses import dataclass

OCI_ACCEPT = "Accept: application/vnd.oci.image.manifest.v1+json"
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class WrkResult:
    rps: float
    requests: int
    bad: int  # non-2xx/3xx responses plus socket errors
    latency: str
    cpu_us_per_request: dict[str, float]  # process group name -> CPU microseconds per request


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes so far (exited ones count as 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / _TICK


def memory_kib(pid: int, key: str) -> int:
    """A Vm* line of /proc/PID/status in KiB (VmHWM: peak resident, VmRSS: now)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size in KiB: pages shared by master and workers counted once in all,
    each process carrying its share (what the tree really occupies)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """Samples VmRSS of processes every 50 ms in a thread; `peak` is the highest sum seen."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.peak_kib = {pid: 0 for pid in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                self.peak_kib[pid] = max(self.peak_kib[pid], memory_kib(pid, "VmRSS"))
            self._stop.wait(0.05)


def wrk(url: str, duration: str, connections: int = 16, threads: int = 2,
        watch: dict[str, list[int]] | None = None) -> WrkResult:
    """wrk against `url` with the OCI Accept header; CPU of `watch` groups per request."""
    watch = watch or {}
    before = {name: cpu_seconds(pids) for name, pids in watch.items()}
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}", "-H", OCI_ACCEPT, url],
        capture_output=True, text=True, check=True,
    ).stdout
    after = {name: cpu_seconds(pids) for name, pids in watch.items()}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    bad = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        bad += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                          out):
        bad += sum(int(g) for g in match.groups())
    latency = re.search(r"Latency\s+(\S+)", out).group(1)
    per_request = {name: (after[name] - before[name]) * 1e6 / max(requests, 1)
                   for name in watch}
    return WrkResult(rps, requests, bad, latency, per_request)


def curl_get_seconds(url: str) -> float:
    """Time of one `curl -o /dev/null` GET; raises unless the answer is 200."""
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", url],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    if out[0] != "200":
        raise RuntimeError(f"GET {url} answered {out[0]}")
    return float(out[1])


def spread(values: list[float], digits: int = 2) -> str:
    """Median and range, e.g. '0.81 (0.78-0.84)'."""
    if not values:
        return "-"
    return (f"{statistics.median(values):.{digits}f} "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})")
