"""deploy/ is checked like code: the compose file against the Compose Specification's JSON schema
(shipped by check-jsonschema), the Kubernetes manifests against Kubernetes' own schemas (shipped
by kubernetes-validate; nothing is downloaded), the systemd unit with `systemd-analyze verify`,
and the promises the kits make (only the sidecar exposed, secrets from env files, non-root,
probes on /sidecar/healthz). tests/test_e2e_deploy.py runs what they run."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
KUBE = DEPLOY / "kubernetes"
#: the oldest Kubernetes minor still maintained by the big providers, and the newest known
KUBE_VERSIONS = ("1.30.0", "latest")


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def check_compose(path: Path) -> subprocess.CompletedProcess:
    """check-jsonschema's vendored copy of compose-spec.json (no network: --no-cache is moot)."""
    exe = shutil.which("check-jsonschema")
    assert exe, "check-jsonschema is part of the test extra: pip install -e '.[test]'"
    return subprocess.run([exe, "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_compose_file_follows_the_compose_specification():
    result = check_compose(DEPLOY / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_schema_check_can_fail(tmp_path):
    broken = compose()
    broken["services"]["sidecar"]["restart_policy"] = "always"  # not a service key
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = check_compose(path)
    assert result.returncode != 0 and "restart_policy" in result.stdout + result.stderr


def test_compose_publishes_only_the_sidecar_and_takes_secrets_from_an_env_file():
    services = compose()["services"]
    assert set(services) == {"registry", "sidecar", "postgres"}
    assert [name for name, s in services.items() if s.get("ports")] == ["sidecar"]
    sidecar = services["sidecar"]
    assert [e["path"] for e in sidecar["env_file"]] == ["secrets.env"]
    assert (DEPLOY / "secrets.env.example").exists()
    mounts = {v.split(":")[1]: v.split(":")[0] for v in sidecar["volumes"]}
    assert mounts == {"/etc/sidecar/harbor.yml": "./config/harbor.yml",
                      "/etc/sidecar/rules.yaml": "./config/rules.yaml"}
    assert all(v.endswith(":ro") for v in sidecar["volumes"])
    assert sidecar["depends_on"]["postgres"]["condition"] == "service_healthy"
    harbor = yaml.safe_load((DEPLOY / "config" / "harbor.yml").read_text())
    assert "${" in harbor["harbor_admin_password"]  # never a password in the file
    assert "${" in harbor["external_database"]["harbor"]["password"]


def kube_documents() -> list[tuple[str, dict]]:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((KUBE / name).read_text()):
            docs.append((name, doc))
    return docs


def test_the_kustomization_names_every_manifest_and_generates_the_secret():
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    manifests = {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests
    (generator,) = kustomization["secretGenerator"]
    for env_file in generator["envs"]:
        assert (KUBE / f"{env_file}.example").exists()


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_kubernetes_manifests_follow_the_kubernetes_schemas(version):
    import kubernetes_validate

    if version == "latest":
        version = kubernetes_validate.latest_version()
    kinds = []
    for name, doc in kube_documents():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {exc.message} at {'.'.join(map(str, exc.path))}")
        kinds.append(doc["kind"])
    assert sorted(kinds) == ["ConfigMap", "Deployment", "Namespace", "PersistentVolumeClaim",
                             "PodDisruptionBudget", "Service"]


def test_the_kubernetes_schema_check_can_fail():
    import kubernetes_validate

    deployment = copy.deepcopy(next(d for _, d in kube_documents() if d["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][1]["readinessProbe"]["httpGet"]["port"] \
        = ["sidecar"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.30.0", strict=True)
    deployment = copy.deepcopy(next(d for _, d in kube_documents() if d["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][1]["livenessprobe"] = {}  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.30.0", strict=True)


def test_the_pod_runs_the_sidecar_beside_the_registry_non_root_behind_one_service():
    docs = {d["kind"]: d for _, d in kube_documents()}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    registry, sidecar = pod["containers"]
    assert (registry["name"], sidecar["name"]) == ("registry", "sidecar")
    # the registry answers on the Pod's loopback only: every request passes the sidecar
    env = {e["name"]: e.get("value") for e in registry["env"]}
    assert env["REGISTRY_HTTP_ADDR"].startswith("127.0.0.1:")
    assert "ports" not in registry
    assert docs["Service"]["spec"]["ports"][0]["targetPort"] == sidecar["ports"][0]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in pod["containers"]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert "memory" in container["resources"]["limits"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert sidecar[probe]["httpGet"]["path"] == "/sidecar/healthz"
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == \
        docs["Deployment"]["spec"]["selector"]["matchLabels"]
    harbor = yaml.safe_load(docs["ConfigMap"]["data"]["harbor.yml"])
    assert harbor["sidecar"]["upstream"] == "http://" + env["REGISTRY_HTTP_ADDR"]


def test_the_image_runs_sidecar_serve_as_a_non_root_user():
    lines = (DEPLOY / "Containerfile").read_text().splitlines()
    entrypoint = [json.loads(line.split(None, 1)[1]) for line in lines
                  if line.startswith("ENTRYPOINT ")]
    users = [line.split(None, 1)[1] for line in lines if line.startswith("USER ")]
    assert entrypoint == [["sidecar", "serve"]]
    assert users and not users[-1].startswith(("root", "0:", "0 ")) and users[-1] != "0"
    assert any("'.[postgres]'" in line for line in lines)  # the kits use PostgreSQL


def test_systemd_unit_verifies(tmp_path):
    """`systemd-analyze verify` on the unit, with ExecStart pointed at this checkout's
    `sidecar` (verify insists that the binary exists)."""
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    sidecar = shutil.which("sidecar")
    assert sidecar, "the project is installed in the test environment"
    unit = (DEPLOY / "systemd" / "sidecar.service").read_text()
    installed = "/opt/registry-webhook-sidecar/bin/sidecar"
    assert f"ExecStart={installed} serve " in unit
    path = tmp_path / "registry-webhook-sidecar.service"
    path.write_text(unit.replace(installed, sidecar))
    result = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True,
                            timeout=60)
    # unknown keys and bad values are warnings with exit 0: any output is a failure
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), \
        result.stdout + result.stderr
    offline = subprocess.run([analyze, "security", "--offline=yes", "--threshold=20",
                              str(path)], capture_output=True, text=True, timeout=60)
    assert offline.returncode == 0, offline.stdout[-2000:] + offline.stderr


def test_systemd_unit_runs_as_a_dedicated_user_with_its_own_state_directory():
    unit = (DEPLOY / "systemd" / "sidecar.service").read_text()
    settings = dict(line.split("=", 1) for line in unit.splitlines()
                    if "=" in line and not line.startswith("#"))
    assert settings["User"] == "registry-webhook-sidecar"
    assert settings["StateDirectory"] == "registry-webhook-sidecar"
    assert settings["EnvironmentFile"].endswith("secrets.env")
    for key in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp"):
        assert settings[key] in ("yes", "strict")
