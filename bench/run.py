"""Proxy benchmark: the sidecar against the registry direct and against nginx, in one run.

    python3 bench/run.py                 # everything, about 4 minutes
    python3 bench/run.py --only wrk      # manifest GET throughput only

Absolute numbers drift on a shared 2-core machine, so every figure is a ratio to a reference
measured in the same run, with targets alternated round by round and the spread printed.
Nothing here asserts: targets are printed next to the figures (see bench/README.md).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import latency  # noqa: E402
from bench import matching  # noqa: E402
from bench.blobs import make_blob  # noqa: E402
from bench.blobs import upload_blob  # noqa: E402
from bench.measure import cpu_seconds  # noqa: E402
from bench.measure import curl_get_seconds  # noqa: E402
from bench.measure import spread  # noqa: E402
from bench.measure import wrk  # noqa: E402
from bench.memory import bench_rss  # noqa: E402
from bench.memory import print_rss  # noqa: E402
from bench.services import CountingReceiver  # noqa: E402
from bench.services import Nginx  # noqa: E402
from bench.services import NginxReceiver  # noqa: E402
from bench.services import entry_point  # noqa: E402
from bench.services import pull_rules  # noqa: E402
from bench.services import sidecar_pids  # noqa: E402
from bench.services import start_sidecar  # noqa: E402
from bench.table import print_table  # noqa: E402
from tests.support import clients  # noqa: E402
from tests.support.images import make_image  # noqa: E402
from tests.support.registry import Registry  # noqa: E402

SMALL = "bench/small"
BLOB_REPO = "bench/blob"
TARGET_MANIFEST = 0.8
TARGET_BLOB = 0.9
#: wrk: manifest GETs; blob: a 200 MB GET; latency: push -> webhook (bench/latency.py);
#: match: policy matching (bench/matching.py); rss: the process tree with 1 GiB through it
PARTS = ("wrk", "blob", "latency", "match", "rss")


@dataclass
class Target:
    name: str
    url: str
    pids: list[int] = field(default_factory=list)
    sidecar: object | None = None
    rps: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    cpu_self: list[float] = field(default_factory=list)
    cpu_registry: list[float] = field(default_factory=list)
    bad: int = 0
    drain: list[float] = field(default_factory=list)
    cpu_total: list[float] = field(default_factory=list)
    receiver_cpu: list[float] = field(default_factory=list)  # us per webhook received
    blob_seconds: list[float] = field(default_factory=list)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def wait_drained(target: Target, timeout: float = 180.0) -> float:
    """Seconds until the sidecar's delivery queue and event buffer are empty."""
    start = time.monotonic()
    calm = 0
    while time.monotonic() - start < timeout:
        status = target.sidecar.status()
        if status["queue"]["depth"] == 0 and status["recorder"]["buffered"] == 0:
            calm += 1
            if calm >= 2:
                return time.monotonic() - start
        else:
            calm = 0
        time.sleep(0.25)
    return float("nan")


def idle_cpu_ms_per_s(pids: list[int], seconds: float = 5.0) -> float:
    before = cpu_seconds(pids)
    time.sleep(seconds)
    return (cpu_seconds(pids) - before) * 1000 / seconds


def bench_manifest(targets: list[Target], registry_pids: list[int], rounds: int,
                   duration: str, path: str = f"/v2/{SMALL}/manifests/v1",
                   receiver: CountingReceiver | NginxReceiver | None = None) -> None:
    for target in targets:  # warm pools and caches
        wrk(target.url + path, "1s")
        if target.sidecar is not None:
            wait_drained(target)
    direct = targets[0]
    for round_no in range(rounds):
        # rotate the order so no target always runs right after the noisy pull variants
        order = targets[round_no % len(targets):] + targets[:round_no % len(targets)]
        results = {}
        for target in order:
            watch = {"self": target.pids, "registry": registry_pids}
            before = cpu_seconds(target.pids)
            hooks = receiver.count() if receiver is not None else 0
            receiver_before = cpu_seconds(receiver.pids()) if receiver is not None else 0.0
            result = wrk(target.url + path, duration, watch=watch)
            results[target.name] = result
            target.rps.append(result.rps)
            target.cpu_self.append(result.cpu_us_per_request["self"])
            target.cpu_registry.append(result.cpu_us_per_request["registry"])
            target.bad += result.bad
            if target.sidecar is not None:
                target.drain.append(wait_drained(target))
                # with the deliveries the run queued, sent after it
                target.cpu_total.append((cpu_seconds(target.pids) - before) * 1e6
                                        / max(result.requests, 1))
                if receiver is not None and (hooks := receiver.count() - hooks) > 0:
                    target.receiver_cpu.append(
                        (cpu_seconds(receiver.pids()) - receiver_before) * 1e6 / hooks)
            log(f"  round {round_no + 1} {target.name:<32} {result.rps:8.0f} req/s "
                f"latency {result.latency}")
        for target in targets:
            target.ratios.append(results[target.name].rps / results[direct.name].rps)


def bench_blob(targets: list[Target], digest: str, runs: int) -> None:
    path = f"/v2/{BLOB_REPO}/blobs/{digest}"
    for target in targets:
        curl_get_seconds(target.url + path)  # warm the page cache and the pools
    for run in range(runs):
        for target in targets:
            seconds = curl_get_seconds(target.url + path)
            target.blob_seconds.append(seconds)
            log(f"  blob run {run + 1} {target.name:<32} {seconds:.3f} s")


def print_manifest(targets: list[Target], rounds: int, duration: str,
                   title: str = "Manifest GET throughput") -> None:
    direct = targets[0]
    print(f"\n## {title} (wrk -t2 -c16 -d{duration}, OCI Accept, "
          f"{rounds} rounds; median (min-max))")
    print(f"{'target':<32}{'req/s':>22}{'ratio/direct':>22}{'own CPU us/req':>16}"
          f"{'+deliveries':>13}{'registry us/req':>17}{'errors':>8}{'drain s':>9}")
    for target in targets:
        ratio = "1.00" if target is direct else spread(target.ratios)
        drain = f"{statistics.median(target.drain):.1f}" if target.drain else "-"
        own = f"{statistics.median(target.cpu_self):.0f}" if target.pids else "-"
        total = f"{statistics.median(target.cpu_total):.0f}" if target.cpu_total else "-"
        print(f"{target.name:<32}{spread(target.rps, 0):>22}{ratio:>22}{own:>16}{total:>13}"
              f"{statistics.median(target.cpu_registry):>17.0f}{target.bad:>8}{drain:>9}")
    for target in targets[1:]:
        verdict = ""
        if target.name.startswith("sidecar") and title.startswith("Manifest"):
            med = statistics.median(target.ratios)
            met = "met" if med >= TARGET_MANIFEST else "NOT met"
            verdict = f"  (target >= {TARGET_MANIFEST}: {met})"
        print(f"RATIO {target.name}/direct = {statistics.median(target.ratios):.2f}{verdict}")


def print_blob(targets: list[Target], size_mib: int, runs: int) -> None:
    direct = min(targets[0].blob_seconds)
    print(f"\n## {size_mib} MB blob GET (curl -o /dev/null, best of {runs})")
    print(f"{'target':<32}{'best s':>10}{'median s':>10}{'direct/target':>15}")
    for target in targets:
        best = min(target.blob_seconds)
        print(f"{target.name:<32}{best:>10.3f}{statistics.median(target.blob_seconds):>10.3f}"
              f"{direct / best:>15.2f}")
    for target in targets[1:]:
        ratio = direct / min(target.blob_seconds)
        verdict = ""
        if target.name.startswith("sidecar"):
            met = "met" if ratio >= TARGET_BLOB else "NOT met"
            verdict = f"  (target >= {TARGET_BLOB}: {met})"
        print(f"RATIO direct/{target.name} = {ratio:.2f}{verdict}")


def baseline_source(workdir: Path, revision: str) -> tuple[Path, str]:
    """The package of `revision` (for PYTHONPATH) and its CLI entry point, to run that version
    alongside. Older trees kept the package under src/."""
    out = workdir / f"baseline-{revision.replace('/', '_')}"
    out.mkdir(parents=True)
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", revision],
                            capture_output=True, text=True, check=True).stdout.split()
    package = "src" if "src" in listed else "sidecar"
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, package,
                              "pyproject.toml"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return (out / "src" if package == "src" else out), entry_point(out)


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """'name:VAR=value[;VAR=value]' -> (name, env)."""
    name, _, assignments = text.partition(":")
    env = dict(item.split("=", 1) for item in assignments.split(";") if "=" in item)
    return name, env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=PARTS, action="append",
                        help="run only these parts (repeatable)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", default="6s", help="wrk duration per run")
    parser.add_argument("--blob-runs", type=int, default=4)
    parser.add_argument("--blob-mib", type=int, default=200)
    parser.add_argument("--rss-mib", type=int, default=1024)
    parser.add_argument("--workers", default="1,2", help="sidecar worker counts to try")
    parser.add_argument("--no-pull-policy", action="store_true",
                        help="skip the variants whose rules send every pull to a receiver")
    parser.add_argument("--receiver", choices=("nginx", "python"), default="nginx",
                        help="what answers the PULL policy's webhooks (it shares the cores: "
                        "nginx costs least; python is bench/receiver.py)")
    parser.add_argument("--baseline", metavar="REV", action="append", default=[],
                        help="also run a sidecar from git revision REV (before/after), with "
                        "--baseline-workers workers")
    parser.add_argument("--baseline-workers", type=int, default=1)
    parser.add_argument("--variant", metavar="NAME:VAR=VALUE[;VAR=VALUE]", action="append",
                        default=[], help="also run a 1-worker sidecar with this environment, "
                        "e.g. 'py-parser:GUNICORN_CMD_ARGS=--http-parser python'")
    parser.add_argument("--diagnose", action="store_true",
                        help="also measure GET tags/list (proxied, but no event) to separate "
                        "the proxy's cost from the cost of recording pull events")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "sidecar-bench",
                        help="where the random blobs are kept between runs")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    parts = set(args.only or PARTS)
    for tool in ("wrk", "curl", "nginx", "skopeo", "docker-registry"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            print(f"bench: {tool} is missing (apt-get install -y {tool})", file=sys.stderr)
            return 2

    workdir = Path(tempfile.mkdtemp(prefix="sidecar-bench-"))
    started: list = []
    found: dict = {}
    targets: list[Target] = []
    wrk_targets: list[Target] = []
    try:
        log(f"work directory {workdir}")
        registry = Registry(workdir / "registry").start()
        started.append(registry)
        if parts & {"wrk", "blob"}:
            targets, wrk_targets, receiver = start_targets(args, parts, workdir, registry,
                                                           started)
            time.sleep(2)
            print("\n## Idle CPU of each sidecar (all its processes, over 5 s)")
            for target in wrk_targets:
                if target.sidecar is not None:
                    print(f"{target.name:<32}{idle_cpu_ms_per_s(target.pids):6.1f} ms CPU per s")
        if "wrk" in parts:
            run_wrk(args, wrk_targets, [registry.process.pid], receiver)
        if "blob" in parts:
            log(f"{args.blob_mib} MB blob GET")
            path, digest = make_blob(args.cache, args.blob_mib)
            upload_blob(registry.url, BLOB_REPO, path, digest)
            bench_blob(targets, digest, args.blob_runs)
            print_blob(targets, args.blob_mib, args.blob_runs)
        for item in reversed(started):
            if item is not registry:
                item.stop()
        if "rss" in parts:
            log(f"{args.rss_mib} MiB through a fresh sidecar")
            found["rss_mb"] = print_rss(bench_rss(workdir, registry, args.cache, args.rss_mib))
        if "latency" in parts:
            log("push -> webhook latency")
            found["latency"] = latency.measure(argparse.Namespace(rate=50.0, seconds=10.0,
                                                                  workers=args.workers))
        if "match" in parts:
            found["matching"] = matching.measure()
        print_table(wrk_targets or targets, found)
        print(f"\n(`python3 bench/run.py {' '.join(argv if argv is not None else sys.argv[1:])}`)")
    finally:
        for item in reversed(started):
            item.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def start_targets(args: argparse.Namespace, parts: set[str], workdir: Path, registry: Registry,
                  started: list) -> tuple[list[Target], list[Target],
                                                   CountingReceiver | NginxReceiver | None]:
    """nginx and the sidecar variants; returns (blob targets, wrk targets, pull receiver)."""
    layout = workdir / "small-image"
    make_image(layout, tag="v1", layers=1, layer_size=16 * 1024)
    clients.push(layout, "v1", f"{registry.netloc}/{SMALL}:v1")
    nginx = Nginx(workdir / "nginx", registry.port).start()
    started.append(nginx)
    targets = [Target("direct", registry.url), Target("nginx", nginx.url, pids=nginx.pids())]
    wrk_targets = list(targets)
    receiver = None
    if "wrk" in parts and not args.no_pull_policy:
        receiver = (NginxReceiver(workdir / "receiver") if args.receiver == "nginx"
                    else CountingReceiver()).start()
        started.append(receiver)

    def add(name: str, workers: int, rules=None, env=None, blob: bool = True,
            entry: str | None = None) -> None:
        sidecar = start_sidecar(workdir / name.replace(" ", "-").replace("/", "_"),
                                registry.url, workers, rules=rules, env=env, entry=entry)
        started.append(sidecar)
        target = Target(name, sidecar.url, sidecar_pids(sidecar), sidecar)
        wrk_targets.append(target)
        if blob:
            targets.append(target)

    for workers in (int(w) for w in args.workers.split(",")):
        add(f"sidecar {workers}w", workers)
        if receiver is not None:
            add(f"sidecar {workers}w +PULL policy", workers, rules=pull_rules(receiver.url),
                blob=False)
    for revision in args.baseline:
        src, entry = baseline_source(workdir, revision)
        workers = args.baseline_workers
        add(f"sidecar {workers}w @{revision}", workers, env={"PYTHONPATH": str(src)},
            entry=entry)
        if receiver is not None:  # before/after of the delivery path too
            add(f"sidecar {workers}w @{revision} +PULL policy", workers,
                rules=pull_rules(receiver.url), env={"PYTHONPATH": str(src)}, entry=entry,
                blob=False)
    for text in args.variant:
        name, env = parse_variant(text)
        add(f"sidecar 1w {name}", 1, env=env)
    return targets, wrk_targets, receiver


def run_wrk(args: argparse.Namespace, wrk_targets: list[Target], registry_pids: list[int],
            receiver: CountingReceiver | NginxReceiver | None) -> None:
    log("manifest GET throughput")
    bench_manifest(wrk_targets, registry_pids, args.rounds, args.duration, receiver=receiver)
    print_manifest(wrk_targets, args.rounds, args.duration)
    if receiver is not None:
        print(f"webhooks received for pulls: {receiver.count()}")
        for target in wrk_targets:
            if target.receiver_cpu:
                print(f"receiver CPU per webhook, {target.name}: "
                      f"{statistics.median(target.receiver_cpu):.0f} us ({receiver.kind})")
    if args.diagnose:
        log("tags/list throughput (no event)")
        plain = [Target(t.name, t.url, t.pids, t.sidecar) for t in wrk_targets
                 if "PULL" not in t.name]
        bench_manifest(plain, registry_pids, args.rounds, args.duration,
                       path=f"/v2/{SMALL}/tags/list")
        print_manifest(plain, args.rounds, args.duration,
                       title="GET tags/list, proxied but no event (diagnosis)")


if __name__ == "__main__":
    sys.exit(main())
