"""Issue 13's table, every row from figures measured in the same `bench/run.py` run."""

from __future__ import annotations

import statistics


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(targets: list, found: dict) -> None:
    """`targets` are run.py's Targets (manifest and blob figures); `found` the other parts'."""
    by_name = {t.name: t for t in targets}
    nginx = by_name.get("nginx")
    rows: list[tuple[str, str, str, str]] = []
    for workers in (1, 2):
        plain = by_name.get(f"sidecar {workers}w")
        pulled = by_name.get(f"sidecar {workers}w +PULL policy")
        if plain is not None and plain.ratios:
            rows.append((f"manifest GET throughput, via / direct ({workers}w)",
                         _fmt(_median(plain.ratios)),
                         _fmt(_median(nginx.ratios)) if nginx and nginx.ratios else "-",
                         ">= 0.80"))
        if pulled is not None and pulled.ratios:
            rows.append((f"same, every pull delivered to a PULL policy ({workers}w)",
                         _fmt(_median(pulled.ratios)), "-", ">= 0.70"))
        if plain is not None and pulled is not None and plain.cpu_total and pulled.cpu_total:
            per_webhook = _median(pulled.cpu_total) - _median(plain.cpu_total)
            rows.append((f"sidecar CPU per delivered webhook, us ({workers}w, wrk pulls)",
                         f"{per_webhook:.0f}", "-", "<= 400"))
        if plain is not None and plain.blob_seconds and by_name["direct"].blob_seconds:
            direct = min(by_name["direct"].blob_seconds)
            nginx_blob = (f"{direct / min(nginx.blob_seconds):.2f}"
                          if nginx and nginx.blob_seconds else "-")
            rows.append((f"blob GET, time direct / via, best ({workers}w)",
                         f"{direct / min(plain.blob_seconds):.2f}", nginx_blob, ">= 0.90"))
    for workers, latency in sorted(found.get("latency", {}).items()):
        rows.append((f"push -> webhook received, p50 / p99 ms ({workers}w, 50/s)",
                     f"{latency['p50']:.0f} / {latency['p99']:.0f}", "-", "<= 20 / 100"))
        rows.append((f"sidecar CPU per push incl. its webhook, us ({workers}w, 50/s)",
                     f"{latency['cpu_us_per_push']:.0f}", "-", "-"))
    if "matching" in found:
        rows.append(("matching one event, 10,000 policies vs 1", f"{found['matching']:.2f}x",
                     "-", "<= 2x"))
    if "rss_mb" in found:
        rows.append(("process tree RSS (master + 2 workers), 1 GiB through it, MB",
                     f"{found['rss_mb']:.0f}", "-", "<= 120, flat"))
    print("\n## Issue 13's figures, this run (registry direct = 1.0)")
    print(f"{'figure':<62}{'sidecar':>12}{'nginx':>8}{'target':>14}")
    for name, ours, theirs, target in rows:
        print(f"{name:<62}{ours:>12}{theirs:>8}{target:>14}")
