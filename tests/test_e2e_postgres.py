"""Several sidecars sharing one PostgreSQL database, and a locked database not stalling the proxy.

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth); each test gets a throwaway
database, dropped afterwards.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import webhook_rules
from tests.support import clients
from tests.support import postgres
from tests.support.ports import wait_http
from tests.support.receiver import first_try_fails

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

# a generous timeout: on a loaded machine a slow answer must not look like a lost one (a retry
# after a timeout is a legitimate duplicate, and these tests count duplicates)
HARBOR_YML = {
    "notification": {"webhook_job_max_retry": 5, "webhook_job_http_client_timeout": 10},
    "sidecar": {"delivery": {"backoff_seconds": 0.1, "backoff_max_seconds": 0.3}},
}


@pytest.fixture
def database(postgres_database):
    return postgres_database


def rules(address: str, event_types=("PUSH_ARTIFACT",)) -> dict:
    return webhook_rules(address, event_types=event_types, auth_header="Bearer t0ken")


def test_two_sidecars_on_one_database_deliver_each_event_once(
        database, sidecar_factory, receiver_factory, image):
    script, seen = first_try_fails()  # so retries are claimed again, by anyone
    receiver = receiver_factory(script)
    sidecars = [sidecar_factory(rules(receiver.url), config=HARBOR_YML, database=database,
                                workers=2, start=False) for _ in range(2)]
    for sidecar in sidecars:  # both at once on an empty database: migrations and rules race
        sidecar.start(wait=False)
    for sidecar in sidecars:
        wait_http(f"{sidecar.url}/sidecar/status", timeout=20, ok=(200, 401))
    pushes = 10
    layouts = [image("v1") for _ in range(pushes)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(
            lambda n: clients.push(layouts[n][0], "v1",
                                   f"{sidecars[n % 2].netloc}/proj/app{n}:v1"),
            range(pushes)))
    for sidecar in sidecars:
        status = sidecar.wait_status(lambda s: s["deliveries"]["delivered"] == pushes
                                     and s["queue"]["depth"] == 0)
        assert status["rules"]["error"] is None
    # one failed try and one delivery each: no event lost, none sent twice
    assert seen == {digest: 2 for _, digest in layouts}
    assert len(receiver.requests) == 2 * pushes


def _waiting_on_locks(url: str) -> int:
    import psycopg2

    name = url.rsplit("/", 1)[1]
    with psycopg2.connect(host=postgres.HOST, port=postgres.PORT, user=postgres.USER,
                          dbname="postgres") as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                    "AND wait_event_type = 'Lock'", (name,))
        return cur.fetchone()[0]


def test_locked_database_does_not_stall_the_proxy(database, sidecar_factory, receiver, image):
    """psycopg2 blocks in C: were a query run on the event loop, every transfer would wait."""
    import psycopg2

    sidecar = sidecar_factory(rules(receiver.url, ("PUSH_ARTIFACT", "PULL_ARTIFACT")),
                              config=HARBOR_YML, database=database, workers=1)
    layout, digest = image("v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1")
    receiver.wait_for(1)
    name = database.rsplit("/", 1)[1]
    holder = psycopg2.connect(host=postgres.HOST, port=postgres.PORT, user=postgres.USER,
                              dbname=name)
    try:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLE delivery, event IN ACCESS EXCLUSIVE MODE")
        deadline = time.monotonic() + 10
        while _waiting_on_locks(database) == 0:  # the dispatcher's next claim now waits
            assert time.monotonic() < deadline, "the sidecar never touched the locked tables"
            time.sleep(0.1)
        request = urllib.request.Request(
            f"{sidecar.url}/v2/proj/app/manifests/v1",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 200
                assert response.headers["Docker-Content-Digest"] == digest
        except (TimeoutError, urllib.error.URLError):
            pytest.fail("a pull through the proxy hung while the database was locked")
        assert _waiting_on_locks(database) > 0  # still locked: the pull did not wait for it
    finally:
        holder.rollback()
        holder.close()
    # once the lock is gone, the pull recorded meanwhile is delivered
    received = receiver.wait_for(2)
    assert [r.json()["type"] for r in received] == ["PUSH_ARTIFACT", "PULL_ARTIFACT"]


def test_dropped_connections_are_reopened(database, sidecar_factory, receiver, image):
    """A PostgreSQL restart (or failover) ends every connection: the sidecar opens new ones."""
    import psycopg2

    sidecar = sidecar_factory(rules(receiver.url), config=HARBOR_YML, database=database,
                              workers=1)
    layout, _ = image("v1")
    clients.push(layout, "v1", f"{sidecar.netloc}/proj/app:v1")
    receiver.wait_for(1)
    name = database.rsplit("/", 1)[1]
    with psycopg2.connect(host=postgres.HOST, port=postgres.PORT, user=postgres.USER,
                          dbname="postgres") as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        assert cur.rowcount >= 1
    layout, digest = image("v2")
    clients.push(layout, "v2", f"{sidecar.netloc}/proj/app:v2")
    received = receiver.wait_for(2)
    assert received[1].json()["event_data"]["resources"][0]["digest"] == digest
    sidecar.wait_status(lambda s: s["deliveries"]["delivered"] == 2)
