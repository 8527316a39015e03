"""The counter the recorder reads with every batch moves with every change that matters to
matching (a policy; a project's name or visibility), whoever writes it, on SQLite and on
PostgreSQL; other project changes leave it, so they cost the recorder no reload."""

from __future__ import annotations

import json
import time

from sidecar.events.model import PULL_ARTIFACT
from sidecar.events.model import ArtifactEvent
from sidecar.record.recorder import Recorder
from sidecar.record.recorder import RecorderSettings
from sidecar.store import db as store_db
from sidecar.store import policy_version
from sidecar.store.executor import Executor
from sidecar.store.models import Delivery
from sidecar.store.models import Policy
from sidecar.store.models import Project
from sidecar.store.models import database


def _policy(project, name: str = "hook") -> Policy:
    now = time.time()
    return Policy.create(project=project, name=name, created_at=now, updated_at=now,
                         event_types_json=json.dumps([PULL_ARTIFACT]),
                         targets_json=json.dumps([{"type": "http",
                                                   "address": "http://h.example/"}]))


def test_every_change_that_matters_to_matching_moves_it(empty_store_url):
    db = store_db.bind(empty_store_url)
    try:
        with db.connection_context():
            moves = []

            def moved(change) -> None:
                before = policy_version.current()
                with database.atomic():
                    change()
                moves.append(policy_version.current() > before)

            project = Project.create(name="p", created_at=time.time())
            moved(lambda: Project.create(name="q", created_at=time.time()))
            moved(lambda: _policy(project))
            moved(lambda: Policy.update(enabled=False).execute())
            moved(lambda: Project.update(public=True).where(Project.name == "p").execute())
            moved(lambda: Project.update(name="r").where(Project.name == "q").execute())
            moved(lambda: Policy.delete().execute())
            moved(lambda: Project.delete().where(Project.name == "r").execute())
            assert moves == [True] * 7
            # what matching does not read leaves it where it is
            before = policy_version.current()
            Project.update(auto_scan=True, scanner="trivy").execute()
            assert policy_version.current() == before
    finally:
        db.close()


def test_a_policy_another_process_adds_reaches_the_next_batch(empty_store_url):
    db = store_db.bind(empty_store_url)
    try:
        with db.connection_context():
            project = Project.create(name="proj", created_at=time.time())
        recorder = Recorder(Executor(), RecorderSettings())

        def pull(n: int) -> None:
            recorder.submit([ArtifactEvent(type=PULL_ARTIFACT, repository="proj/app",
                                           digest=f"sha256:{n:064x}", operator="a",
                                           occur_at=1_700_000_000 + n)])
            recorder.flush()

        pull(1)  # index read: no policy
        other = store_db.open_database(empty_store_url)  # as another worker would
        with other.bind_ctx([Project, Policy]), other.connection_context():
            _policy(Project.get(Project.id == project.id))
        other.close()
        pull(2)
        with db.connection_context():
            assert Delivery.select().count() == 1
    finally:
        db.close()
