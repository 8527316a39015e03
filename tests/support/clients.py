"""Real registry clients (skopeo, podman) as the tests drive them."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
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


def inspect(ref: str, creds: str | None = None) -> dict:
    """`skopeo inspect` (manifest digest, layers, tags) of a remote image."""
    extra = ["--creds", creds] if creds else []
    return json.loads(skopeo("inspect", "--tls-verify=false", *extra,
                             f"docker://{ref}").stdout)


class Podman:
    """podman with its own storage under `workdir` (no daemon, nothing in /var/lib)."""

    def __init__(self, workdir: Path):
        if not shutil.which("podman"):
            raise RuntimeError("podman is not installed: apt-get install -y podman")
        self.workdir = workdir
        # podman refuses a runroot path longer than 50 characters: pytest's are longer
        self.runroot = tempfile.mkdtemp(prefix="podman-run-", dir="/tmp")
        self.base = ["podman", "--root", str(workdir / "root"), "--runroot", self.runroot,
                     "--storage-driver", "vfs", "--events-backend", "file",
                     "--cgroup-manager", "cgroupfs"]

    def close(self) -> None:
        shutil.rmtree(self.runroot, ignore_errors=True)

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return run([*self.base, *args], timeout=timeout)

    def load_layout(self, layout: Path, tag: str) -> str:
        """Pull an OCI layout into local storage; return the image ID (podman drops TAG)."""
        out = self("pull", "-q", f"oci:{layout}:{tag}").stdout.split()
        return out[-1]

    def push(self, image: str, dest: str, creds: str | None = None) -> None:
        extra = ["--creds", creds] if creds else []
        self("push", "--tls-verify=false", *extra, image, f"docker://{dest}")

    def pull(self, ref: str) -> str:
        return self("pull", "-q", "--tls-verify=false", ref).stdout.split()[-1]

    def remove_all(self) -> None:
        run([*self.base, "rmi", "--all", "--force"], check=False)


def oras_client(basic_auth: tuple[str, str] | None = None):
    """oras-py over plain http; Basic auth through its basic backend (no ~/.docker writes)."""
    import oras.client

    client = oras.client.OrasClient(insecure=True, auth_backend="basic")
    if basic_auth:
        client.auth.set_basic_auth(*basic_auth)
    return client


def oras_push(ref: str, files: dict[str, tuple[bytes, str]], workdir: Path,
              config: tuple[bytes, str] | None = None):
    """Push `files` (name -> (content, media type)) as one artifact; return the response."""
    workdir.mkdir(parents=True, exist_ok=True)
    specs = []
    for name, (content, media_type) in files.items():
        (workdir / name).write_bytes(content)
        specs.append(f"{workdir / name}:{media_type}")
    config_spec = None
    if config is not None:
        (workdir / "config.json").write_bytes(config[0])
        config_spec = f"{workdir / 'config.json'}:{config[1]}"
    return oras_client().push(target=ref, files=specs, manifest_config=config_spec,
                              disable_path_validation=True, quiet=True)
