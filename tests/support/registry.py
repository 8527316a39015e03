"""CNCF Distribution (Debian's docker-registry) on a free loopback port: open, with htpasswd
(Basic), or with `auth: token` trusting a token service (tests/support/tokens.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port
from tests.support.ports import wait_http

BINARY = "/usr/bin/docker-registry"

CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: {deletes}
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: test-secret-{port}
{tls}{auth}"""


@dataclass(frozen=True)
class TokenAuth:
    """Distribution's `auth.token` section."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: Path

    def yaml(self) -> str:
        return (f"auth:\n  token:\n    realm: {self.realm}\n    service: {self.service}\n"
                f"    issuer: {self.issuer}\n    rootcertbundle: {self.rootcertbundle}\n")


class Registry:
    def __init__(self, workdir: Path, htpasswd: Path | None = None,
                 token: TokenAuth | None = None, tls: tuple[str, str] | None = None,
                 deletes: bool = True):
        """`tls`: (certificate, key) PEM files to serve HTTPS with; `deletes`: whether the
        registry allows manifest deletes (off, it answers 405 as a default install does)."""
        if not os.path.exists(BINARY):
            raise RuntimeError(
                "docker-registry is not installed: apt-get install -y docker-registry")
        self.workdir = workdir
        self.port = free_port()
        self.tls = tls
        self.deletes = deletes
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.netloc = f"127.0.0.1:{self.port}"
        self.htpasswd = htpasswd
        self.token = token
        self.process: subprocess.Popen | None = None
        self.log_path = workdir / "registry.log"

    def start(self) -> Registry:
        self.workdir.mkdir(parents=True, exist_ok=True)
        auth = ""
        if self.htpasswd:
            auth = f"auth:\n  htpasswd:\n    realm: test-realm\n    path: {self.htpasswd}\n"
        elif self.token:
            auth = self.token.yaml()
        config = self.workdir / "config.yml"
        tls = (f"  tls:\n    certificate: {self.tls[0]}\n    key: {self.tls[1]}\n"
               if self.tls else "")
        config.write_text(CONFIG.format(root=self.workdir / "storage", port=self.port, auth=auth,
                                        tls=tls, deletes=str(self.deletes).lower()))
        self.process = subprocess.Popen(
            [BINARY, "serve", str(config)],
            stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_http(f"{self.url}/v2/", verify=not self.tls)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def wipe(self) -> None:
        shutil.rmtree(self.workdir / "storage", ignore_errors=True)
