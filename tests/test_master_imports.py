"""`sidecar serve`'s master stays lean: what it imports is in every forked worker's memory
again, so the store, the HTTP client, Flask, the CloudEvents SDK and gevent stay out of it (each
worker patches and loads its gevent worker itself: sidecar/server/lean.py). The store is still
prepared (migrated, rules synced) before the workers start, by a short-lived child."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap

HEAVY = ("peewee", "requests", "urllib3", "flask", "cloudevents", "prometheus_client",
         "psycopg2", "sidecar.store.db", "sidecar.app", "gevent", "greenlet",
         "sidecar.server.worker", "sidecar.proxy")

SCRIPT = textwrap.dedent("""
    import json, sys
    HEAVY = sys.argv.pop(1).split(",")
    from sidecar.cli.commands import _prepare_store, _settings_from, build_parser
    from sidecar.preload import prepare_apart
    from sidecar.serve import WORKER_CLASSES
    from gunicorn.util import load_class

    load_class(WORKER_CLASSES["sidecar"])  # the master loads the worker class too
    args = build_parser().parse_args(sys.argv[1:])
    result = prepare_apart(_prepare_store, _settings_from(args))
    print(json.dumps({"result": repr(result),
                      "loaded": [m for m in HEAVY if m in sys.modules]}))
""")


def _serve_args(tmp_path, rules_text: str) -> list[str]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text)
    return ["serve", "--upstream", "http://127.0.0.1:9", "--bind", "127.0.0.1:9",
            "--database", f"sqlite:///{tmp_path / 'sidecar.db'}", "--rules", str(rules)]


def _master(tmp_path, rules_text: str) -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(HEAVY),
                           *_serve_args(tmp_path, rules_text)],
                          capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_master_prepares_the_store_without_loading_it(tmp_path):
    found = _master(tmp_path, "projects:\n  - name: library\n    webhooks: []\n")
    assert found["loaded"] == []
    assert "PreloadedRules" in found["result"] and "projects=1" in found["result"]
    with sqlite3.connect(tmp_path / "sidecar.db") as db:  # the child wrote the rules
        assert db.execute("SELECT name FROM project").fetchall() == [("library",)]


def test_a_broken_rules_file_still_stops_serve_with_its_message(tmp_path):
    found = _master(tmp_path, "projects:\n  - name: [broken\n")
    assert found["result"].strip("'\"").startswith("sidecar: rules file refused")
    assert found["loaded"] == []


def test_a_dead_workers_live_gauges_go_as_prometheus_client_removes_them(tmp_path):
    from prometheus_client import multiprocess

    from sidecar.serve import remove_live_gauges

    names = ["gauge_livesum_41.db", "gauge_liveall_41.db", "gauge_livemostrecent_41.db",
             "gauge_all_41.db", "counter_41.db", "gauge_livesum_411.db", "histogram_41.db"]
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for directory in (ours, theirs):
        directory.mkdir()
        for name in names:
            (directory / name).write_bytes(b"")
    remove_live_gauges(41, str(ours))
    multiprocess.mark_process_dead(41, str(theirs))
    assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir())
    assert "gauge_livesum_41.db" not in {p.name for p in ours.iterdir()}


WORKER = textwrap.dedent("""
    import json, sys
    from gunicorn.workers.base_async import AsyncWorker
    from sidecar.server import lean

    class Real(AsyncWorker):
        def init_process(self):
            from gevent import monkey
            self.seen = {"class": type(self).__name__,
                         "patched": monkey.is_module_patched("socket")}

    sys.modules["__main__"].Real = Real
    class Probe(lean._Deferred):
        real = "__main__.Real"

    before = "gevent" in sys.modules
    worker = object.__new__(Probe)  # as gunicorn's master builds it (its __init__ aside)
    worker.init_process()  # in the child
    from gunicorn.util import load_class
    from gunicorn.workers.ggevent import GeventWorker
    gevent_workers = [issubclass(load_class(kind.real), GeventWorker)
                      for kind in (lean.SidecarWorker, lean.StockGeventWorker)]
    print(json.dumps({"before": before, **worker.seen, "gevent_workers": gevent_workers}))
""")


def test_a_worker_patches_with_gevent_then_becomes_its_real_class():
    done = subprocess.run([sys.executable, "-c", WORKER], capture_output=True, text=True,
                          timeout=60, check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"before": False, "class": "Real", "patched": True,
                     "gevent_workers": [True, True]}
