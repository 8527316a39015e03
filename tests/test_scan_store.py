"""Scanning in the store: registrations and project settings synced with the rules, scans
queued once per digest (Harbor's 409 while one runs), the push trigger, the migration step;
on SQLite and on PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from sidecar.cli.scan import split_reference
from sidecar.events.model import PULL_ARTIFACT
from sidecar.events.model import PUSH_ARTIFACT
from sidecar.events.model import ArtifactEvent
from sidecar.record.recorder import Recorder
from sidecar.record.recorder import RecorderSettings
from sidecar.rules.load import parse_rules
from sidecar.scan import overview
from sidecar.scan.trigger import auto_scans
from sidecar.store import db as store_db
from sidecar.store import jobs
from sidecar.store import scans
from sidecar.store.executor import Executor
from sidecar.store.models import SUCCEEDED
from sidecar.store.models import Event
from sidecar.store.models import Job
from sidecar.store.models import Project
from sidecar.store.models import database
from sidecar.store.policies import sync_rules
from sidecar.store.scans import MANUAL
from sidecar.store.scans import ScanOrder
from tests.support import postgres

DIGEST = "sha256:" + "d" * 64
RULES = """
scanners:
  - name: trivy
    url: http://trivy:8080
    auth: Bearer
    access_credential: t0ken
    default: true
  - name: other
    url: http://other:8080
projects:
  - name: proj
    auto_scan: true
  - name: picky
    auto_scan: true
    scanner: other
  - name: quiet
"""


@pytest.fixture
def store(empty_store_url):
    url = empty_store_url
    db = store_db.bind(url)
    db.connect(reuse_if_open=True)
    sync_rules(parse_rules(RULES, "rules.yaml", {}))
    yield url
    db.close()


def push(repository: str, digest: str = DIGEST, tag: str = "v1",
         kind: str = PUSH_ARTIFACT) -> ArtifactEvent:
    return ArtifactEvent(type=kind, repository=repository, digest=digest, operator="ci",
                         occur_at=1, tags=(tag,) if tag else ())


def finish(job_id: int, status: str = SUCCEEDED) -> None:
    Job.update(status=status).where(Job.id == job_id).execute()


def test_registrations_and_project_settings_follow_the_rules_file(store):
    assert [(s.name, s.auth, s.default) for s in scans.scanners()] == \
        [("other", "", False), ("trivy", "Bearer", True)]
    assert scans.scanner("").name == "trivy" and scans.scanner("other").url == \
        "http://other:8080"
    assert scans.auto_scan_projects(["proj", "picky", "quiet", "nowhere"]) == \
        {"proj": "", "picky": "other"}

    changed = RULES.replace("http://trivy:8080", "http://trivy:9090").replace(
        "  - name: other\n    url: http://other:8080\n", "").replace(
        "  - name: picky\n    auto_scan: true\n    scanner: other\n", "")
    result = sync_rules(parse_rules(changed, "rules.yaml", {}))
    assert result.scanners_changed == 2  # one changed, one gone
    assert [s.url for s in scans.scanners()] == ["http://trivy:9090"]
    # a project the file dropped keeps its row but scans nothing any more
    assert scans.auto_scan_projects(["proj", "picky"]) == {"proj": ""}
    assert Project.get(Project.name == "picky").scanner == ""
    assert sync_rules(parse_rules(changed, "rules.yaml", {})).changed is False


def test_a_digest_is_scanned_once_at_a_time_and_again_later(store):
    order = ScanOrder(scanner="trivy", repository="proj/app", digest=DIGEST, tag="v1")
    first = scans.enqueue(order)
    assert jobs.get(first.job_id).payload["tag"] == "v1"
    assert Job.get_by_id(first.job_id).key == f"scan:trivy:{DIGEST}:1"
    again = scans.enqueue(order)  # still waiting: Harbor's 409
    assert (again.job_id, again.conflict, again.existing.id) == (None, True, first.job_id)
    finish(first.job_id)
    second = scans.enqueue(order)
    assert Job.get_by_id(second.job_id).key == f"scan:trivy:{DIGEST}:2"
    assert scans.latest(DIGEST, "trivy").id == second.job_id
    # another scanner scans the same digest on its own
    assert scans.enqueue(ScanOrder(scanner="other", repository="proj/app",
                                   digest=DIGEST)).job_id is not None


def test_an_index_child_already_scanned_by_its_own_push_is_not_scanned_again(store):
    own = scans.enqueue(ScanOrder(scanner="trivy", repository="proj/app", digest=DIGEST))
    finish(own.job_id)
    child = ScanOrder(scanner="trivy", repository="proj/app", digest=DIGEST, index="sha256:i")
    assert scans.enqueue(child).job_id is None
    # asked for by someone (the API scanning an index): scanned again
    manual = ScanOrder(scanner="trivy", repository="proj/app", digest=DIGEST,
                       index="sha256:i", trigger=MANUAL)
    assert scans.enqueue(manual).job_id is not None


def test_two_sidecars_queueing_the_same_scan_make_one_job(store):
    if not store.startswith("postgres"):
        pytest.skip("SQLite serialises every writing transaction: no race to lose")
    barrier = threading.Barrier(4)
    made: list = []

    def queue() -> None:
        with database.connection_context():
            barrier.wait()
            made.append(scans.enqueue(ScanOrder(scanner="trivy", repository="proj/app",
                                                digest=DIGEST)).job_id)

    threads = [threading.Thread(target=queue) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len([m for m in made if m is not None]) == 1
    assert Job.select().count() == 1


def test_pushes_to_auto_scan_projects_queue_scans(store):
    batch = [push("proj/app"), push("proj/app"), push("picky/tool", "sha256:" + "e" * 64, ""),
             push("quiet/app", "sha256:" + "f" * 64), push("proj/app", kind=PULL_ARTIFACT),
             push("alpine", "sha256:" + "a" * 64)]
    assert auto_scans(batch) == 2  # the same digest twice in a batch: one scan
    queued = {j.payload["repository"]: j for j in jobs.listing(kinds=("scan",))[1]}
    assert set(queued) == {"proj/app", "picky/tool"}
    assert queued["picky/tool"].payload["scanner"] == "other"
    assert queued["proj/app"].operator == "ci" and queued["proj/app"].title == "proj/app:v1"
    assert queued["picky/tool"].title == "picky/tool@sha256:" + "e" * 64


OLD_SCHEMA = """
    CREATE TABLE schemaversion (id {serial}, version INTEGER NOT NULL);
    INSERT INTO schemaversion (version) VALUES (4);
    CREATE TABLE project (id {serial}, name VARCHAR(255) NOT NULL, public {boolean} NOT NULL,
                          source VARCHAR(16) NOT NULL, created_at REAL NOT NULL);
    INSERT INTO project (name, public, source, created_at) VALUES ('proj', {false}, 'rules', 0);
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_store_made_before_scanning_gains_it_at_start(request, tmp_path, backend):
    """Version 4: projects without scan settings, no scanner tables."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        with sqlite3.connect(tmp_path / "old.db") as conn:
            conn.executescript(OLD_SCHEMA.format(
                serial="INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT", boolean="INTEGER",
                false="0"))
    else:
        url = request.getfixturevalue("postgres_url")
        postgres.reset_schema(url)
        import psycopg2

        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute(OLD_SCHEMA.format(serial="SERIAL PRIMARY KEY", boolean="BOOLEAN",
                                          false="false"))
    db = store_db.bind(url)
    with db.connection_context():
        row = Project.get(Project.name == "proj")
        assert (row.auto_scan, row.scanner) == (False, "")
        assert scans.scanners() == ()
        Project.update(auto_scan=True).execute()
        assert scans.auto_scan_projects(["proj"]) == {"proj": ""}
    db.close()


def test_an_index_overview_merges_its_childrens():
    def child(status, severity="", total=None, start="2025-01-01T00:00:00Z",
              end="2025-01-01T00:00:10Z"):
        out = {"report_id": "r", "scan_status": status, "severity": severity, "duration": 10,
               "start_time": start, "end_time": end, "complete_percent": 100}
        if total is not None:
            out["summary"] = {"total": total, "fixable": 1, "summary": {severity: total}}
            out["scanner"] = {"name": "S", "vendor": "V", "version": "1"}
        return out

    merged = overview.merge([child("Success", "Low", 2),
                             child("Success", "High", 3, end="2025-01-01T00:01:00Z")], "id")
    assert merged == {"report_id": "id", "scan_status": "Success", "severity": "High",
                      "duration": 60,
                      "summary": {"total": 5, "fixable": 2, "summary": {"High": 3, "Low": 2}},
                      "start_time": "2025-01-01T00:00:00Z", "end_time": "2025-01-01T00:01:00Z",
                      "scanner": {"name": "S", "vendor": "V", "version": "1"},
                      "complete_percent": 100}
    running = overview.merge([child("Success", "Low", 2), child("Running")], "id")
    assert (running["scan_status"], running["severity"], running["complete_percent"]) == \
        ("Running", "", 50)
    assert "summary" not in running


@pytest.mark.parametrize(("text", "parsed"), [
    ("proj/app:v1", ("proj/app", "v1")),
    ("proj/a/b@sha256:" + "0" * 64, ("proj/a/b", "sha256:" + "0" * 64)),
    ("app:v1", None),
    ("proj/app", None),
    ("proj/app:", None),
])
def test_cli_references(text, parsed):
    assert split_reference(text) == parsed


def test_the_recorder_queues_scans_with_the_pushes_it_records(store):
    woken: list[int] = []
    recorder = Recorder(Executor(), RecorderSettings(keep_unmatched=True))
    recorder.add_trigger({PUSH_ARTIFACT}, auto_scans, started=woken.append)
    recorder.submit([push("proj/app"), push("quiet/app", "sha256:" + "f" * 64)])
    recorder.flush()
    assert Event.select().count() == 2 and Job.select().count() == 1 and woken == [1]


def test_a_broken_trigger_does_not_keep_events_from_being_recorded(store):
    def broken(batch):
        raise KeyError("a bug")

    recorder = Recorder(Executor(), RecorderSettings(keep_unmatched=True))
    recorder.add_trigger({PUSH_ARTIFACT}, broken)
    recorder.submit([push("proj/app")])
    recorder.flush()
    assert Event.select().count() == 1 and Job.select().count() == 0


def test_batches_without_the_triggers_event_types_do_not_call_it(store):
    calls: list = []
    recorder = Recorder(Executor(), RecorderSettings(keep_unmatched=True))
    recorder.add_trigger({PUSH_ARTIFACT}, lambda batch: calls.append(batch) or 0)
    recorder.submit([push("proj/app", kind=PULL_ARTIFACT)])
    recorder.flush()
    assert Event.select().count() == 1 and calls == []
