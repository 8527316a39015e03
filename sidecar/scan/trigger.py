"""Scan on push: every PUSH_ARTIFACT to a project with `auto_scan` queues a scan of its digest.

The recorder calls `auto_scans` inside the transaction that records the events, so a push is
recorded with its scan or not at all, and nothing here runs on the proxy's request path. An
index pushed is one job that queues its children (the job reads the manifest; this only
writes to the store).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sidecar.events.model import PUSH_ARTIFACT
from sidecar.store import scans as scan_store
from sidecar.store.scans import ScanOrder

log = logging.getLogger(__name__)


def auto_scans(events: Sequence[Any]) -> int:
    """Queue the scans a batch of events asks for; returns how many were queued."""
    pushes = [e for e in events if e.type == PUSH_ARTIFACT and e.project and e.digest]
    if not pushes:
        return 0
    projects = scan_store.auto_scan_projects(e.project for e in pushes)
    queued = 0
    scanners: dict[str, Any] = {}
    for event in pushes:
        if event.project not in projects:
            continue
        wanted = projects[event.project]
        if wanted not in scanners:
            scanners[wanted] = scan_store.scanner(wanted)
        scanner = scanners[wanted]
        if scanner is None:  # the rules sync refuses this; a database edited by hand
            log.warning("auto_scan of %s@%s: no scanner %s", event.repository, event.digest,
                        wanted or "(default)")
            continue
        order = ScanOrder(scanner=scanner.name, repository=event.repository,
                          digest=event.digest, tag=event.tags[0] if event.tags else "",
                          operator=event.operator, host=getattr(event, "host", ""))
        if scan_store.enqueue(order).job_id is not None:
            queued += 1
    return queued
