"""Replication benchmark: one ~200 MB image replicated by the sidecar vs `skopeo copy`, between
the same two registries, printed as a ratio.

    python3 bench/replication.py               # 3 rounds, about 2 minutes once the image exists
    python3 bench/replication.py --rounds 5 --size-mb 200

A source registry with the sidecar in front of it, a destination registry, and an image of
four ~50 MB random layers (made once, cached in $TMPDIR/sidecar-bench/). Each round empties
the destination (stopped, storage wiped, started: no cached blob descriptors), then runs
`sidecar replicate bench --wait` (a manual run: planning, one task, the copy) and `skopeo
copy` of the same tag, in alternating order. The figures are the median and (min-max) of
sidecar/skopeo wall times measured in the same run; the sidecar's task time (claim to end,
from its store) is printed too. The load average is printed before and after: compare figures
from quiet runs only. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import clients  # noqa: E402
from tests.support.images import make_image  # noqa: E402
from tests.support.registry import Registry  # noqa: E402
from tests.support.sidecar import Sidecar  # noqa: E402
from tests.support.sidecar import sidecar_command  # noqa: E402

REPO = "bench/big"
LAYERS = 4


def image(cache: Path, size_mb: int) -> tuple[Path, str]:
    """An OCI layout of ~size_mb random MB in LAYERS layers; reused when cached."""
    layout = cache / f"replication-image-{size_mb}m"
    marker = layout / "digest.txt"
    if marker.exists():
        return layout, marker.read_text().strip()
    digest = make_image(layout, tag="v1", layers=LAYERS,
                        layer_size=size_mb * 1024 * 1024 // LAYERS, seed=200)
    marker.write_text(digest)
    return layout, digest


def rules(dest_url: str) -> dict:
    return {"projects": [{"name": "bench"}],
            "registries": [{"name": "dest", "url": dest_url}],
            "replication": [{"name": "bench", "dest_registry": "dest",
                             "filters": [{"type": "name", "value": REPO}]}]}


def fresh(dest: Registry) -> None:
    dest.stop()
    dest.wipe()
    dest.start()


def run_sidecar(sidecar: Sidecar) -> tuple[float, float]:
    """Wall seconds of `sidecar replicate --wait`, and the task's own seconds."""
    start = time.monotonic()
    done = subprocess.run([*sidecar_command(), "replicate", "bench", "--wait", "--database",
                           sidecar.database], capture_output=True, text=True, timeout=1800)
    wall = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"sidecar replicate failed:\n{done.stdout}{done.stderr}")
    path = sidecar.database.split(":///", 1)[1]
    with sqlite3.connect(path) as conn:
        started, finished = conn.execute(
            "SELECT started_at, finished_at FROM job WHERE kind = 'replication-task' "
            "ORDER BY id DESC LIMIT 1").fetchone()
    return wall, finished - started


def run_skopeo(source: str, dest: str) -> float:
    start = time.monotonic()
    clients.skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                   f"docker://{source}/{REPO}:v1", f"docker://{dest}/{REPO}:v1",
                   timeout=1800)
    return time.monotonic() - start


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=200)
    args = parser.parse_args()
    cache = Path(os.environ.get("TMPDIR", tempfile.gettempdir())) / "sidecar-bench"
    layout, digest = image(cache, args.size_mb)
    size = sum(p.stat().st_size for p in (layout / "blobs" / "sha256").iterdir())
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-replication-") as tmp:
        work = Path(tmp)
        source = Registry(work / "source").start()
        dest = Registry(work / "dest").start()
        sidecar = Sidecar(work / "sidecar", source.url, rules=rules(dest.url),
                          config={"sidecar": {"rules_poll_seconds": 2.0}},
                          record_unmatched=False)
        try:
            clients.push(layout, "v1", f"{source.netloc}/{REPO}:v1")
            sidecar.start()
            walls, tasks, skopeos = [], [], []
            for number in range(args.rounds):
                order = ("sidecar", "skopeo") if number % 2 == 0 else ("skopeo", "sidecar")
                for who in order:
                    fresh(dest)
                    if who == "sidecar":
                        wall, task = run_sidecar(sidecar)
                        walls.append(wall)
                        tasks.append(task)
                    else:
                        skopeos.append(run_skopeo(source.netloc, dest.netloc))
                    copied = clients.inspect(f"{dest.netloc}/{REPO}:v1")["Digest"]
                    if copied != digest:
                        raise SystemExit(f"{who}: the destination holds {copied}, not {digest}")
                print(f"round {number + 1}: sidecar {walls[-1]:.2f}s (task {tasks[-1]:.2f}s), "
                      f"skopeo {skopeos[-1]:.2f}s", flush=True)
        finally:
            sidecar.stop()
            source.stop()
            dest.stop()
    ratios = [w / s for w, s in zip(walls, skopeos, strict=True)]
    task_ratios = [t / s for t, s in zip(tasks, skopeos, strict=True)]
    print(f"\nimage: {size / 1e6:.0f} MB in {LAYERS} layers; {args.rounds} rounds")
    print(f"sidecar replicate --wait  {spread(walls)} s")
    print(f"  of which the task       {spread(tasks)} s")
    print(f"skopeo copy               {spread(skopeos)} s")
    print(f"ratio sidecar/skopeo      {spread(ratios)}   (task only: {spread(task_ratios)})")
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
