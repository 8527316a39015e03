"""The processes a benchmark run starts: registry, nginx, sidecars, a counting receiver.

Registry and sidecar come from tests/support (the same way the end-to-end tests start them);
nginx and the receiver are the benchmark's own. Everything binds free loopback ports.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.ports import free_port
from tests.support.ports import wait_http
from tests.support.sidecar import Sidecar

HERE = Path(__file__).resolve().parent


class _NginxProcess:
    """An nginx of the benchmark's own: its prefix, its config, stopped with SIGQUIT."""

    def __init__(self, workdir: Path):
        self.prefix = workdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def launch(self, config: str, ready_url: str, check: bool = False) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(config)
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        args = [binary, "-e", str(self.prefix / "error.log"), "-p", str(self.prefix),
                "-c", str(conf)]
        if check:
            subprocess.run([*args, "-t", "-q"], check=True)
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        wait_http(ready_url)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def pids(self) -> list[int]:
        return process_tree(self.process.pid) if self.process else []


class Nginx(_NginxProcess):
    """nginx with its own prefix, proxying to the registry with the docs' recipe settings."""

    def __init__(self, workdir: Path, upstream_port: int):
        super().__init__(workdir)
        self.url = f"http://127.0.0.1:{self.port}"
        self.upstream_port = upstream_port

    def start(self) -> Nginx:
        text = (HERE / "nginx.conf.template").read_text()
        for key, value in (("@LISTEN@", self.port), ("@UPSTREAM@", self.upstream_port),
                           ("@PREFIX@", self.prefix)):
            text = text.replace(key, str(value))
        self.launch(text, f"{self.url}/v2/", check=True)
        return self


class CountingReceiver:
    """bench/receiver.py in its own process."""

    kind = "python http.server"

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.process: subprocess.Popen | None = None

    def pids(self) -> list[int]:
        return process_tree(self.process.pid) if self.process else []

    def start(self) -> CountingReceiver:
        self.process = subprocess.Popen([sys.executable, str(HERE / "receiver.py"),
                                         str(self.port)], start_new_session=True)
        wait_http(f"http://127.0.0.1:{self.port}/count", ok=(200,))
        return self

    def count(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/count", timeout=10) as r:
            return int(r.read())

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class NginxReceiver(_NginxProcess):
    """nginx answering every webhook 200, counted from its access log.

    The receiver shares the machine's two cores with the registry, wrk and the sidecar; a
    Python receiver costs several times what nginx does per webhook, which the benchmark would
    otherwise charge to the sidecar's throughput. Receivers run elsewhere in production.
    """

    kind = "nginx"

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> NginxReceiver:
        self.launch(_RECEIVER_CONF.replace("@PREFIX@", str(self.prefix))
                    .replace("@LISTEN@", str(self.port)),
                    f"http://127.0.0.1:{self.port}/count")
        return self

    def count(self) -> int:
        with open(self.prefix / "hooks.log", "rb") as log:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: log.read(1 << 20), b""))


_RECEIVER_CONF = """
daemon off;
worker_processes 1;
pid @PREFIX@/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path @PREFIX@/client_body;
    proxy_temp_path @PREFIX@/proxy;
    fastcgi_temp_path @PREFIX@/fastcgi;
    uwsgi_temp_path @PREFIX@/uwsgi;
    scgi_temp_path @PREFIX@/scgi;
    log_format hook "1";
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:@LISTEN@;
        location = /hook { access_log @PREFIX@/hooks.log hook; return 200; }
        location = /count { return 200; }
    }
}
"""


def pull_rules(address: str, project: str = "bench") -> dict:
    """One project whose policy sends every PULL_ARTIFACT to `address`."""
    return {"projects": [{"name": project, "public": False, "webhooks": [{
        "name": "pulls", "enabled": True, "event_types": ["PULL_ARTIFACT"],
        "targets": [{"type": "http", "address": address, "skip_cert_verify": False,
                     "payload_format": "Default"}],
    }]}]}


class _EntrySidecar(Sidecar):
    """A sidecar started through a given console-script entry point ("module:function")."""

    entry = ""

    def command(self) -> list[str]:
        module, _, function = self.entry.partition(":")
        launcher = f"import sys; from {module} import {function}; sys.exit({function}())"
        args = super().command()
        return [sys.executable, "-c", launcher, *args[args.index("serve"):]]


def entry_point(source_root: Path) -> str:
    """The `sidecar` script's entry point in the pyproject.toml of a source tree."""
    for line in (source_root / "pyproject.toml").read_text().splitlines():
        if line.replace(" ", "").startswith("sidecar="):
            return line.split("=", 1)[1].strip().strip('"')
    raise ValueError(f"no sidecar script in {source_root / 'pyproject.toml'}")


def start_sidecar(workdir: Path, upstream: str, workers: int, rules: dict | None = None,
                  env: dict[str, str] | None = None, entry: str | None = None,
                  ready: str = "/sidecar/status") -> Sidecar:
    """`entry` ("module:function") starts another version's CLI (with PYTHONPATH in env);
    `ready`, the page polled until it answers (tests.support.sidecar.Sidecar.start)."""
    # Default poll intervals (not the tests' fast ones): idle cost is part of what we measure.
    config = {"sidecar": {"rules_poll_seconds": 2.0}}
    kind = Sidecar
    if entry:
        kind = type("BaselineSidecar", (_EntrySidecar,), {"entry": entry})
    sidecar = kind(workdir, upstream, rules=rules, config=config, workers=workers, env=env,
                   record_unmatched=False)  # the default: what users run
    sidecar.start(ready=ready)
    deadline = time.monotonic() + 20
    while len(worker_pids(sidecar)) < workers and time.monotonic() < deadline:
        time.sleep(0.05)
    return sidecar


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    out = [pid]
    for task in _children(pid):
        out.extend(process_tree(task))
    return out


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                found.extend(int(p) for p in handle.read().split())
    except OSError:
        pass
    return found


def worker_pids(sidecar: Sidecar) -> list[int]:
    return _children(sidecar.process.pid) if sidecar.process else []


def sidecar_pids(sidecar: Sidecar) -> list[int]:
    return process_tree(sidecar.process.pid) if sidecar.process else []
