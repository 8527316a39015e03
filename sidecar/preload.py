"""The rules file read and stored once by `sidecar serve`, before the workers fork.

Its own module so that the master imports only what this needs: `sidecar serve` runs
`preload_rules` in a short-lived child process (`prepare_apart`), so the master holds neither
the store (peewee, the database driver) nor the rules parser; it gets back a PreloadedRules.
Flask, the API, dispatch and the proxy are the workers' alone.

A large file (10,000 policies) takes seconds to parse, so it is parsed only when it changed:
the store keeps the digest of the rules it holds (`rules.load.rules_fingerprint`, file bytes
and the environment values it refers to). A start with an unchanged file costs a read of the
file and one row; of the workers noticing an edit, one parses and syncs it (it holds a claim in
the store, `sync_rules_file`) while the others keep serving and find the new digest stored.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sidecar.config import Settings
from sidecar.native import original

log = logging.getLogger("sidecar.app")

#: Settings rows: the digest of the rules the store holds; "<digest> <time>" of a worker
#: reading a new file now; {"digest", "error"} of the last file refused.
RULES_DIGEST = "rules_digest"
RULES_CLAIM = "rules_claim"
RULES_REFUSED = "rules_refused"
#: A claim older than this is taken over (its worker died or is stuck).
CLAIM_SECONDS = 120.0


@dataclass(frozen=True)
class PreloadedRules:
    """The rules file as `sidecar serve` read it and wrote it to the store before forking the
    workers: one parse and one sync at start, whatever the number of workers, so workers
    starting together never race to write the same rules."""

    path: str
    mtime: float
    projects: int
    loaded_at: float


@dataclass(frozen=True)
class RulesSync:
    """What reading the rules file came to: "synced" (parsed and stored), "unchanged" (the
    store already holds these rules) or "busy" (another worker is reading them: ask again)."""

    outcome: str
    projects: int = 0
    changed: Any = None  # store.policies.SyncResult when synced
    #: seconds spent parsing and storing (what a large file costs, in the log)
    parsed_in: float = 0.0
    stored_in: float = 0.0

    def __str__(self) -> str:
        if self.outcome == "synced":
            return (f"{self.changed}; parsed in {self.parsed_in:.1f} s, "
                    f"stored in {self.stored_in:.1f} s")
        return "unchanged, already in the store" if self.outcome == "unchanged" else "busy"


def rules_digest(data: bytes) -> str:
    """The rules' digest, and the schema's: a migration may store rules differently."""
    from sidecar.rules.load import rules_fingerprint
    from sidecar.store import db as store_db

    return f"{len(store_db.MIGRATIONS)}:{rules_fingerprint(data)}"


def sync_rules_file(path: str, claim: bool = False, now: float | None = None) -> RulesSync:
    """Bring the store to the rules file at `path` unless it holds them already (run on a
    database connection). `claim`: several workers may be asking; only one parses.

    Raises RulesError for a file that cannot be read or used (the store keeps the last good
    rules; the error is remembered for the other workers).
    """
    from sidecar.rules.load import RulesError
    from sidecar.rules.load import parse_rules
    from sidecar.rules.load import read_rules
    from sidecar.store import db as store_db
    from sidecar.store import policies as policy_store
    from sidecar.store import quota_recalc
    from sidecar.store import tag_retention

    now = time.time() if now is None else now
    data = read_rules(path)
    digest = rules_digest(data)
    known = _known(digest)
    if known is not None:
        return known
    if claim and not _claim(digest, now):
        return RulesSync("busy")
    started = time.monotonic()
    try:
        rules = parse_rules(data.decode("utf-8"), path, os.environ)
    except RulesError as exc:
        policy_store.set_setting(RULES_REFUSED, json.dumps({"digest": digest, "error": str(exc)}))
        raise
    parsed = time.monotonic()
    plan = policy_store.plan_policies(rules)  # read before the write lock, so held briefly
    with store_db.database.atomic():
        changed = policy_store.sync_rules(rules, plan=plan)
        quota_recalc.sync_rules(rules)  # storage quotas (issue 10), in the same transaction
        tag_retention.sync_rules(rules)  # tag retention policies (issue 12)
        policy_store.set_setting(RULES_DIGEST, digest)
    return RulesSync("synced", len(rules.projects), changed, parsed - started,
                     time.monotonic() - parsed)


def stored_verdict(path: str, now: float | None = None) -> RulesSync | None:
    """What the store already knows of the rules file at `path`: "unchanged", "busy"
    (another worker is reading it), RulesError (refused before); None if it must be read.

    A few milliseconds (the file's digest, two rows): a worker asks this before it starts a
    child process to read the file.
    """
    from sidecar.rules.load import read_rules
    from sidecar.store import policies as policy_store

    now = time.time() if now is None else now
    digest = rules_digest(read_rules(path))
    known = _known(digest)
    if known is not None:
        return known
    held, _, since = policy_store.get_setting(RULES_CLAIM, "").partition(" ")
    if held == digest and since and now - float(since) < CLAIM_SECONDS:
        return RulesSync("busy")
    return None


def _known(digest: str) -> RulesSync | None:
    """"unchanged" if the store holds the rules of `digest`; RulesError if they were refused."""
    from sidecar.rules.load import RulesError
    from sidecar.store import policies as policy_store

    if policy_store.get_setting(RULES_DIGEST, "") == digest:
        return RulesSync("unchanged", _rules_projects())
    refused = json.loads(policy_store.get_setting(RULES_REFUSED, "{}"))
    if refused.get("digest") == digest:
        raise RulesError(refused["error"].split("\n"))
    return None


def _claim(digest: str, now: float) -> bool:
    """Take the reading of these rules unless another worker holds it (and is not stale)."""
    from sidecar.store import db as store_db
    from sidecar.store import policies as policy_store

    with store_db.database.atomic():
        store_db.serialized("rules-claim")
        held, _, since = policy_store.get_setting(RULES_CLAIM, "").partition(" ")
        if held == digest and since and now - float(since) < CLAIM_SECONDS:
            return False
        policy_store.set_setting(RULES_CLAIM, f"{digest} {now}")
        return True


def _rules_projects() -> int:
    from sidecar.store import policies as policy_store
    from sidecar.store.models import Project

    return Project.select().where(Project.source == policy_store.RULES).count()


def preload_rules(settings: Settings) -> PreloadedRules | None:
    """Read the rules file and sync it to the store (call in the master, store bound).

    Raises RulesError for a broken file: `sidecar serve` refuses to start with it.
    """
    from sidecar.store import db as store_db

    if not settings.rules:
        return None
    mtime = os.stat(settings.rules).st_mtime  # before reading: a later edit is seen as new
    with store_db.database.connection_context():
        done = sync_rules_file(settings.rules)
    log.info("rules read from %s: %d projects (%s)", settings.rules, done.projects, done)
    return PreloadedRules(settings.rules, mtime, done.projects, time.time())


def sync_rules_apart(database: str, path: str, timeout: float = CLAIM_SECONDS) -> RulesSync:
    """`sync_rules_file(path, claim=True)` in a new interpreter; what it came to.

    A worker reading an edited 10,000-policy file on one of its threads shared the
    interpreter with its requests for the whole parse: pulls slowed and webhooks paused. In a
    process of its own the parse costs the worker nothing but a wait on a pipe (call it off
    the event loop: it blocks). The database URL goes over stdin, never on a command line
    that `ps` shows.

    Raises RulesError for a refused file, RuntimeError when the child could not finish (the
    database refused, the child died, or it took longer than `timeout`: as long as another
    worker waits before it takes a claim over).
    """
    from sidecar.rules.load import RulesError

    # The OS's spawn, fork, waitpid and select, also in a gevent worker: gevent's watches its
    # child with a libev SIGCHLD watcher that never fired before the server's loop ran (its
    # waitpid then waited for ever). A worker waits for its child on a thread of its own,
    # where blocking is what it wants; the master has no gevent at all.
    spawn, waitpid = original("os", "posix_spawn"), original("os", "waitpid")
    child_in, to_child = os.pipe()
    from_child, child_out = os.pipe()
    try:
        pid = spawn(sys.executable, [sys.executable, "-c", _CHILD], os.environ,
                    file_actions=[(os.POSIX_SPAWN_DUP2, child_in, 0),
                                  (os.POSIX_SPAWN_DUP2, child_out, 1)])
    finally:
        os.close(child_in)
        os.close(child_out)
    with os.fdopen(to_child, "wb") as out:
        out.write(json.dumps({"database": database, "rules": path}).encode())
    try:
        data = _read_until(from_child, time.monotonic() + timeout)
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        waitpid(pid, 0)
        raise RuntimeError(f"reading the rules took over {timeout:g} s: the child process "
                           "was stopped (another worker takes the edit over)") from None
    finally:
        os.close(from_child)
    _, status = waitpid(pid, 0)
    try:
        done = json.loads(data)
    except ValueError:
        raise RuntimeError(f"reading the rules in a child process failed "
                           f"(exit status {os.waitstatus_to_exitcode(status)})") from None
    if "refused" in done:
        raise RulesError(done["refused"])
    if "failed" in done:
        raise RuntimeError(done["failed"])
    return RulesSync(done["outcome"], done["projects"], done["changed"], done["parsed_in"],
                     done["stored_in"])


_CHILD = "from sidecar.preload import sync_child; sync_child()"


def _read_until(fd: int, deadline: float) -> bytes:
    """Everything from `fd` until it closes; TimeoutError at `deadline`."""
    select = original("select", "select")
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select([fd], [], [], left)[0]:
            raise TimeoutError
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def sync_child() -> None:
    """The child of `sync_rules_apart`: {"database", "rules"} on stdin, the outcome (or
    {"refused": problems} / {"failed": reason}) as JSON on stdout."""
    from sidecar.rules.load import RulesError
    from sidecar.store import db as store_db

    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
    asked = json.loads(sys.stdin.read())
    try:
        store_db.bind(asked["database"])
        with store_db.database.connection_context():
            done = sync_rules_file(asked["rules"], claim=True)
        answer: dict[str, Any] = {
            "outcome": done.outcome, "projects": done.projects,
            "changed": None if done.changed is None else str(done.changed),
            "parsed_in": done.parsed_in, "stored_in": done.stored_in}
    except RulesError as exc:
        answer = {"refused": exc.problems}
    except Exception as exc:  # noqa: BLE001 - the worker logs it and tries again later
        answer = {"failed": f"storing the rules failed: {exc}"}
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()


def prepare_apart(prepare: Callable[[Settings], Any], settings: Settings) -> Any:
    """`prepare(settings)` in a child process that exits after it; its (picklable) result.

    The store and rules modules it imports then never enter the master: every module in the
    master is in each forked worker's memory too, so the tree's RSS counted it once more than
    the workers' own copies (bench/memory.py). An exception in the child comes back as the
    message to stop with.
    """
    fork, waitpid = original("os", "fork"), original("os", "waitpid")  # as in sync_rules_apart
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
