"""`sidecar serve`'s master stays lean: what it imports is in every forked worker's memory
again, so the store, the HTTP client, Flask and the CloudEvents SDK stay out of it. The store
is still prepared (migrated, rules synced) before the workers start, by a short-lived child."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap

HEAVY = ("peewee", "requests", "urllib3", "flask", "cloudevents", "prometheus_client",
         "psycopg2", "sidecar.store.db", "sidecar.app")

SCRIPT = textwrap.dedent("""
    import json, sys
    HEAVY = sys.argv.pop(1).split(",")
    from gevent import monkey
    monkey.patch_all()
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
