"""Sidecar CPU per delivered webhook: the delivery path alone (claim, render, send, finish).

    python3 bench/deliveries.py                     # 2,000 deliveries, backlog and trickle
    python3 bench/deliveries.py --count 3000 --profile /tmp/deliveries.prof

In one process set up as a gunicorn gevent worker is (gevent's monkey patching, the database
on the store's thread pool, SQLite), deliveries are recorded first and then sent by the
sidecar's `Dispatcher` to `bench/receiver.py`, which runs as its own process so that its CPU
is not counted. Printed: this process's CPU time (user + system, all threads) from the start
of the sending until every delivery is finished in the store, divided by the deliveries.

Two shapes: `backlog` starts the dispatcher on all of them at once (what a queue that fell
behind costs per delivery); `trickle` records them at a steady rate while the dispatcher runs,
the recorder's commit waking it (what 50 pushes/s cost; recording counted too, as it is in
bench/latency.py).
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import cProfile  # noqa: E402
import inspect  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import json  # noqa: E402

from bench.services import CountingReceiver  # noqa: E402
from sidecar.dispatch.retry import RetryPolicy  # noqa: E402
from sidecar.dispatch.worker import Dispatcher  # noqa: E402
from sidecar.dispatch.worker import DispatchSettings  # noqa: E402
from sidecar.events.model import ArtifactEvent  # noqa: E402
from sidecar.record.recorder import Recorder  # noqa: E402
from sidecar.record.recorder import RecorderSettings  # noqa: E402
from sidecar.rules.load import parse_rules  # noqa: E402
from sidecar.store import db as store_db  # noqa: E402
from sidecar.store import delivery_queue as queue  # noqa: E402
from sidecar.store import policies as policy_store  # noqa: E402
from sidecar.store.executor import Executor  # noqa: E402
from sidecar.store.models import FAILED  # noqa: E402
from sidecar.store.models import PENDING  # noqa: E402
from sidecar.store.models import SENDING  # noqa: E402
from sidecar.store.models import Delivery  # noqa: E402


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def _rules(address: str) -> dict:
    return {"projects": [{"name": "bench", "public": False, "webhooks": [{
        "name": "pushes", "enabled": True, "event_types": ["PUSH_ARTIFACT"],
        "targets": [{"type": "http", "address": address, "skip_cert_verify": False,
                     "payload_format": "Default"}]}]}]}


def _event(index: int) -> ArtifactEvent:
    return ArtifactEvent(type="PUSH_ARTIFACT", repository="bench/app",
                         digest=f"sha256:{index:064x}", tags=(f"t{index}",),
                         media_type="application/vnd.oci.image.manifest.v1+json", size=1234,
                         operator="bench", occur_at=1_700_000_000 + index)


def _open() -> int:
    return Delivery.select().where(Delivery.status.in_((PENDING, SENDING))).count()


def _wait_delivered(count: int, executor: Executor, timeout: float = 120.0) -> None:
    """Until nothing is left to send (a cheap indexed count every 50 ms)."""
    deadline = time.monotonic() + timeout
    time.sleep(0.05)
    while time.monotonic() < deadline:
        if executor.run(_open) == 0:
            failed = executor.run(queue.counts).get(FAILED)
            if failed:
                print(f"  {failed} deliveries failed", file=sys.stderr)
            return
        time.sleep(0.05)
    raise SystemExit(f"not all delivered in {timeout} s: {executor.run(queue.counts)}")


def measure(shape: str, count: int, rate: float, receiver: CountingReceiver,
            profile: cProfile.Profile | None) -> float:
    """CPU microseconds per delivery for one shape, in a fresh store."""
    workdir = Path(tempfile.mkdtemp(prefix="sidecar-deliveries-"))
    store_db.bind(f"sqlite:///{workdir / 'store.db'}")
    executor = Executor(size=2)
    rules = parse_rules(json.dumps(_rules(receiver.url)), "bench", {})
    executor.run(policy_store.sync_rules, rules)
    dispatcher = Dispatcher(executor, DispatchSettings(retry=RetryPolicy(max_attempts=3)))
    handoff = ({"handoff": dispatcher}  # a tree from before the handoff: wake only
               if "handoff" in inspect.signature(Recorder).parameters else {})
    recorder = Recorder(executor, RecorderSettings(hostname="bench"),
                        on_recorded=dispatcher.wake, **handoff)
    base = receiver.count()
    if shape == "backlog":
        for start in range(0, count, 500):
            executor.run(recorder.write_now, [_event(i) for i in range(start,
                                                                       min(count, start + 500))])
    recorder.start()
    if profile:
        profile.enable()
    cpu = _cpu()
    dispatcher.start()
    if shape == "trickle":
        began = time.monotonic()
        for index in range(count):
            time.sleep(max(0.0, began + index / rate - time.monotonic()))
            recorder.submit([_event(index)])
    _wait_delivered(count, executor)
    spent = _cpu() - cpu
    if profile:
        profile.disable()
    dispatcher.stop()
    recorder.stop()
    got = receiver.count() - base
    if got != count:
        print(f"  receiver got {got} of {count}", file=sys.stderr)
    return spent * 1e6 / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="trickle: deliveries per s")
    parser.add_argument("--shape", choices=("backlog", "trickle"), action="append")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the sending")
    args = parser.parse_args(argv)
    receiver = CountingReceiver().start()
    profile = cProfile.Profile() if args.profile else None
    try:
        print(f"## CPU per delivered webhook (`python3 bench/deliveries.py --count {args.count}`)")
        for shape in args.shape or ("backlog", "trickle"):
            us = measure(shape, args.count, args.rate, receiver, profile)
            extra = f" at {args.rate:g}/s, recording included" if shape == "trickle" else ""
            print(f"{shape:<8} {args.count} deliveries{extra}: {us:.0f} us of CPU each")
    finally:
        receiver.stop()
    if profile:
        profile.dump_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
