"""The sidecar started the way the README starts it: `sidecar serve`, real gunicorn + gevent."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.support.ports import free_port
from tests.support.ports import wait_http


def sidecar_command() -> list[str]:
    found = shutil.which("sidecar")
    return [found] if found else [sys.executable, "-m", "sidecar.main"]


class Sidecar:
    """One `sidecar serve` process with its own harbor.yml, rules file and database."""

    def __init__(self, workdir: Path, upstream: str, rules: dict | str | None = None,
                 config: dict | None = None, env: dict[str, str] | None = None,
                 workers: int = 1, database: str | None = None, port: int | None = None,
                 extra_args: list[str] | None = None, record_unmatched: bool = True):
        """`record_unmatched`: store every event, policy or not (sidecar.record_unmatched_events),
        so tests read what was inferred from the store (tests/support/recorded.py)."""
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.netloc = f"127.0.0.1:{self.port}"
        self.upstream = upstream
        self.rules_path = workdir / "rules.yaml"
        self.config_path = workdir / "harbor.yml"
        self.log_path = workdir / "sidecar.log"
        self.database = database or f"sqlite:///{workdir / 'sidecar.db'}"
        self.env = env or {}
        self.workers = workers
        self.extra_args = extra_args or []
        self.process: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        base = {
            "notification": {"webhook_job_max_retry": 3, "webhook_job_http_client_timeout": 2},
            "sidecar": {"delivery": {"backoff_seconds": 0.2, "backoff_max_seconds": 1.0},
                        "rules_poll_seconds": 0.2},
        }
        if record_unmatched:
            base["sidecar"]["record_unmatched_events"] = True
        for key, value in (config or {}).items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        self.config_path.write_text(yaml.safe_dump(base))
        #: /sidecar/status is the admin's (unless sidecar.public_status): status() logs in
        self.admin_password = str(base.get("harbor_admin_password", "Harbor12345"))
        if rules is not None:
            self.write_rules(rules)

    def write_rules(self, rules: dict | str) -> None:
        text = rules if isinstance(rules, str) else yaml.safe_dump(rules, sort_keys=False)
        tmp = self.rules_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.rules_path)

    def command(self) -> list[str]:
        args = [*sidecar_command(), "serve", "--config", str(self.config_path),
                "--upstream", self.upstream, "--bind", f"127.0.0.1:{self.port}",
                "--database", self.database, "--workers", str(self.workers)]
        if self.rules_path.exists():
            args += ["--rules", str(self.rules_path)]
        return args + self.extra_args

    def start(self, wait: bool = True, ready: str = "/sidecar/status") -> Sidecar:
        """`ready`: the page polled until it answers. /sidecar/status (200, or 401 to no login)
        builds a worker's admin plane; /sidecar/healthz (200, or 503 while the registry is
        down) does not, as a deployment's probes do not."""
        env = {**os.environ, **self.env}
        self.process = subprocess.Popen(
            self.command(), cwd=self.workdir, env=env,
            stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            try:
                ok = (200, 503) if ready == "/sidecar/healthz" else (200, 401)
                wait_http(f"{self.url}{ready}", timeout=20, ok=ok)
            except TimeoutError:
                raise AssertionError(f"sidecar did not start:\n{self.log()}") from None
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (master and workers)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def admin_headers(self) -> dict[str, str]:
        """HTTP Basic for the admin: the API, /sidecar/status."""
        token = base64.b64encode(f"admin:{self.admin_password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def status(self) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.url}/sidecar/status",
                                         headers=self.admin_headers())
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def wait_status(self, predicate, timeout: float = 20.0) -> dict[str, Any]:
        """Poll /sidecar/status until `predicate(status)` holds; return that status."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status()
            if predicate(status):
                return status
            time.sleep(0.1)
        raise AssertionError(f"status never matched: {json.dumps(status, indent=1)[:3000]}")
