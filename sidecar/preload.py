"""The rules file read and stored once by `sidecar serve`, before the workers fork.

Its own module so that the master imports only what this needs: `sidecar serve` runs
`preload_rules` in a short-lived child process (`prepare_apart`), so the master holds neither
the store (peewee, the database driver) nor the rules parser; it gets back a PreloadedRules.
Flask, the API, dispatch and the proxy are the workers' alone.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sidecar.config import Settings

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
    from sidecar.rules.load import load_rules
    from sidecar.store import db as store_db
    from sidecar.store import policies as policy_store
    from sidecar.store import quota_recalc
    from sidecar.store import tag_retention

    if not settings.rules:
        return None
    mtime = os.stat(settings.rules).st_mtime  # before reading: a later edit is seen as new
    rules = load_rules(settings.rules)
    with store_db.database.connection_context(), store_db.database.atomic():
        changed = policy_store.sync_rules(rules)
        quota_recalc.sync_rules(rules)  # storage quotas (issue 10), in the same transaction
        tag_retention.sync_rules(rules)  # tag retention policies (issue 12)
    log.info("rules read from %s: %d projects (%s)", settings.rules, len(rules.projects),
             changed)
    return PreloadedRules(settings.rules, mtime, len(rules.projects), time.time())


def prepare_apart(prepare: Callable[[Settings], Any], settings: Settings) -> Any:
    """`prepare(settings)` in a child process that exits after it; its (picklable) result.

    The store and rules modules it imports then never enter the master: every module in the
    master is in each forked worker's memory too, so the tree's RSS counted it once more than
    the workers' own copies (bench/memory.py). An exception in the child comes back as the
    message to stop with.
    """
    fork, waitpid = _unpatched("fork"), _unpatched("waitpid")
    read, write = os.pipe()
    pid = fork()
    if pid == 0:  # the child: do it, hand the result over, leave without the parent's atexit
        code = 0
        try:
            os.close(read)
            try:
                data = pickle.dumps(prepare(settings))
            except Exception as exc:  # noqa: BLE001 - reported to the master, which stops
                data = pickle.dumps(f"sidecar: preparing the store failed: {exc}")
            with os.fdopen(write, "wb") as out:
                out.write(data)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as source:
        data = source.read()
    _, status = waitpid(pid, 0)
    if not data:
        return f"sidecar: preparing the store failed (child exit status {status})"
    return pickle.loads(data)  # noqa: S301 - our own child's bytes


def _unpatched(name: str) -> Callable:
    """`os.fork` / `os.waitpid` as the OS has them, also after gevent patched `os`.

    gevent's fork watches the child with a libev SIGCHLD watcher that never fired here before
    the server's loop runs (its waitpid then waited for ever). The child needs no gevent: it
    makes blocking database calls and exits, and the master has no hub yet to share with it.
    """
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return getattr(os, name)
    return monkey.get_original("os", name)
