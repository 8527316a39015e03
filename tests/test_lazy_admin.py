"""A worker builds the admin plane (Flask, the Harbor API, the UI, the status page) on the first
request that needs it (issue 13: about 8 MB of each worker). Proxied traffic, health probes
and an open /sidecar/metrics never load it, and answer exactly as the Flask routes do; the
first admin request builds it once, however many arrive together."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import jsonify

from sidecar import app as app_module
from sidecar.api.ops import probes
from sidecar.app import create_app
from sidecar.config import Settings
from tests.support import clients
from tests.support.sidecar import Sidecar

PASSWORD = "Harbor12345"
BASIC = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()


def _environ(path: str, method: str = "GET", **extra) -> dict:
    return {"PATH_INFO": path, "REQUEST_METHOD": method, "QUERY_STRING": "",
            "SERVER_NAME": "sidecar", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.input": None, **extra}


def _call(app, path: str, method: str = "GET", **extra) -> tuple[str, dict, bytes]:
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app(_environ(path, method, **extra), start_response))
    return seen["status"], seen["headers"], body


@pytest.fixture
def built(tmp_path):
    return create_app(Settings(database=f"sqlite:///{tmp_path / 'db.sqlite'}",
                               upstream="http://127.0.0.1:9", admin_password=PASSWORD),
                      start=False)


# -- in a fresh interpreter: what a worker has imported -------------------------------------

FRESH = textwrap.dedent("""
    import base64, json, sys
    from sidecar.app import create_app
    from sidecar.config import Settings

    def _call(app, path, **extra):
        seen = {}
        def start_response(status, headers, exc_info=None):
            seen["status"], seen["headers"] = status, dict(headers)
        environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "QUERY_STRING": "",
                   "SERVER_NAME": "sidecar", "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1",
                   "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.input": None,
                   **extra}
        body = b"".join(app(environ, start_response))
        return seen["status"], seen["headers"], body

    BASIC = "Basic " + base64.b64encode(b"admin:Harbor12345").decode()
    app, runtime = create_app(Settings(database="sqlite:///" + sys.argv[1],
                                       upstream="http://127.0.0.1:9", admin_password="Harbor12345"),
                              start=False)
    seen = {"at_start": "flask" in sys.modules}
    seen["healthz"] = _call(app, "/sidecar/healthz")[0]
    seen["metrics"] = _call(app, "/sidecar/metrics")[0]
    seen["after_probes"] = sorted(m for m in ("flask", "jinja2", "werkzeug", "click",
                                              "sidecar.api.harbor", "sidecar.api.ui",
                                              "sidecar.api.ops.status") if m in sys.modules)
    seen["loaded"] = app.admin_loaded
    status, headers, body = _call(app, "/sidecar/status", HTTP_AUTHORIZATION=BASIC,
                                  HTTP_ACCEPT="application/json")
    seen["status"] = [status, headers["Content-Type"], sorted(json.loads(body))[:3]]
    seen["after_status"] = "flask" in sys.modules and app.admin_loaded
    print(json.dumps(seen))
""")


def test_probes_answer_without_importing_flask_and_status_builds_it(tmp_path):
    done = subprocess.run([sys.executable, "-c", FRESH, str(tmp_path / "db.sqlite")],
                          capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["at_start"] is False
    assert seen["healthz"] == "503 SERVICE UNAVAILABLE"  # nothing listens on port 9
    assert seen["metrics"] == "200 OK"
    assert seen["after_probes"] == [] and seen["loaded"] is False
    assert seen["status"][:2] == ["200 OK", "application/json"]
    assert seen["after_status"] is True


# -- one implementation: the native answers are the Flask routes' ---------------------------

@pytest.mark.parametrize("up", [True, False])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_healthz_answers_as_the_flask_route_did(built, monkeypatch, up, method):
    app, runtime = built
    monkeypatch.setattr(runtime.upstream, "healthy", lambda: up)
    native = _call(app, "/sidecar/healthz", method)
    assert not app.admin_loaded
    flask_answer = app.flask_app.test_client().open("/sidecar/healthz", method=method)
    assert native[0] == flask_answer.status
    assert native[1] == dict(flask_answer.headers)
    assert native[2] == flask_answer.get_data()
    # what the route answered before it shared api.ops.probes: jsonify of the same body
    with app.flask_app.app_context():
        before = jsonify({"status": "ok" if up else "upstream unavailable",
                          "upstream": "http://127.0.0.1:9"})
    assert probes.healthz(runtime) == (before.get_data(), 200 if up else 503)
    assert before.headers["Content-Type"] == native[1]["Content-Type"]
    if method == "GET":
        assert native[2] == before.get_data()


def test_open_metrics_answer_as_the_flask_route_did(built):
    app, runtime = built
    status, headers, body = _call(app, "/sidecar/metrics")
    assert not app.admin_loaded
    flask_answer = app.flask_app.test_client().get("/sidecar/metrics")
    assert status == flask_answer.status == "200 OK"
    assert headers["Content-Type"] == flask_answer.headers["Content-Type"]
    assert headers["Content-Length"] == str(len(body))
    names = {line.split()[2] for line in body.decode().splitlines() if line.startswith("# TYPE")}
    assert {"sidecar_store_up", "sidecar_queue_depth", "sidecar_deliveries"} <= names
    assert names == {line.split()[2] for line in flask_answer.get_data(as_text=True).splitlines()
                     if line.startswith("# TYPE")}


def test_metrics_behind_the_admin_login_go_through_flask(tmp_path):
    app, _ = create_app(Settings(database=f"sqlite:///{tmp_path / 'db.sqlite'}",
                                 upstream="http://127.0.0.1:9", admin_password=PASSWORD,
                                 metrics_auth=True), start=False)
    status, headers, _ = _call(app, "/sidecar/metrics")
    assert status.startswith("401") and app.admin_loaded
    assert _call(app, "/sidecar/metrics", HTTP_AUTHORIZATION=BASIC)[0] == "200 OK"


@pytest.mark.parametrize("path,method", [("/sidecar/healthz", "POST"),
                                         ("/sidecar/healthz/", "GET"),
                                         ("/sidecar/healthz", "OPTIONS")])
def test_other_requests_of_the_probe_paths_are_flasks(built, path, method):
    app, _ = built
    native = _call(app, path, method)
    assert app.admin_loaded  # Flask answered: 405, 404, OPTIONS' Allow, as before
    flask_answer = app.flask_app.test_client().open(path, method=method)
    assert native[0] == flask_answer.status


# -- built once --------------------------------------------------------------------------

def test_concurrent_first_requests_build_one_flask_app(built, monkeypatch):
    app, _ = built
    builds = []
    real = app_module.create_flask

    def slow_build(runtime):
        builds.append(threading.get_ident())
        time.sleep(0.2)  # the others arrive while it imports
        return real(runtime)

    monkeypatch.setattr(app_module, "create_flask", slow_build)
    barrier = threading.Barrier(8)
    answers: list[str] = []

    def first_request():
        barrier.wait()
        answers.append(_call(app, "/api/v2.0/ping")[0])

    threads = [threading.Thread(target=first_request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(builds) == 1
    assert len(answers) == 8 and len(set(answers)) == 1 and answers[0].startswith("200")
    assert app.flask_app is app.flask_app


def test_a_failed_build_is_tried_again_on_the_next_request(built, monkeypatch):
    app, _ = built
    real = app_module.create_flask
    calls = []

    def flaky(runtime):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("import failed")
        return real(runtime)

    monkeypatch.setattr(app_module, "create_flask", flaky)
    with pytest.raises(RuntimeError):
        _call(app, "/api/v2.0/ping")
    assert not app.admin_loaded
    assert _call(app, "/api/v2.0/ping")[0].startswith("200")
    assert len(calls) == 2


# -- a served worker ------------------------------------------------------------------------

def _admin_plane_in(pid: int) -> bool:
    """Whether the process has loaded Flask's stack: Werkzeug, Jinja2 and Flask all import
    markupsafe, whose compiled speedups then show among the process's mapped files."""
    with open(f"/proc/{pid}/maps") as maps:
        return "markupsafe/_speedups" in maps.read()


@pytest.mark.e2e
def test_a_served_worker_loads_flask_with_its_first_admin_request(tmp_path, registry, image):
    rules = {"projects": [{"name": "lazy", "webhooks": []}]}
    sidecar = Sidecar(tmp_path / "sc", registry.url, rules=rules, workers=1)
    try:
        sidecar.start(ready="/sidecar/healthz")  # as a deployment's probes: no admin request
        worker = _worker_pid(sidecar)
        layout, _ = image("v1")
        clients.push(layout, "v1", f"{sidecar.netloc}/lazy/app:v1")
        clients.pull(f"{sidecar.netloc}/lazy/app:v1", tmp_path / "out")
        for path in ("/sidecar/healthz", "/sidecar/metrics"):
            with urllib.request.urlopen(f"{sidecar.url}{path}", timeout=10) as response:
                assert response.status == 200
        assert not _admin_plane_in(worker)

        def projects() -> list[str]:
            request = urllib.request.Request(f"{sidecar.url}/api/v2.0/projects?name=lazy",
                                             headers=sidecar.admin_headers())
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200
                return [p["name"] for p in json.loads(response.read())]

        # first requests at once, each on its own connection: greenlets of the one worker
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: projects(), range(6)))
        assert answers == [["lazy"]] * 6
        assert sidecar.status()["upstream"]["healthy"] is True
        assert _admin_plane_in(worker)  # so the check above could have seen it
        assert _worker_pid(sidecar) == worker  # the same worker, not a restarted one
        assert sidecar.log().count("admin plane (Flask, API, UI) loaded") == 1
    finally:
        sidecar.stop()


def _worker_pid(sidecar: Sidecar) -> int:
    deadline = time.monotonic() + 20
    master = sidecar.process.pid
    while time.monotonic() < deadline:
        for tid in os.listdir(f"/proc/{master}/task"):
            with open(f"/proc/{master}/task/{tid}/children") as handle:
                children = handle.read().split()
            if children:
                return int(children[0])
        time.sleep(0.05)
    raise AssertionError(f"no worker:\n{sidecar.log()}")
