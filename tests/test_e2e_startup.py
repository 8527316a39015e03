"""Workers starting together on a fresh store: no "database is locked", no traceback, and every
worker has its rules before it answers its first request (SQLite and PostgreSQL)."""

from __future__ import annotations

import time

import pytest

from tests.conftest import webhook_rules
from tests.support import postgres

pytestmark = pytest.mark.e2e

STARTS = 20
WORKERS = 4


def _start_cleanly(sidecar) -> None:
    sidecar.start()
    deadline = time.monotonic() + 20
    while sidecar.log().count("rules loaded from") < WORKERS:
        assert time.monotonic() < deadline, sidecar.log()
        time.sleep(0.05)
    sidecar.stop()
    text = sidecar.log()
    assert "Traceback" not in text, text
    assert [line for line in text.splitlines() if "failed" in line.lower()] == [], text
    assert "database is locked" not in text


def _rules() -> dict:
    rules = webhook_rules("http://127.0.0.1:9/hook", auth_header=None)
    hooks = rules["projects"][0]["webhooks"]
    rules["projects"] += [{"name": f"team{n}", "webhooks": [dict(hook) for hook in hooks]}
                          for n in range(20)]
    return rules


def test_workers_starting_together_on_fresh_sqlite(sidecar_factory):
    for run in range(STARTS):
        sidecar = sidecar_factory(_rules(), workers=WORKERS, start=False, name=f"s{run}_")
        _start_cleanly(sidecar)


@pytest.mark.postgres
def test_workers_starting_together_on_fresh_postgresql(sidecar_factory, postgres_database):
    for run in range(STARTS):
        postgres.reset_schema(postgres_database)
        sidecar = sidecar_factory(_rules(), workers=WORKERS, start=False, name=f"p{run}_",
                                  database=postgres_database)
        _start_cleanly(sidecar)


def test_projects_created_in_a_loop_all_succeed_with_growing_ids(sidecar_factory):
    """Harbor's API clients create projects in loops: every one answers 201 (no "database is
    locked" 500 from two workers writing at once), and ids never go back after a delete."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    sidecar = sidecar_factory(config={"harbor_admin_password": "Loop-pass-1"}, workers=2)
    session = requests.Session()
    session.auth = ("admin", "Loop-pass-1")
    base = f"{sidecar.url}/api/v2.0/projects"

    def create(n: int) -> int:
        return session.post(base, json={"project_name": f"loop{n}"}, timeout=30).status_code

    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(create, range(150)))
    assert codes == [201] * 150
    ids = sorted(session.get(f"{base}/loop{n}", timeout=10).json()["project_id"]
                 for n in (148, 149))
    assert session.delete(f"{base}/loop149", timeout=10).status_code == 200
    assert create(150) == 201
    assert session.get(f"{base}/loop150", timeout=10).json()["project_id"] > ids[-1]
