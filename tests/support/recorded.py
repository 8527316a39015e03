"""What a running sidecar recorded: its event rows, read from its SQLite store.

"No event" cannot be awaited, so tests send a barrier request (a manifest GET carrying a unique
X-Request-Id) after the requests under test: the recorder keeps order, so once the barrier's
event is stored every earlier one is too.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
import uuid

from tests.support.sidecar import Sidecar

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def events(sidecar: Sidecar) -> list[dict]:
    """Every recorded event: type, operator, request_id and the Harbor payload."""
    path = sidecar.database.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        rows = conn.execute(
            "SELECT type, operator, request_id, payload_json FROM event ORDER BY id").fetchall()
    return [{"type": t, "operator": o, "request_id": r, "payload": json.loads(p)}
            for t, o, r, p in rows]


def wait_events(sidecar: Sidecar, count: int, timeout: float = 15.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = events(sidecar)
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, f"expected {count} events, got {found}"
            return found
        time.sleep(0.05)


def until_barrier(sidecar: Sidecar, repository: str, reference: str,
                  headers: dict[str, str] | None = None, timeout: float = 15.0) -> list[dict]:
    """Pull `repository:reference` as a barrier; return the events recorded before it."""
    request_id = f"barrier-{uuid.uuid4()}"
    request = urllib.request.Request(
        f"{sidecar.url}/v2/{repository}/manifests/{reference}",
        headers={"Accept": OCI_MANIFEST, "X-Request-Id": request_id, **(headers or {})})
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
    deadline = time.monotonic() + timeout
    while True:
        found = events(sidecar)
        ids = [e["request_id"] for e in found]
        if request_id in ids:
            return found[:ids.index(request_id)]
        assert time.monotonic() < deadline, f"barrier event never recorded: {found}"
        time.sleep(0.05)


def resource(event: dict) -> dict:
    return event["payload"]["event_data"]["resources"][0]


def deliveries_for_tag(database: str, tag: str) -> int | None:
    """Deliveries made for the push of `tag`, read as an operator would (sqlite3); None until
    the push is recorded."""
    path = database.split(":///", 1)[1]
    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT e.id, (SELECT COUNT(*) FROM delivery d WHERE d.event_id = e.id) FROM event e"
            " WHERE e.type = 'PUSH_ARTIFACT' AND e.payload_json LIKE ?", (f'%"tag":"{tag}"%',)
        ).fetchone()
    return None if row is None else row[1]
