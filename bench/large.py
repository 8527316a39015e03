"""Issue 17: a large installation, 1,000 projects x 10 webhook policies, against targets.

    python3 bench/large.py                 # about 2-3 minutes on 2 shared cores
    python3 bench/large.py --projects 200  # a smaller run

Builds the rules file in a temporary directory, starts a real registry and `sidecar serve`
(2 workers, the default) the way the README does, and measures every row of the issue's
table; a reference sidecar with 1 project x 10 policies runs in the same run. Some pushes go
through the sidecar first (every 20th project), each with one policy whose endpoint refuses
connections, so the status report has failing endpoints and failed deliveries to show.

`--profile` also runs the rules sync and the status report in process under cProfile and
prints what dominates.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.services import CountingReceiver  # noqa: E402
from tests.support import clients  # noqa: E402
from tests.support.images import make_image  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.registry import Registry  # noqa: E402
from tests.support.sidecar import Sidecar  # noqa: E402
from tests.support.sidecar import sidecar_command  # noqa: E402

PASSWORD = "Bench-Password-1"
SEED = "seed/app"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TARGETS = {
    "start": 5.0, "reload": 5.0, "status_s": 0.5, "status_kib": 256, "ui_s": 0.5, "cli_s": 1.0,
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def large_rules(projects: int, per_project: int, hook: str, dead: str,
                description: str = "") -> dict:
    """`projects` x `per_project` policies; the last policy of each project sends to `dead`
    (a closed port), the others to `hook`; plus project "live" whose PULL policy is what the
    reload measurement watches."""
    out = []
    for p in range(projects):
        name = f"team-{p:04d}"
        hooks = []
        for n in range(per_project):
            address = f"{dead}/{name}" if n == per_project - 1 else f"{hook}?p={name}&n={n}"
            hooks.append({
                "name": f"hook-{n}", "description": description, "enabled": True,
                "event_types": ["PUSH_ARTIFACT", "DELETE_ARTIFACT", "SCANNING_COMPLETED"],
                "targets": [{"type": "http", "address": address}],
                "filters": {"repositories": [f"app{n}/**", "**"], "tags": ["v*"]},
            })
        out.append({"name": name, "public": p % 2 == 0, "webhooks": hooks})
    out.append({"name": "live", "public": True, "webhooks": [{
        "name": "pulls", "enabled": True, "event_types": ["PULL_ARTIFACT"],
        "targets": [{"type": "http", "address": hook}]}]})
    return {"projects": out}


class Run:
    """One sidecar under measurement, with its rules."""

    def __init__(self, workdir: Path, registry: Registry, rules: dict, workers: int):
        self.rules = rules
        config = {"harbor_admin_password": PASSWORD,
                  "notification": {"webhook_job_max_retry": 2,
                                   "webhook_job_http_client_timeout": 2},
                  "sidecar": {"rules_poll_seconds": 1.0,
                              "delivery": {"backoff_seconds": 0.2,
                                           "backoff_max_seconds": 0.5}}}
        self.sidecar = Sidecar(workdir, registry.url, rules=rules, config=config,
                               workers=workers, record_unmatched=False)

    def start_seconds(self) -> float:
        """Seconds from `sidecar serve` to a healthy /sidecar/healthz and every worker up."""
        started = time.monotonic()
        self.sidecar.start(wait=False)
        url = f"{self.sidecar.url}/sidecar/healthz"
        while time.monotonic() - started < 120:
            try:
                if requests.get(url, timeout=5).status_code == 200:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            if self.sidecar.process.poll() is not None:
                raise RuntimeError(f"sidecar exited:\n{self.sidecar.log()[-3000:]}")
            time.sleep(0.02)
        raise RuntimeError("sidecar not healthy after 120 s")

    def loaded_lines(self) -> int:
        return self.sidecar.log().count("rules loaded from")

    def stop(self) -> None:
        self.sidecar.stop()


def curl(url: str, cookies: dict | None = None) -> tuple[float, int, int]:
    """(seconds, bytes, status) of one GET, as curl sees it (as the admin: the status is
    theirs)."""
    args = ["curl", "-s", "-o", "/dev/null", "-u", f"admin:{PASSWORD}",
            "-w", "%{http_code} %{time_total} %{size_download}"]
    for key, value in (cookies or {}).items():
        args += ["-b", f"{key}={value}"]
    code, seconds, size = subprocess.run([*args, url], capture_output=True, text=True,
                                         check=True).stdout.split()
    return float(seconds), int(float(size)), int(code)


def best_of(url: str, runs: int = 3, cookies: dict | None = None) -> tuple[float, int]:
    results = [curl(url, cookies) for _ in range(runs)]
    bad = [r for r in results if r[2] != 200]
    if bad:
        raise RuntimeError(f"GET {url} answered {bad[0][2]}")
    return statistics.median(r[0] for r in results), results[-1][1]


def ui_login(base: str) -> dict:
    ui = f"{base}/sidecar/ui"
    form = requests.get(f"{ui}/login", timeout=30)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    done = requests.post(f"{ui}/login", cookies=form.cookies, allow_redirects=False,
                         timeout=30, data={"csrf_token": token, "username": "admin",
                                           "password": PASSWORD})
    if done.status_code != 302:
        raise RuntimeError(f"UI login answered {done.status_code}")
    return dict(done.cookies)


def cli_status_seconds(base: str, config: Path, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run([*sidecar_command(), "status", "--url", base, "--config", str(config)],
                       check=True, capture_output=True, timeout=120)
        times.append(time.monotonic() - started)
    return statistics.median(times)


# -- traffic -------------------------------------------------------------------------------

def seed_image(workdir: Path, registry: Registry) -> tuple[bytes, list[str]]:
    """One small image pushed straight to the registry: its manifest and blob digests."""
    layout = workdir / "image"
    make_image(layout, tag="v1", layers=1, layer_size=4096)
    clients.push(layout, "v1", f"{registry.netloc}/{SEED}:v1")
    answer = requests.get(f"{registry.url}/v2/{SEED}/manifests/v1",
                          headers={"Accept": OCI_MANIFEST}, timeout=30)
    answer.raise_for_status()
    manifest = json.loads(answer.content)
    digests = [manifest["config"]["digest"]] + [la["digest"] for la in manifest["layers"]]
    return answer.content, digests


def push_through(base: str, repo: str, manifest: bytes, blobs: list[str]) -> None:
    """Mount the seed's blobs into `repo` and PUT its manifest through the sidecar (a push)."""
    session = requests.Session()
    for digest in blobs:
        session.post(f"{base}/v2/{repo}/blobs/uploads/?mount={digest}&from={SEED}",
                     timeout=30).raise_for_status()
    session.put(f"{base}/v2/{repo}/manifests/v1", data=manifest,
                headers={"Content-Type": OCI_MANIFEST}, timeout=30).raise_for_status()


class Puller(threading.Thread):
    """Pulls live/app:v1 through the sidecar at a steady rate; records each pull's time."""

    def __init__(self, base: str, rate: float = 20.0):
        super().__init__(daemon=True)
        self.url = f"{base}/v2/live/app/manifests/v1"
        self.period = 1.0 / rate
        self.latencies: list[float] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        while not self.stopping.is_set():
            started = time.monotonic()
            session.get(self.url, headers={"Accept": OCI_MANIFEST}, timeout=30)
            self.latencies.append(time.monotonic() - started)
            self.stopping.wait(max(0.0, self.period - (time.monotonic() - started)))


def longest_gap(receiver: CountingReceiver, seconds: float,
                during=None) -> tuple[float, int, float]:
    """Watch the receiver for `seconds` (calling `during()` once at the start, on a thread):
    (longest time without a new webhook, webhooks received, seconds `during` took)."""
    took = [float("nan")]

    def timed() -> None:
        started = time.monotonic()
        during()
        took[0] = time.monotonic() - started

    worker = threading.Thread(target=timed, daemon=True) if during else None
    start = time.monotonic()
    first = last_count = receiver.count()
    last_change = start
    gap = 0.0
    if worker:
        worker.start()
    while time.monotonic() - start < seconds or (worker and worker.is_alive()):
        count = receiver.count()
        now = time.monotonic()
        if count != last_count:
            gap = max(gap, now - last_change)
            last_count, last_change = count, now
        time.sleep(0.02)
    gap = max(gap, time.monotonic() - last_change)
    return gap, last_count - first, took[0]


# -- the run -------------------------------------------------------------------------------

def measure_sidecar(name: str, run: Run, registry: Registry, receiver: CountingReceiver,
                    seed: tuple[bytes, list[str]], push_every: int, reload: bool) -> dict:
    out: dict = {}
    log(f"[{name}] cold start (empty store)")
    out["cold"] = run.start_seconds()
    base = run.sidecar.url
    projects = [p["name"] for p in run.rules["projects"] if p["name"] != "live"]
    pushed = projects[::push_every]
    log(f"[{name}] pushing to {len(pushed)} projects through the sidecar")
    for project in pushed:
        push_through(base, f"{project}/app1", *seed)
    push_through(base, "live/app", *seed)
    settle = time.monotonic()
    while time.monotonic() - settle < 60:
        status = run.sidecar.status()
        if status["queue"]["depth"] == 0:
            break
        time.sleep(0.5)
    run.stop()
    log(f"[{name}] warm start (store already synced)")
    out["warm"] = run.start_seconds()
    out["status"] = best_of(f"{base}/sidecar/status")
    out["status_html"] = best_of(f"{base}/sidecar/status?format=html")
    cookies = ui_login(base)
    out["ui"] = best_of(f"{base}/sidecar/ui/projects", cookies=cookies)
    out["cli"] = cli_status_seconds(base, run.sidecar.config_path)
    if reload:
        puller = Puller(base)
        puller.start()
        time.sleep(1.0)
        log(f"[{name}] deliveries before the reload (pulls at 20/s)")
        out["gap_before"] = longest_gap(receiver, 4.0)
        changed = json.loads(json.dumps(run.rules))
        for project in changed["projects"][::10]:  # 100 projects: 1,000 policies changed
            for hook in project["webhooks"]:
                hook["description"] = "changed"
        changed["projects"][-2]["webhooks"].append({
            "name": "added", "event_types": ["PUSH_ARTIFACT"],
            "targets": [{"type": "http", "address": receiver.url}]})
        lines = run.loaded_lines()
        text = yaml.safe_dump(changed, sort_keys=False)  # before the clock starts: seconds

        def reload_now() -> None:
            run.sidecar.write_rules(text)
            deadline = time.monotonic() + 120
            while run.loaded_lines() < lines + run.sidecar.workers:
                if time.monotonic() > deadline:
                    raise RuntimeError("reload not in force after 120 s")
                time.sleep(0.02)

        log(f"[{name}] reload of the same size (every 10th project's policies changed, 1 added)")
        out["gap_reload"] = longest_gap(receiver, 4.0, during=reload_now)
        out["reload"] = out["gap_reload"][2]
        puller.stopping.set()
        puller.join()
        out["pull_max"] = max(puller.latencies)
        out["pulls"] = len(puller.latencies)
    run.stop()
    return out


def profile(rules: dict, workdir: Path) -> None:
    """The rules sync (cold and warm) and the status report, in process, under cProfile."""
    from sidecar.api.ops.report import status_json
    from sidecar.rules.load import load_rules
    from sidecar.store import db as store_db
    from sidecar.store import policies as policy_store
    from sidecar.store.status_report import status_report

    path = workdir / "profile-rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    store_db.bind(f"sqlite:///{workdir / 'profile.db'}")

    def sync() -> None:
        parsed = load_rules(str(path))
        with store_db.database.connection_context(), store_db.database.atomic():
            policy_store.sync_rules(parsed)

    def report() -> None:
        with store_db.database.connection_context():
            json.dumps(status_json(status_report()))

    for title, fn in (("rules: parse + sync, empty store", sync),
                      ("rules: parse + sync, unchanged", sync),
                      ("status report (JSON)", report)):
        prof = cProfile.Profile()
        started = time.perf_counter()
        prof.runcall(fn)
        print(f"\n## profile: {title}: {time.perf_counter() - started:.2f} s")
        pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(18)


def verdict(value: float, target: float) -> str:
    return "met" if value <= target else "NOT met"


def print_table(large: dict, small: dict, policies: int) -> None:
    kib = 1024
    rows = []

    def row(figure: str, ours: str, ref: str, target: str, met: str) -> None:
        rows.append((figure, ours, ref, target, met))

    for key, figure in (("cold", "`sidecar serve` until healthy, empty store, s"),
                        ("warm", "`sidecar serve` until healthy, store synced, s")):
        row(figure, f"{large[key]:.2f}", f"{small[key]:.2f}", "<= 5",
            verdict(large[key], TARGETS["start"]))
    if "reload" in large:
        row("rules-file reload of the same size, until in force (all workers), s",
            f"{large['reload']:.2f}", "-", "<= 5", verdict(large["reload"], TARGETS["reload"]))
        gap_before, gap_during = large["gap_before"][0], large["gap_reload"][0]
        row("longest pause between webhooks (pulls at 20/s): before / during reload, s",
            f"{gap_before:.2f} / {gap_during:.2f}", "-", "no pause",
            "met" if gap_during <= max(1.0, 3 * gap_before) else "NOT met")
        row("slowest proxied pull during the reload, s", f"{large['pull_max']:.2f}", "-",
            "-", "")
    seconds, size = large["status"]
    ref_seconds, ref_size = small["status"]
    row("GET /sidecar/status (JSON), s", f"{seconds:.3f}", f"{ref_seconds:.3f}", "<= 0.5",
        verdict(seconds, TARGETS["status_s"]))
    row("GET /sidecar/status (JSON), KiB", f"{size / kib:.1f}", f"{ref_size / kib:.1f}",
        "<= 256", verdict(size / kib, TARGETS["status_kib"]))
    seconds, size = large["status_html"]
    row("GET /sidecar/status (HTML), s / KiB", f"{seconds:.3f} / {size / kib:.0f}",
        f"{small['status_html'][0]:.3f} / {small['status_html'][1] / kib:.0f}", "-", "")
    seconds, size = large["ui"]
    row("GET /sidecar/ui/projects, s / KiB", f"{seconds:.3f} / {size / kib:.0f}",
        f"{small['ui'][0]:.3f} / {small['ui'][1] / kib:.0f}", "<= 0.5, paged",
        verdict(seconds, TARGETS["ui_s"]))
    row("`sidecar status --url`, s (incl. Python start)", f"{large['cli']:.2f}",
        f"{small['cli']:.2f}", "<= 1", verdict(large["cli"], TARGETS["cli_s"]))
    print(f"\n## Issue 17: {policies:,} policies (reference: 1 project x 10 policies), "
          "2 workers, medians of 3")
    print(f"{'figure':<78}{'large':>16}{'reference':>16}{'target':>15}  verdict")
    for figure, ours, ref, target, met in rows:
        print(f"{figure:<78}{ours:>16}{ref:>16}{target:>15}  {met}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--per-project", type=int, default=10)
    parser.add_argument("--push-every", type=int, default=20,
                        help="push through the sidecar to every Nth project")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--profile", action="store_true",
                        help="also profile the rules sync and the status report in process")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    for tool in ("curl", "skopeo"):
        if not shutil.which(tool):
            print(f"bench: {tool} is missing (apt-get install -y {tool})", file=sys.stderr)
            return 2
    workdir = Path(tempfile.mkdtemp(prefix="sidecar-large-"))
    started: list = []
    try:
        registry = Registry(workdir / "registry").start()
        started.append(registry)
        receiver = CountingReceiver().start()
        started.append(receiver)
        dead = f"http://127.0.0.1:{free_port()}/dead"  # nothing listens there
        seed = seed_image(workdir, registry)
        push_through(registry.url, "live/app", *seed)  # pulls need it before the first start
        big = large_rules(args.projects, args.per_project, receiver.url, dead)
        small = large_rules(1, args.per_project, receiver.url, dead)
        policies = args.projects * args.per_project
        size = len(yaml.safe_dump(big, sort_keys=False)) / 1024
        log(f"work directory {workdir}; rules file {size:.0f} KiB, {policies} policies")
        results = {}
        for name, rules, reload in (("reference", small, False), ("large", big, True)):
            run = Run(workdir / name, registry, rules, args.workers)
            started.append(run)
            results[name] = measure_sidecar(name, run, registry, receiver, seed,
                                            args.push_every, reload)
        print_table(results["large"], results["reference"], policies)
        print(f"\n(`python3 bench/large.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
              f", rules file {size:.0f} KiB, pulls during the reload: {results['large']['pulls']},"
              f" webhooks during it: {results['large']['gap_reload'][1]})")
        if args.profile:
            profile(big, workdir)
    finally:
        for item in reversed(started):
            item.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
