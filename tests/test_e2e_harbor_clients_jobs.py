"""Harbor's own Python API clients against `sidecar serve` on the wave's job APIs, their model
validation on: harborapi (async, pydantic models, validate=True) and harbor-api-client
(generated from Harbor's swagger, client_side_validation on).

One sidecar for the module, as a user starts it, with a scanner, a rules-file project with a
quota, and a replication policy to a real registry behind htpasswd. Each client, as a script
would: lists and reads quotas, changes the limit of a project it created and reads it back, is
refused on a rules-file quota; lists registries and policies, starts a manual replication and
follows it to its end through executions and tasks, then finds the image at the destination
with skopeo; lists and reads scanners, their metadata and a project's scanner; finds a
project's retention policy, starts dry runs (harborapi also a real one) and reads executions
and tasks.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from datetime import datetime

import pytest

from tests.scanner_spec import assert_valid
from tests.support import clients
from tests.support import recorded
from tests.support.auth import htpasswd_file
from tests.support.ports import poll
from tests.support.registry import Registry
from tests.support.scanner_adapter import SCANNER
from tests.support.scanner_adapter import ScannerAdapter
from tests.support.scanning import scan_config
from tests.support.sidecar import Sidecar

harborapi = pytest.importorskip("harborapi")
harbor_client = pytest.importorskip("harbor_client")

from harbor_client.rest import ApiException  # noqa: E402
from harborapi import HarborAsyncClient  # noqa: E402
from harborapi.exceptions import Forbidden  # noqa: E402
from harborapi.models import ProjectReq  # noqa: E402
from harborapi.models import QuotaUpdateReq  # noqa: E402

pytestmark = pytest.mark.e2e

PASSWORD = "jobs-Admin-pw-1234"
DR_PASSWORD = f"dr-{secrets.token_hex(8)}"
PROJECT = "proj"
TIDY = "tidy"  # a project with a tag retention policy
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def dest(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dest-clients")
    registry = Registry(workdir, htpasswd=htpasswd_file(workdir / "htpasswd",
                                                        {"robot": DR_PASSWORD})).start()
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def scanner():
    """The spec-conformant adapter, checked as tests/test_e2e_scan.py's `adapter` fixture does."""
    adapter = ScannerAdapter().start()
    yield adapter
    adapter.stop()
    assert not adapter.violations, "\n".join(adapter.violations)
    for seen in adapter.seen:
        if seen.method == "POST":
            assert_valid("ScanRequest", json.loads(seen.body), strict=True)


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory, registry, dest, scanner):
    rules = {
        "scanners": [{"name": "sim", "url": scanner.url, "default": True}],
        "projects": [{"name": PROJECT, "auto_scan": False},
                     {"name": "fromrules", "quota": {"storage": "10MiB"}},
                     {"name": TIDY, "retention": {"rules": [{
                         "template": "latestPushedK", "params": {"latestPushedK": 1},
                         "tag_selectors": [{"kind": "doublestar", "decoration": "matches",
                                            "pattern": "**"}],
                         "scope_selectors": {"repository": [{
                             "kind": "doublestar", "decoration": "repoMatches",
                             "pattern": "**"}]}}]}}],
        "registries": [{"name": "dr", "url": dest.url, "description": "DR site",
                        "credential": {"access_key": "robot",
                                       "access_secret": "${DR_SECRET}"}}],
        "replication": [{"name": "nightly", "description": "manual copy",
                         "dest_registry": "dr",
                         "filters": [{"type": "name", "value": f"{PROJECT}/**"}],
                         "dest_namespace": "copies", "dest_namespace_replace_count": 0}],
    }
    config = {**scan_config(), "harbor_admin_password": PASSWORD}
    config["sidecar"]["jobs"]["backoff_max_seconds"] = 0.5
    started = Sidecar(tmp_path_factory.mktemp("clients-jobs"), registry.url, rules=rules,
                      config=config, env={"DR_SECRET": DR_PASSWORD}).start()
    yield started
    started.stop()


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


# --- harborapi -------------------------------------------------------------------------------

def harborapi_client(sidecar) -> HarborAsyncClient:
    return HarborAsyncClient(url=f"{sidecar.url}/api/v2.0", username="admin", secret=PASSWORD,
                             validate=True)


def test_harborapi_reads_and_changes_quotas(sidecar):
    name = _name("ha")

    async def script():
        client = harborapi_client(sidecar)
        await client.create_project(ProjectReq(project_name=name, storage_limit=MIB))
        project_id = (await client.get_project(name)).project_id
        [found] = await client.get_quotas(reference="project", reference_id=str(project_id))
        assert found.ref.root == {"id": project_id, "name": name, "owner_name": "admin"}
        assert (found.hard.root, found.used.root) == ({"storage": MIB}, {"storage": 0})
        assert found.update_time is not None and found.creation_time is not None

        await client.update_quota(found.id, QuotaUpdateReq(hard={"storage": 2 * MIB}))
        again = await client.get_quota(found.id)
        assert again.hard.root == {"storage": 2 * MIB} and again.ref.root["name"] == name
        # one a page: harborapi follows the Link headers to the end
        everything = await client.get_quotas(reference="project", page_size=1, limit=None)
        assert len({q.id for q in everything}) == len(everything) >= 2
        assert {q.ref.root["name"] for q in everything} >= {name, "fromrules"}

        from_rules = next(q for q in everything if q.ref.root["name"] == "fromrules")
        with pytest.raises(Forbidden) as refused:
            await client.update_quota(from_rules.id, QuotaUpdateReq(hard={"storage": MIB}))
        assert refused.value.status_code == 403
        assert "rules file" in refused.value.errors[0].message
        assert (await client.get_quota(from_rules.id)).hard.root == {"storage": 10 * MIB}

    asyncio.run(script())


def test_harborapi_runs_a_manual_replication(sidecar, dest, image):
    layout, digest = image(tag="v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/{PROJECT}/harborapi:v1")

    async def script():
        client = harborapi_client(sidecar)
        [dr] = await client.get_registries(query="name=dr")  # Harbor's q=name=dr
        assert (dr.name, dr.url, dr.type, dr.status) == ("dr", dest.url, "docker-registry",
                                                         "healthy")
        assert dr.credential.access_secret == "*****"
        assert (await client.get_registry(dr.id)).description == "DR site"
        [policy] = await client.get_replication_policies(query="name=~night")
        one = await client.get_replication_policy(policy.id)
        assert (one.name, one.dest_registry.name, one.src_registry.name) == (
            "nightly", "dr", "Local")
        assert one.trigger.type == "manual" and one.filters[0].value == f"{PROJECT}/**"

        location = await client.start_replication(policy.id)
        execution_id = int(location.rsplit("/", 1)[1])

        async def finished():
            while True:
                execution = await client.get_replication(execution_id)
                if execution.status != "InProgress":
                    return execution
                await asyncio.sleep(0.2)

        done = await asyncio.wait_for(finished(), 60)
        assert (done.status, done.trigger, done.policy_id) == ("Succeed", "manual", policy.id)
        assert done.failed == 0 and done.succeed == done.total >= 1
        assert done.start_time <= done.end_time
        listed = await client.get_replications(policy_id=policy.id, status="Succeed")
        assert execution_id in [e.id for e in listed]
        tasks = await client.get_replication_tasks(execution_id)
        [task] = [t for t in tasks if t.src_resource.startswith(f"{PROJECT}/harborapi ")]
        assert (task.status, task.operation, task.resource_type) == ("Succeed", "copy",
                                                                     "artifact")
        log = await client.get_replication_task_log(execution_id, task.id)
        assert f"copies/{PROJECT}/harborapi:v1 copied" in log

    asyncio.run(script())
    copied = clients.inspect(f"{dest.netloc}/copies/{PROJECT}/harborapi:v1",
                             creds=f"robot:{DR_PASSWORD}")
    assert copied["Digest"] == digest


# --- harbor-api-client (generated from Harbor's swagger) --------------------------------------

@pytest.fixture
def generated(sidecar):
    config = harbor_client.Configuration()
    config.host = f"{sidecar.url}/api/v2.0"
    config.username, config.password = "admin", PASSWORD
    config.client_side_validation = True
    return harbor_client.ApiClient(config)


def test_generated_client_reads_and_changes_quotas(generated):
    projects = harbor_client.ProjectApi(generated)
    quotas = harbor_client.QuotaApi(generated)
    name = _name("gen")
    projects.create_project(harbor_client.ProjectReq(project_name=name, storage_limit=MIB))
    project_id = projects.get_project(name, x_is_resource_name=True).project_id

    [found] = quotas.list_quotas(reference="project", reference_id=str(project_id))
    assert found.ref == {"id": project_id, "name": name, "owner_name": "admin"}
    assert (found.hard, found.used) == ({"storage": MIB}, {"storage": 0})
    assert isinstance(found.creation_time, datetime)
    quotas.update_quota(found.id, harbor_client.QuotaUpdateReq(hard={"storage": 3 * MIB}))
    again = quotas.get_quota(found.id)
    assert again.hard == {"storage": 3 * MIB} and again.ref["name"] == name

    listed = quotas.list_quotas(reference="project", page_size=100, sort="-hard.storage")
    from_rules = next(q for q in listed if q.ref["name"] == "fromrules")
    with pytest.raises(ApiException) as refused:
        quotas.update_quota(from_rules.id, harbor_client.QuotaUpdateReq(hard={"storage": MIB}))
    assert refused.value.status == 403
    assert "rules file" in json.loads(refused.value.body)["errors"][0]["message"]
    assert quotas.get_quota(from_rules.id).hard == {"storage": 10 * MIB}


def test_generated_client_runs_a_manual_replication(sidecar, generated, dest, image):
    layout, digest = image(tag="v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/{PROJECT}/generated:v1")
    registries = harbor_client.RegistryApi(generated)
    replication = harbor_client.ReplicationApi(generated)

    [dr] = registries.list_registries()
    assert (dr.name, dr.url, dr.status) == ("dr", dest.url, "healthy")
    assert dr.credential.access_secret == "*****"
    assert registries.get_registry(dr.id).name == "dr"
    [policy] = replication.list_replication_policies(name="nightly")
    one = replication.get_replication_policy(policy.id)
    assert (one.dest_registry.id, one.src_registry.id, one.dest_namespace) == (
        dr.id, 0, "copies")

    _, status, headers = replication.start_replication_with_http_info(
        harbor_client.StartReplicationExecution(policy_id=policy.id))
    assert status == 201
    execution_id = int(headers["Location"].rsplit("/", 1)[1])
    done = poll(lambda: replication.get_replication_execution(execution_id),
                lambda e: e.status != "InProgress", timeout=60, interval=0.2)
    assert (done.status, done.trigger, done.policy_id) == ("Succeed", "manual", policy.id)
    assert done.failed == 0 and done.succeed == done.total >= 1
    assert isinstance(done.end_time, datetime) and done.start_time <= done.end_time
    listed = replication.list_replication_executions(policy_id=policy.id, status="Succeed")
    assert execution_id in [e.id for e in listed]
    tasks = replication.list_replication_tasks(execution_id, status="Succeed")
    [task] = [t for t in tasks if t.src_resource.startswith(f"{PROJECT}/generated ")]
    assert (task.execution_id, task.operation) == (execution_id, "copy")
    assert task.start_time <= task.end_time
    log = replication.get_replication_log(execution_id, task.id)
    assert f"copies/{PROJECT}/generated:v1 copied" in log

    copied = clients.inspect(f"{dest.netloc}/copies/{PROJECT}/generated:v1",
                             creds=f"robot:{DR_PASSWORD}")
    assert copied["Digest"] == digest


def test_generated_client_reads_scanners(generated, scanner):
    scanners = harbor_client.ScannerApi(generated)
    projects = harbor_client.ProjectApi(generated)
    [listed] = scanners.list_scanners()
    assert (listed.name, listed.url.rstrip("/"), listed.is_default) == ("sim", scanner.url, True)
    one = scanners.get_scanner(listed.uuid)
    assert one.uuid == listed.uuid and one.disabled is False
    metadata = scanners.get_scanner_metadata(listed.uuid)
    assert metadata.scanner.name == SCANNER["name"]
    assert metadata.capabilities[0].consumes_mime_types
    chosen = projects.get_scanner_of_project(PROJECT, x_is_resource_name=True)
    assert chosen.uuid == listed.uuid

    [candidate] = projects.list_scanner_candidates_of_project(PROJECT)
    assert candidate.uuid == listed.uuid

    # the rules file declares scanners: changes are refused, as the client surfaces it
    for change in (lambda: scanners.delete_scanner(listed.uuid),
                   lambda: projects.set_scanner_of_project(
                       PROJECT, harbor_client.ProjectScanner(uuid=listed.uuid))):
        with pytest.raises(ApiException) as refused:
            change()
        assert refused.value.status == 403
        assert "rules file" in json.loads(refused.value.body)["errors"][0]["message"]


# --- tag retention, both clients ------------------------------------------------------------

@pytest.fixture(scope="module")
def tidy_repo(sidecar, image_module):
    """Two tags pushed a second apart through the sidecar, recorded before any run starts."""
    repository = f"{TIDY}/app"
    for index, tag in enumerate(("old", "new")):
        if index:
            time.sleep(1.1)
        layout, _ = image_module(tag)
        clients.push(layout, tag, f"{sidecar.netloc}/{repository}:{tag}")
    recorded.until_barrier(sidecar, repository, "new")
    time.sleep(1.1)  # a push in the second a run starts counts as made during the run
    return repository


@pytest.fixture(scope="module")
def image_module(tmp_path_factory):
    from tests.support.images import make_image

    def make(tag: str):
        where = tmp_path_factory.mktemp(f"tidy-{tag}") / "layout"
        return where, make_image(where, tag=tag, layers=1, layer_size=4096)
    return make


def _ended(fetch, execution_id: int) -> object:
    deadline = time.monotonic() + 60
    while True:
        [row] = [r for r in fetch() if r.id == execution_id]
        if row.status != "Running":
            return row
        assert time.monotonic() < deadline, row
        time.sleep(0.3)


def test_harborapi_runs_tag_retention(sidecar, registry, tidy_repo):
    async def script():
        client = harborapi_client(sidecar)
        retention_id = await client.get_project_retention_id(TIDY)
        policy = await client.get_retention_policy(retention_id)
        metadata = await client.get_retention_metadata()
        location = await client.start_retention_execution(retention_id, dry_run=True)
        dry_id = int(location.rsplit("/", 1)[1])
        executions = []

        async def fetch():
            executions[:] = await client.get_retention_executions(retention_id, page_size=0)

        deadline = time.monotonic() + 60
        while True:
            await fetch()
            [dry] = [e for e in executions if e.id == dry_id]
            if dry.status != "Running" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        tasks = await client.get_retention_tasks(retention_id, dry_id)
        location = await client.start_retention_execution(retention_id, dry_run=False)
        real_id = int(location.rsplit("/", 1)[1])
        while True:
            await fetch()
            [real] = [e for e in executions if e.id == real_id]
            if real.status != "Running" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        return policy, metadata, dry, tasks, real

    policy, metadata, dry, tasks, real = asyncio.run(script())
    assert policy.rules[0].template == "latestPushedK"
    assert policy.rules[0].params == {"latestPushedK": 1}
    assert "latestPushedK" in [t.rule_template for t in metadata.templates]
    assert (dry.status, dry.dry_run, dry.trigger) == ("Success", True, "MANUAL")
    # Harbor names a task's repository without its project
    assert [(t.repository, t.total, t.retained) for t in tasks] == [("app", 2, 1)]
    assert (real.status, real.dry_run) == ("Success", None)  # Harbor omits dry_run: false
    remaining = clients.skopeo("list-tags", "--tls-verify=false",
                               f"docker://{registry.netloc}/{tidy_repo}").stdout
    assert json.loads(remaining)["Tags"] == ["new"]


def test_generated_client_reads_tag_retention(sidecar, generated, tidy_repo):
    projects = harbor_client.ProjectApi(generated)
    retention = harbor_client.RetentionApi(generated)
    retention_id = int(projects.get_project(TIDY, x_is_resource_name=True)
                       .metadata.retention_id)
    policy = retention.get_retention(retention_id)
    assert policy.rules[0].template == "latestPushedK" and policy.algorithm == "or"
    assert retention.get_rentenition_metadata().templates
    _, status, headers = retention.trigger_retention_execution_with_http_info(
        retention_id, {"dry_run": True})
    assert status == 201
    dry_id = int(headers["Location"].rsplit("/", 1)[1])
    dry = _ended(lambda: retention.list_retention_executions(retention_id, page_size=100),
                 dry_id)
    assert (dry.status, dry.dry_run) == ("Success", True)
    [task] = retention.list_retention_tasks(retention_id, dry_id)
    assert task.repository == "app" and task.status == "Success"
