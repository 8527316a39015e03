"""Job handlers are built when the first job of their kind runs (sidecar/jobs/deferred.py), and
the chart proxy only when a chart upstream is configured: a worker that runs no scan, no
replication and no retention run does not hold their code (issue 13: memory)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from sidecar.jobs.deferred import DeferredHandler
from sidecar.jobs.deferred import once

HANDLER_MODULES = ("sidecar.scan.job", "sidecar.scan.client", "sidecar.replicate.execution",
                   "sidecar.replicate.task", "sidecar.replicate.copy", "sidecar.retain.job",
                   "sidecar.quota.recalc", "sidecar.proxy.charts", "sidecar.events.chartsniff")

FRESH = textwrap.dedent("""
    import json, sys
    from sidecar.app import create_app
    from sidecar.config import Settings
    modules = sys.argv[2].split(",")
    app, runtime = create_app(Settings(database="sqlite:///" + sys.argv[1],
                                       upstream="http://127.0.0.1:9"), start=False)
    seen = {"kinds": runtime.jobs.kinds,
            "at_start": [m for m in modules if m in sys.modules]}
    built = {kind: type(runtime.jobs.handlers[kind].handler()).__name__
             for kind in runtime.jobs.kinds}
    seen["built"] = built
    print(json.dumps(seen))
""")


def test_a_worker_starts_without_the_job_handlers_and_builds_each_kinds(tmp_path):
    done = subprocess.run([sys.executable, "-c", FRESH, str(tmp_path / "db.sqlite"),
                           ",".join(HANDLER_MODULES)],
                          capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["at_start"] == []
    assert seen["kinds"] == ["quota.recalc", "replication", "replication-task", "retention",
                             "retention-task", "scan"]
    assert seen["built"] == {"quota.recalc": "RecalcHandler", "replication": "ExecutionHandler",
                             "replication-task": "TaskHandler", "retention": "ExecutionHandler",
                             "retention-task": "TaskHandler", "scan": "ScanHandler"}


class _Handler:
    kind = "demo"

    def run(self, ctx):
        return ("ran", ctx)

    def failed(self, ctx, reason):
        return [("failed", reason)]

    def stopped(self, ctx):
        return [("stopped", ctx)]


def test_a_deferred_handler_builds_at_its_first_job_and_passes_every_call_on():
    builds = []

    def build():
        builds.append(1)
        return _Handler()

    deferred = DeferredHandler("demo", build)
    assert builds == []
    assert deferred.run("ctx") == ("ran", "ctx")
    assert deferred.failed("ctx", "gave up") == [("failed", "gave up")]
    assert deferred.stopped("ctx") == [("stopped", "ctx")]
    assert builds == [1]


def test_a_deferred_handler_of_the_wrong_kind_refuses_to_run():
    with pytest.raises(TypeError, match="handles 'demo', not 'scan'"):
        DeferredHandler("scan", _Handler).run("ctx")


def test_once_builds_once_when_callers_come_together():
    builds = []

    def build():
        builds.append(threading.get_ident())
        time.sleep(0.1)
        return object()

    get = once(build)
    barrier = threading.Barrier(6)
    got = []

    def call():
        barrier.wait()
        got.append(get())

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(builds) == 1 and len(got) == 6 and len({id(item) for item in got}) == 1
