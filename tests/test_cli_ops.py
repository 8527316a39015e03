"""The operator's commands as an operator runs them, next to a running `sidecar serve`:
status, deliveries, replay, check-rules."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.conftest import webhook_rules
from tests.support import clients
from tests.support.receiver import Reply
from tests.support.sidecar import sidecar_command

pytestmark = pytest.mark.e2e

TOKEN = "cli-5ecret-token-1234"
QUERY_TOKEN = "q-5ecret-567"


def sidecar_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([*sidecar_command(), *args], capture_output=True, text=True,
                          timeout=60)
    if check:
        assert done.returncode == 0, f"sidecar {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done


def assert_no_secret(text: str) -> None:
    assert TOKEN not in text and QUERY_TOKEN not in text, text


@pytest.fixture
def failed_delivery(sidecar_factory, receiver_factory, image):
    """A push whose delivery failed 3 times against a receiver that answers 200 from then on."""
    receiver = receiver_factory([Reply(500), Reply(500), Reply(500), Reply(200)])
    address = f"{receiver.url}?token={QUERY_TOKEN}"
    sidecar = sidecar_factory(webhook_rules(address, event_types=("PUSH_ARTIFACT",)),
                              env={"CI_TOKEN": TOKEN})
    layout, _ = image("v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1")
    status = sidecar.wait_status(lambda s: s["deliveries"]["failed"] == 1, timeout=30)
    return sidecar, receiver, status["recent_failures"][0]["id"]


def test_replay_failed_delivery_keeps_history(failed_delivery):
    sidecar, receiver, delivery_id = failed_delivery
    listed = sidecar_cli("deliveries", "--failed", "--database", sidecar.database).stdout
    lines = listed.splitlines()
    assert lines[0].split()[:3] == ["ID", "EVENT", "PROJECT/POLICY"]
    row = lines[1]
    assert row.split()[:5] == [str(delivery_id), "PUSH_ARTIFACT", "proj/ci",
                               f"http://127.0.0.1:{receiver.port}/hook?token=***", "failed"]
    assert "3/3" in row and "500 abnormal response code: 500" in row
    assert_no_secret(listed)

    replayed = sidecar_cli("replay", str(delivery_id), "--database", sidecar.database).stdout
    assert replayed.startswith("re-queued 1 deliveries:")
    assert f"\n{delivery_id} " in replayed and "pending" in replayed
    assert_no_secret(replayed)

    # the running sidecar sends it again: the receiver now answers 200
    received = receiver.wait_for(4)
    assert received[3].json()["type"] == "PUSH_ARTIFACT"
    assert received[3].headers["authorization"] == f"Bearer {TOKEN}"
    sidecar.wait_status(lambda s: s["deliveries"]["delivered"] == 1)
    rows = json.loads(sidecar_cli("deliveries", "--json", "--database", sidecar.database).stdout)
    assert len(rows) == 1
    assert rows[0]["status"] == "delivered" and rows[0]["attempts"] == 4
    assert [a["status_code"] for a in rows[0]["history"]] == [500, 500, 500, 200]
    assert sidecar_cli("deliveries", "--failed", "--database",
                       sidecar.database).stdout.strip() == "no deliveries"


def test_status_table_from_endpoint_and_store(failed_delivery, tmp_path):
    sidecar, receiver, delivery_id = failed_delivery
    from_url = sidecar_cli("status", "--url", sidecar.url).stdout
    assert "reachable" in from_url
    assert "queue         0 waiting" in from_url
    endpoints = from_url.split("ENDPOINTS (failing first)\n", 1)[1].splitlines()
    assert endpoints[0].split()[:2] == ["STATE", "ENDPOINT"]
    assert endpoints[1].split()[:3] == ["failing",
                                        f"http://127.0.0.1:{receiver.port}/hook?token=***",
                                        "proj/ci"]
    assert "abnormal response code: 500" in endpoints[1]
    assert "proj/ci" in from_url.split("POLICIES", 1)[1]
    assert_no_secret(from_url)

    # straight from the store, as when the sidecar is down: the same tables
    config = tmp_path / "harbor.yml"
    config.write_text(f"sidecar:\n  database: {sidecar.database}\n  upstream: {sidecar.upstream}\n")
    from_store = sidecar_cli("status", "--config", str(config)).stdout
    assert "reachable" in from_store
    stored = from_store.split("ENDPOINTS (failing first)\n", 1)[1].splitlines()
    assert stored[1].split()[:3] == endpoints[1].split()[:3]
    assert "abnormal response code: 500" in stored[1]
    assert_no_secret(from_store)


def test_replay_failed_since(failed_delivery):
    sidecar, receiver, delivery_id = failed_delivery
    # the failure is seconds old: a one-second window would miss it only on a slow machine,
    # so age it instead (as if it had failed two hours ago)
    from sidecar.store import db as store_db
    from sidecar.store.models import Delivery

    database = store_db.open_database(sidecar.database)
    with database.bind_ctx([Delivery]), database.connection_context():
        Delivery.update(finished_at=time.time() - 7200).where(
            Delivery.id == delivery_id).execute()
    database.close()
    nothing = sidecar_cli("replay", "--failed", "--since", "1h", "--database", sidecar.database)
    assert nothing.stdout.strip() == "nothing re-queued"
    assert len(receiver.requests) == 3

    some = sidecar_cli("replay", "--failed", "--since", "3h", "--database", sidecar.database)
    assert some.stdout.startswith("re-queued 1 deliveries:")
    receiver.wait_for(4)
    sidecar.wait_status(lambda s: s["deliveries"]["delivered"] == 1)


def test_replay_refuses_what_it_cannot_do(failed_delivery):
    sidecar, _, delivery_id = failed_delivery
    missing = sidecar_cli("replay", "999999", "--database", sidecar.database, check=False)
    assert missing.returncode == 1
    assert "skipped 999999: no such delivery" in missing.stdout
    nothing = sidecar_cli("replay", "--database", sidecar.database, check=False)
    assert nothing.returncode == 2 and "give delivery IDs, --failed or --skipped" in nothing.stderr
    bad = sidecar_cli("replay", "--failed", "--since", "soon", "--database", sidecar.database,
                      check=False)
    assert bad.returncode == 2 and "bad duration 'soon'" in bad.stderr


def test_check_rules_exit_codes(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("projects:\n  - name: proj\n    webhooks:\n      - name: ci\n"
                    "        event_types: [PUSH_ARTIFACT]\n        targets:\n"
                    "          - type: http\n            address: http://127.0.0.1:9/hook\n")
    done = sidecar_cli("check-rules", str(good))
    assert done.stdout.strip() == f"{good}: OK, 1 projects, 1 webhook policies"
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("[PUSH_ARTIFACT]", "[PUSH_ARTIFACT, NOPE]"))
    done = sidecar_cli("check-rules", str(bad), check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == f"{bad}:5: unsupported event type NOPE"
