"""Matching one event against 1, 100 and 10,000 policies: the recorder's index, in process.

    python3 bench/matching.py

The recorder keeps every project's policies indexed by event type with their filters compiled
(store.policies.ProjectPolicies, rules.match.CompiledFilters) and looks the event's project up
by name. Two shapes: N projects with one policy each (a large installation: the event's
project has one), and one project with all N policies subscribed to the event (the worst case:
every one of them must be checked, and each filter is). Each policy has repository and tag
filters. Printed: microseconds per matched event and the ratio to 1 policy.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sidecar.events.model import PULL_ARTIFACT  # noqa: E402
from sidecar.events.model import ArtifactEvent  # noqa: E402
from sidecar.record.recorder import policies_for_event  # noqa: E402
from sidecar.rules.policy import Filters  # noqa: E402
from sidecar.store.policies import ProjectPolicies  # noqa: E402
from sidecar.store.policies import StoredPolicy  # noqa: E402

TARGET = ({"type": "http", "address": "http://receiver/hook"},)


def policy(number: int, project: str) -> StoredPolicy:
    return StoredPolicy(id=number, project=project, name=f"p{number}", enabled=True,
                        event_types=("PUSH_ARTIFACT", PULL_ARTIFACT), targets=TARGET,
                        filters=Filters(repositories=(f"app{number % 7}/**", "web/*"),
                                        tags=("v*", "release-{a,b}")))


def index(count: int, one_project: bool) -> dict[str, ProjectPolicies]:
    if one_project:
        return {"p0": ProjectPolicies("p0", False, tuple(policy(i, "p0") for i in range(count)))}
    return {f"p{i}": ProjectPolicies(f"p{i}", False, (policy(i, f"p{i}"),))
            for i in range(count)}


def per_match_us(projects: dict[str, ProjectPolicies], rounds: int) -> float:
    event = ArtifactEvent(type=PULL_ARTIFACT, repository="p0/web/frontend",
                          digest="sha256:" + "a" * 64, operator="alice", occur_at=0,
                          tags=("v1.2",))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            matched = policies_for_event(event, projects.get(event.project))
        best = min(best, (time.perf_counter() - start) / rounds)
    assert matched, "the benchmark event must match"
    return best * 1e6


def main() -> int:
    measure()
    freshness()
    return 0


def freshness() -> None:
    """What the recorder pays per batch to know its index is current, in a SQLite store."""
    import json
    import tempfile

    from sidecar.store import db as store_db
    from sidecar.store import policies as policy_store
    from sidecar.store import policy_version
    from sidecar.store.models import database

    print("\n## Is the recorder's index current? Per batch, SQLite")
    print(f"{'policies':>10}{'full fingerprint':>20}{'change counter':>18}")
    for count in (1, 100, 10_000):
        with tempfile.TemporaryDirectory() as work:
            db = store_db.bind(f"sqlite:///{work}/store.db")
            with database.atomic():
                for number in range(count):
                    db.execute_sql("INSERT INTO project (name, public, source, created_at, "
                                   "auto_scan, scanner) VALUES (?, 0, 'rules', 0, 0, '')",
                                   (f"p{number}",))
                    db.execute_sql(
                        "INSERT INTO policy (project_id, name, description, enabled, "
                        "event_types_json, targets_json, options_json, source, creator, "
                        "created_at, updated_at) VALUES (?, 'hook', '', 1, ?, ?, '{}', "
                        "'rules', '', 0, 0)",
                        (number + 1, json.dumps([PULL_ARTIFACT]), json.dumps(TARGET)))
            timings = []
            for check in (policy_store.policies_fingerprint, policy_version.current):
                rounds = 200 if count > 1000 else 2000
                start = time.perf_counter()
                for _ in range(rounds):
                    check()
                timings.append((time.perf_counter() - start) / rounds * 1e6)
            db.close()
        print(f"{count:>10}{timings[0]:>17.1f} us{timings[1]:>15.1f} us")
    print("the recorder reads the counter with every batch, the fingerprint only after it moved")


def measure() -> float:
    """Prints the table; returns the 10,000-policy ratio (policies spread over projects)."""
    print("\n## Matching one event (in process; `python3 bench/matching.py`)")
    print(f"{'policies':>10}{'one each in N projects':>26}{'ratio':>7}"
          f"{'all in the event project':>27}{'ratio':>8}")
    base = {}
    for count in (1, 100, 10_000):
        row = []
        for one_project in (False, True):
            projects = index(count, one_project)
            rounds = max(20, 20_000 // count) if one_project else 20_000
            us = per_match_us(projects, rounds)
            base.setdefault(one_project, us)
            row.append((us, us / base[one_project]))
        print(f"{count:>10}{row[0][0]:>22.2f} us{row[0][1]:>7.2f}"
              f"{row[1][0]:>23.1f} us{row[1][1]:>8.0f}")
    print("target: 10,000 policies <= 2x one policy (policies spread over projects)")
    return row[0][1]


if __name__ == "__main__":
    sys.exit(main())
