"""The rules file read and stored once by `sidecar serve`'s master, before the workers fork.

Its own module so that the master imports only what this needs (rules, store): Flask, the API,
dispatch and the proxy are the workers' and stay out of the master's memory.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from sidecar.config import Settings
from sidecar.rules.load import load_rules
from sidecar.store import db as store_db
from sidecar.store import policies as policy_store
from sidecar.store import quota_recalc

log = logging.getLogger("sidecar.app")


@dataclass(frozen=True)
class PreloadedRules:
    """The rules file as `sidecar serve` read it and wrote it to the store before forking the
    workers: one parse and one sync at start, whatever the number of workers, so workers
    starting together never race to write the same rules."""

    path: str
    mtime: float
    projects: int
    loaded_at: float


def preload_rules(settings: Settings) -> PreloadedRules | None:
    """Read the rules file and sync it to the store (call in the master, store bound).

    Raises RulesError for a broken file: `sidecar serve` refuses to start with it.
    """
    if not settings.rules:
        return None
    mtime = os.stat(settings.rules).st_mtime  # before reading: a later edit is seen as new
    rules = load_rules(settings.rules)
    with store_db.database.connection_context(), store_db.database.atomic():
        changed = policy_store.sync_rules(rules)
        quota_recalc.sync_rules(rules)  # storage quotas (issue 10), in the same transaction
    log.info("rules read from %s: %d projects (%s)", settings.rules, len(rules.projects),
             changed)
    return PreloadedRules(settings.rules, mtime, len(rules.projects), time.time())
