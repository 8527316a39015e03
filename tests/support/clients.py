"""Real registry clients (skopeo, podman) as the tests drive them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path


def run(args: list[str], timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def skopeo(*args: str, creds: str | None = None, timeout: float = 300,
           check: bool = True) -> subprocess.CompletedProcess:
    if not shutil.which("skopeo"):
        raise RuntimeError("skopeo is not installed: apt-get install -y skopeo")
    return run(["skopeo", *args], timeout=timeout, check=check)


def push(layout: Path, tag: str, dest: str, creds: str | None = None) -> None:
    extra = ["--dest-creds", creds] if creds else []
    skopeo("copy", "--dest-tls-verify=false", *extra, f"oci:{layout}:{tag}", f"docker://{dest}")


def pull(src: str, out: Path, creds: str | None = None) -> None:
    extra = ["--src-creds", creds] if creds else []
    skopeo("copy", "--src-tls-verify=false", *extra, f"docker://{src}", f"oci:{out}:pulled")


def inspect_raw(ref: str, creds: str | None = None) -> dict:
    extra = ["--creds", creds] if creds else []
    return json.loads(skopeo("inspect", "--tls-verify=false", "--raw", *extra,
                             f"docker://{ref}").stdout)


def delete(ref: str, creds: str | None = None) -> None:
    extra = ["--creds", creds] if creds else []
    skopeo("delete", "--tls-verify=false", *extra, f"docker://{ref}")
