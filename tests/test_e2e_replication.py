"""Replication through `sidecar serve` to real destination registries (Distribution with
htpasswd Basic auth, and with `auth: token` and its token service), checked with skopeo at the
destination, with REPLICATION events at a real receiver.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid

import pytest

from tests.consumer_rules import assert_harbor_compatible
from tests.support import clients
from tests.support.auth import htpasswd_file
from tests.support.ports import poll
from tests.support.registry import Registry
from tests.support.tokens import Account

pytestmark = pytest.mark.e2e

DR_PASSWORD = f"dr-{secrets.token_hex(8)}"
TOKEN_PASSWORD = f"tk-{secrets.token_hex(8)}"
#: quick retries, short leases: a dead destination ends within seconds, a killed worker's
#: task is taken over within seconds
JOBS = {"sidecar": {"jobs": {"backoff_seconds": 0.2, "backoff_max_seconds": 0.5,
                             "lease_seconds": 5}}}


@pytest.fixture(scope="module")
def basic_dest(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dest-basic")
    passwords = htpasswd_file(workdir / "htpasswd", {"robot": DR_PASSWORD})
    registry = Registry(workdir, htpasswd=passwords).start()
    yield registry
    registry.stop()


def _repo(project: str = "proj") -> str:
    return f"{project}/app-{uuid.uuid4().hex[:8]}"


def rules_for(dest_url: str, receiver_url: str | None = None, *, project: str = "proj",
              policy: dict | None = None, registry: dict | None = None) -> dict:
    hooks = []
    if receiver_url:
        hooks = [{"name": "repl", "event_types": ["REPLICATION"],
                  "targets": [{"type": "http", "address": receiver_url}]}]
    return {
        "projects": [{"name": project, "public": False, "webhooks": hooks}],
        "registries": [{"name": "dr", "type": "docker-registry", "url": dest_url,
                        "credential": {"type": "basic", "access_key": "robot",
                                       "access_secret": "${DR_SECRET}"},
                        **(registry or {})}],
        "replication": [{"name": "to-dr", "description": "disaster recovery copy",
                         "dest_registry": "dr", "trigger": {"type": "event_based"},
                         "filters": [{"type": "name", "value": f"{project}/**"}],
                         **(policy or {})}],
    }


def dest_digest(netloc: str, ref: str, creds: str = f"robot:{DR_PASSWORD}") -> str:
    return clients.inspect(f"{netloc}/{ref}", creds=creds)["Digest"]


def replication_events(receiver, count: int, timeout: float = 30.0) -> list[dict]:
    return [r.json() for r in receiver.wait_for(count, timeout=timeout)]


def _replication(event: dict) -> dict:
    return event["event_data"]["replication"]


def test_push_is_replicated_with_its_digest_and_reported(sidecar_factory, receiver,
                                                         basic_dest, image):
    layout, digest = image(tag="v1")
    sidecar = sidecar_factory(rules_for(basic_dest.url, receiver.url), config=JOBS,
                              env={"DR_SECRET": DR_PASSWORD})
    repo = _repo()
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1")

    running, success = replication_events(receiver, 2)
    assert dest_digest(basic_dest.netloc, f"{repo}:v1") == digest
    for event in (running, success):
        assert_harbor_compatible(event)
        assert event["type"] == "REPLICATION"
    assert _replication(running)["job_status"] == "Running"
    assert "successful_artifact" not in _replication(running)
    done = _replication(success)
    assert done["job_status"] == "Success"
    assert done["trigger_type"] == "EVENT"
    assert done["artifact_type"] == "artifact"
    assert done["authentication_type"] == "basic"
    assert done["src_resource"] == {"registry_type": "harbor",
                                    "endpoint": f"http://{sidecar.netloc}",
                                    "namespace": "proj"}
    assert done["dest_resource"] == {"registry_name": "dr", "registry_type": "docker-registry",
                                     "endpoint": basic_dest.url, "namespace": "proj"}
    name = repo.partition("/")[2]
    assert done["successful_artifact"] == [{"type": "artifact", "status": "Success",
                                            "name_tag": f"{name} [1 item(s) in total]",
                                            "references": ["v1"]}]
    assert done["execution_id"] and done["task_id"]
    assert done["execution_id"] == _replication(running)["execution_id"]
    assert DR_PASSWORD not in sidecar.log()
