"""The deploy kits run as written: the sidecar's command line is the image's ENTRYPOINT
(deploy/Containerfile) plus the compose service's `command` or the Kubernetes container's
`args`; its files are what the compose volumes and the ConfigMap mount, its environment what the
env file or the generated Secret hands it (the committed `.example` stands for the file the user
writes). Only addresses are adapted to this machine: the registry, PostgreSQL (a throwaway
database of the kit's user), the listening port, the receiver, and the allow-list that lets a
receiver on loopback through. A real push must reach the receiver, so a kit that drifts from the
CLI or the config format fails here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import pytest
import requests
import yaml

from tests.support import clients
from tests.support import postgres
from tests.support.ports import free_port
from tests.support.ports import wait_http
from tests.support.sidecar import sidecar_command

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


@dataclass
class Kit:
    """What a container runtime would start: argv, files by container path, environment."""

    argv: list[str]
    files: dict[str, str]
    env: dict[str, str]
    health_path: str
    workdir: str = "/"
    log: list[str] = field(default_factory=list)


def containerfile() -> dict[str, object]:
    """ENTRYPOINT, CMD and WORKDIR of deploy/Containerfile's final stage (exec form only)."""
    found: dict[str, object] = {}
    for line in (DEPLOY / "Containerfile").read_text().splitlines():
        instruction, _, rest = line.partition(" ")
        if instruction == "FROM":
            found = {}  # only the last stage is the image
        elif instruction in ("ENTRYPOINT", "CMD"):
            found[instruction] = json.loads(rest)
        elif instruction == "WORKDIR":
            found[instruction] = rest.strip()
    return found


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of the committed example of a file the user writes."""
    example = path.with_name(path.name + ".example")
    pairs = (line.split("=", 1) for line in example.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def compose_kit() -> Kit:
    service = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["sidecar"]
    built = containerfile()
    argv = list(service.get("entrypoint") or built["ENTRYPOINT"]) + list(
        service.get("command") or built["CMD"])
    files = {}
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        files[target] = (DEPLOY / source).read_text()
    env: dict[str, str] = {}
    for entry in service.get("env_file", []):
        env.update(env_file(DEPLOY / (entry["path"] if isinstance(entry, dict) else entry)))
    env.update({k: str(v) for k, v in (service.get("environment") or {}).items()})
    health = next(arg for arg in service["healthcheck"]["test"] if "/sidecar/" in arg)
    path = "/sidecar/" + health.split("/sidecar/", 1)[1].split("'")[0]
    return Kit(argv, files, env, path, str(built["WORKDIR"]))


def kubernetes_kit() -> Kit:
    kube = DEPLOY / "kubernetes"
    kustomization = yaml.safe_load((kube / "kustomization.yaml").read_text())
    docs = [doc for name in kustomization["resources"]
            for doc in yaml.safe_load_all((kube / name).read_text())]
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "sidecar")
    built = containerfile()
    argv = list(container.get("command") or built["ENTRYPOINT"]) + list(
        container.get("args") or built["CMD"])
    config_maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    secrets = {g["name"]: {k: v for f in g["envs"] for k, v in env_file(kube / f).items()}
               for g in kustomization["secretGenerator"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    files = {}
    for mount in container["volumeMounts"]:
        source = volumes[mount["name"]]
        if "configMap" in source:
            for key, text in config_maps[source["configMap"]["name"]].items():
                files[f"{mount['mountPath']}/{key}"] = text
    env = {}
    for source in container.get("envFrom", []):
        env.update(secrets[source["secretRef"]["name"]])
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secrets[ref["name"]][ref["key"]]
    return Kit(argv, files, env, container["readinessProbe"]["httpGet"]["path"],
               container.get("workingDir") or str(built["WORKDIR"]))


class Running:
    """The kit's sidecar on this machine: its container paths under `root`."""

    def __init__(self, kit: Kit, root: Path, registry_url: str, receiver_url: str,
                 database_url: str):
        self.kit = kit
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.netloc = f"127.0.0.1:{self.port}"
        database = requests.utils.urlparse(database_url)
        for path, text in kit.files.items():
            if path.endswith("harbor.yml"):
                text = yaml.safe_dump(self._adapt(yaml.safe_load(text), registry_url, database))
            self.host_path(path).parent.mkdir(parents=True, exist_ok=True)
            self.host_path(path).write_text(text)
        argv = [self.host_arg(arg) for arg in kit.argv]
        assert argv[0] == "sidecar", f"the entry point runs the sidecar command: {kit.argv}"
        self.argv = [*sidecar_command(), *argv[1:]]
        self.env = {**os.environ, **kit.env, "CI_WEBHOOK_URL": receiver_url}
        self.workdir = self.host_path(kit.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "sidecar.log"
        self.process: subprocess.Popen | None = None

    def host_path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def host_arg(self, arg: str) -> str:
        return str(self.host_path(arg)) if arg in self.kit.files else arg

    def _adapt(self, harbor: dict, registry_url: str, database) -> dict:
        """Addresses only: where the registry, the database, the listener and the receiver are."""
        sidecar = harbor["sidecar"]
        sidecar["upstream"] = registry_url
        assert sidecar["bind"].endswith(":8080")
        sidecar["bind"] = self.netloc
        sidecar["rules"] = str(self.host_path(sidecar["rules"]))
        assert sidecar["rules"] and Path(sidecar["rules"]).parent.is_relative_to(self.root)
        db = harbor["external_database"]["harbor"]
        assert db["username"] == database.username  # the kit's own user, made for the test
        db.update(host=database.hostname, port=database.port, db_name=database.path[1:])
        if harbor.get("network", {}).get("allow_private_network_access") is False:
            sidecar["webhook_allowed_networks"] = [
                *(sidecar.get("webhook_allowed_networks") or []), "127.0.0.0/8"]
        return harbor

    def start(self) -> Running:
        self.process = subprocess.Popen(
            self.argv, cwd=self.workdir, env=self.env, stdout=open(self.log_path, "ab"),
            stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(60):  # up to 30 s, but no longer than the process lives
            if self.process.poll() is not None:
                break
            try:
                wait_http(self.url + self.kit.health_path, timeout=0.5, ok=(200,))
                return self
            except TimeoutError:
                continue
        raise AssertionError(f"the kit's sidecar did not get healthy:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def kit_database():
    reason = postgres.unreachable_reason()
    if reason:
        pytest.skip(reason)
    url = postgres.create_database("sidecar_kit", owner="sidecar")
    yield url
    postgres.drop_database(url)


@pytest.mark.parametrize("make_kit", [compose_kit, kubernetes_kit], ids=["compose", "kubernetes"])
def test_the_kit_runs_as_written_and_delivers_a_push(make_kit, tmp_path, registry, receiver,
                                                      image, kit_database):
    kit = make_kit()
    running = Running(kit, tmp_path / "root", registry.url, receiver.url, kit_database)
    running.start()
    try:
        layout, digest = image("v1")
        clients.push(layout, "v1", f"{running.netloc}/library/app:v1")
        [request] = receiver.wait_for(1)
        event = request.json()
        assert event["type"] == "PUSH_ARTIFACT"
        assert event["event_data"]["resources"][0]["digest"] == digest
        assert event["event_data"]["repository"]["repo_full_name"] == "library/app"
        # the token and the admin password came from the kit's env file / Secret
        assert request.headers["authorization"] == f"Bearer {kit.env['CI_TOKEN']}"
        answer = requests.get(f"{running.url}/api/v2.0/projects", timeout=10,
                              auth=("admin", kit.env["HARBOR_ADMIN_PASSWORD"]))
        assert answer.status_code == 200 and [p["name"] for p in answer.json()] == ["library"]
    finally:
        running.stop()
    log = running.log()
    assert kit.env["CI_TOKEN"] not in log and kit.env["POSTGRES_PASSWORD"] not in log
