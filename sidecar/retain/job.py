"""The retention run as jobs: an execution (kind "retention") plans one task per repository, each
task (kind "retention-task") evaluates its repository and deletes what no rule retains.

The execution lists the registry's catalog (`registry:catalog:*` for the sidecar's
`registry_credential`), keeps the project's repositories the enabled rules select
(retain.policy.plan) and queues a task for each under a key naming the execution and the
repository, so a planner resumed after a crash queues nothing twice. One run per project at a
time, across workers and sidecars: an execution waits while an earlier one of the same project
is planning or has tasks left.

A task lists the repository's tags, reads the digest each points at (HEAD), and ranks the
artifacts by the push and pull times the sidecar recorded (retain.activity; a push never seen
falls back to the image config's `created`). Its decision is saved before anything is deleted,
so a task resumed after `kill -9` carries on with the same decision; each deletion is saved
with its DELETE_ARTIFACT event in one transaction, and a digest already gone counts as deleted
(the crash fell between the registry's answer and the save), so nothing is deleted or reported
twice. An artifact pushed (or re-tagged) after the run started is never deleted: it is kept
unevaluated, and checked again just before each deletion. A dry run evaluates and deletes
nothing. The task ends with Harbor's TAG_RETENTION when it deleted something (not for dry runs).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sidecar.events.model import DELETE_ARTIFACT
from sidecar.events.model import ArtifactEvent
from sidecar.events.retention import JOBSERVICE_OPERATOR
from sidecar.events.retention import DeletedArtifact
from sidecar.events.retention import TagRetentionEvent
from sidecar.jobs.runner import JobContext
from sidecar.jobs.runner import Outcome
from sidecar.jobs.runner import Retry
from sidecar.registry import NotFound
from sidecar.registry import RegistryClient
from sidecar.registry import RegistryError
from sidecar.registry import RegistryUnavailable
from sidecar.registry import Unauthorized
from sidecar.retain.activity import ArtifactTimes
from sidecar.retain.activity import TagTimes
from sidecar.retain.activity import times
from sidecar.retain.policy import Candidate
from sidecar.retain.policy import evaluate
from sidecar.retain.policy import plan
from sidecar.rules.retention import parse_retention
from sidecar.store import clock
from sidecar.store import quota_recalc
from sidecar.store import retention_runs as runs
from sidecar.store import tag_retention as store
from sidecar.store.models import FAILED
from sidecar.store.models import SUCCEEDED

log = logging.getLogger(__name__)

#: how long a run waits before looking again whether the project's earlier run ended
WAIT_SECONDS = 2.0


def _again(exc: RegistryError) -> bool:
    return isinstance(exc, RegistryUnavailable) or (
        exc.status is not None and (exc.status >= 500 or exc.status in (408, 429)))


def _refused(what: str, exc: RegistryError) -> str:
    return (f"{what} was refused (the sidecar's registry_credential needs "
            f"registry:catalog:* and pull/delete on the project's repositories): {exc}")


class ExecutionHandler:
    """Kind "retention": plans the tasks of one run (see the module's docstring)."""

    kind = runs.EXECUTION_KIND

    def __init__(self, registry: RegistryClient):
        self._registry = registry

    def run(self, ctx: JobContext) -> Outcome:
        payload = ctx.payload
        executor = ctx.runner.executor
        project = str(payload["project"])
        dry_run = bool(payload.get("dry_run"))
        trigger = str(payload.get("trigger", runs.TRIGGER_MANUAL))
        executor.run(runs.ensure_execution, ctx.job.id, int(payload["policy_id"]), project,
                     trigger, dry_run, ctx.job.created_at)
        policy = executor.run(store.policy, int(payload["policy_id"]))
        if policy is None or policy.project != project:
            reason = f"the retention policy {payload['policy_id']} of {project} no longer exists"
            return Outcome(FAILED, reason=reason, result={"status_text": reason})
        waiting = executor.run(runs.earlier_active, project, ctx.job.id)
        if waiting is not None and trigger == runs.TRIGGER_SCHEDULE:
            reason = f"Execution skipped: execution {waiting} of {project} still in progress"
            return Outcome(FAILED, reason=reason, result={"status_text": reason})
        if waiting is not None:
            raise Retry(f"waiting for execution {waiting} of {project} to end",
                        delay=WAIT_SECONDS)
        prefix = project + "/"
        try:
            names = sorted(name[len(prefix):] for name in self._registry.catalog()
                           if name.startswith(prefix))
        except Unauthorized as exc:
            reason = _refused("listing the registry's repositories", exc)
            return Outcome(FAILED, reason=reason, result={"status_text": reason})
        except RegistryError as exc:
            if _again(exc):
                raise Retry(f"listing the registry's repositories: {exc}") from None
            reason = f"listing the registry's repositories: {exc}"
            return Outcome(FAILED, reason=reason, result={"status_text": reason})
        selected = plan(policy.policy, names)
        all_rules = list(policy.rules)
        for name, rules in selected.items():
            repository = prefix + name
            ctx.enqueue(runs.TASK_KIND, {
                "execution_id": ctx.job.id, "policy_id": policy.id, "project": project,
                "repository": repository, "dry_run": dry_run,
                "started_at": ctx.job.created_at,
                "rules": [rule.as_harbor() for rule in rules], "all_rules": all_rules,
            }, key=f"retention-task:{ctx.job.id}:{repository}", parent=ctx.job.id,
                project=project, operator=ctx.job.operator,
                title=f"retention of {repository}" + (" (dry run)" if dry_run else ""),
                max_attempts=runs.TASK_ATTEMPTS)
        text = "" if selected else runs.NO_RESOURCES
        ctx.log(f"{len(selected)} task(s) queued" if selected else runs.NO_RESOURCES)
        return Outcome(SUCCEEDED, result={"tasks": len(selected), "status_text": text})

    def failed(self, ctx: JobContext, reason: str) -> Sequence[Any]:
        return []

    def stopped(self, ctx: JobContext) -> Sequence[Any]:
        return []


class TaskHandler:
    """Kind "retention-task": one repository of one run (see the module's docstring)."""

    kind = runs.TASK_KIND

    def __init__(self, registry: RegistryClient):
        self._registry = registry

    def run(self, ctx: JobContext) -> Outcome:
        try:
            return self._run(ctx)
        except Unauthorized as exc:
            return Outcome(FAILED, reason=_refused(f"{ctx.payload['repository']}", exc))
        except RegistryError as exc:
            if _again(exc):
                raise Retry(str(exc)) from None
            return Outcome(FAILED, reason=str(exc)[:1000])

    def _run(self, ctx: JobContext) -> Outcome:
        payload = ctx.payload
        repository = str(payload["repository"])
        dry_run = bool(payload.get("dry_run"))
        started_at = float(payload["started_at"])
        state = dict(ctx.state)
        if "delete" not in state:  # first attempt (or one that died before deciding)
            state = self._decide(ctx, repository, started_at, dry_run)
            if dry_run:
                return Outcome(SUCCEEDED, result={"total": state["total"],
                                                  "retained": state["retained"],
                                                  "deleted": 0,
                                                  "would_delete": state["delete"]})
            ctx.checkpoint(state)
        deleted: list[list[Any]] = list(state.get("deleted", []))
        done = {digest for digest, _ in deleted}
        skipped: list[str] = list(state.get("skipped", []))
        for digest, tags in state["delete"]:
            if digest in done or digest in skipped:
                continue
            ctx.check_stop()
            if self._pushed_since(ctx, repository, digest, started_at):
                ctx.log(f"{repository}@{digest}: pushed since the run started: kept")
                skipped.append(digest)
                state["skipped"] = skipped
                ctx.checkpoint(state)
                continue
            try:
                self._registry.delete_manifest(repository, digest)
            except NotFound:
                ctx.log(f"{repository}@{digest}: already gone")
            except RegistryError as exc:
                if exc.status != 405:
                    raise
                return Outcome(FAILED, reason=f"the registry refuses deletes ({exc}): enable "
                               "them in its configuration (Distribution: storage.delete."
                               "enabled: true)", result={**self._counts(state), "error": 405},
                               events=self._finished(ctx, state))
            deleted.append([digest, tags])
            state["deleted"] = deleted
            ctx.log(f"deleted {repository}@{digest}" + (f" ({', '.join(tags)})" if tags else ""))
            ctx.checkpoint(state, events=[ArtifactEvent(
                type=DELETE_ARTIFACT, repository=repository, digest=digest,
                operator=JOBSERVICE_OPERATOR, occur_at=int(time.time()), tags=tuple(tags))])
        return Outcome(SUCCEEDED, result=self._counts(state),
                       events=self._finished(ctx, state))

    @staticmethod
    def _counts(state: dict[str, Any]) -> dict[str, int]:
        deleted = len(state.get("deleted", []))
        retained = int(state["total"]) - len(state["delete"]) + len(state.get("skipped", []))
        return {"total": int(state["total"]), "retained": retained, "deleted": deleted}

    def _finished(self, ctx: JobContext, state: dict[str, Any]) -> list[Any]:
        """TAG_RETENTION when the task deleted something (and the project's quota, if it has
        one, recalculated: these deletes did not pass the proxy's books)."""
        payload = ctx.payload
        deleted = state.get("deleted", [])
        if not deleted:
            return []
        repository = str(payload["repository"])
        counts = self._counts(state)
        ctx.runner.executor.run(quota_recalc.request_recalc, str(payload["project"]),
                                operator=JOBSERVICE_OPERATOR)
        return [TagRetentionEvent(
            project=str(payload["project"]), occur_at=int(time.time()),
            operator=ctx.job.operator, policy_id=int(payload["policy_id"]),
            total=counts["total"], retained=counts["retained"],
            deleted=tuple(DeletedArtifact(repository.partition("/")[2], digest, tuple(tags))
                          for digest, tags in deleted),
            rules=tuple(payload.get("all_rules") or ()))]

    def _decide(self, ctx: JobContext, repository: str, started_at: float,
                dry_run: bool) -> dict[str, Any]:
        rules_raw = ctx.payload.get("rules") or []
        policy, problems = parse_retention({"rules": rules_raw})
        if policy is None:
            raise ValueError(f"the task's rules are invalid: {problems}")
        candidates = self._candidates(ctx, repository)
        # a push is recorded in whole seconds: one in the run's first second counts as later
        decision = evaluate(policy.rules, candidates, now=int(clock.now()),
                            started_at=int(started_at) - 1)
        ctx.log(f"Run retention process. Repository: {repository} Rule Algorithm: or "
                f"Dry Run: {str(dry_run).lower()}")
        ctx.log(f"Load {len(candidates)} candidates")
        kept = {c.digest for c in decision.retained}
        for c in candidates:
            ctx.log(f"{c.digest} | {','.join(c.tags) or '-'} | image | "
                    f"pushed {_when(c.pushed_at)} | pulled {_when(c.pulled_at)} | "
                    f"created {_when(c.created_at)} | {'RETAIN' if c.digest in kept else 'DEL'}")
        return {"total": decision.total,  # protected ones count as retained
                "retained": len(decision.retained),
                "delete": [[c.digest, list(c.tags)] for c in decision.deleted],
                "deleted": [], "skipped": []}

    def _candidates(self, ctx: JobContext, repository: str) -> list[Candidate]:
        try:
            tag_names = list(self._registry.tags(repository))
        except NotFound:
            return []
        by_digest: dict[str, list[str]] = {}
        for tag in tag_names:
            ctx.check_stop()
            found = self._registry.head_manifest(repository, tag)
            if found is None or not found.digest:
                continue  # deleted since it was listed
            by_digest.setdefault(found.digest, []).append(tag)
        artifact_rows, tag_rows = ctx.runner.executor.run(store.repository_activity,
                                                          repository)
        artifacts = {(repository, d): ArtifactTimes(repository, d, pushed, pulled)
                     for d, (pushed, pulled) in artifact_rows.items()}
        tags = {(repository, t): TagTimes(repository, t, d, pushed)
                for t, (d, pushed) in tag_rows.items()}
        out = []
        for digest, names in by_digest.items():
            pushed, pulled = times(repository, digest, names, artifacts, tags)
            # newest-pushed tag first, as Harbor lists them (the payload names the first)
            names.sort(key=lambda t: (-(tag_rows[t][1] if t in tag_rows
                                        and tag_rows[t][0] == digest else 0), t))
            created = None if pushed is not None else self._created(repository, digest)
            out.append(Candidate(digest=digest, tags=tuple(names), pushed_at=pushed,
                                 pulled_at=pulled, created_at=created))
        out.sort(key=lambda c: -c.pushed_time)
        return out

    def _created(self, repository: str, digest: str) -> int | None:
        """The image config's `created` (Unix seconds), or None (an index, no config)."""
        try:
            manifest = self._registry.get_manifest(repository, digest)
            config = (json.loads(manifest.data).get("config") or {}).get("digest")
            if not isinstance(config, str):
                return None
            with self._registry.open_blob(repository, config) as blob:
                data = b"".join(blob)
            return _parse_time(json.loads(data).get("created"))
        except NotFound:
            return None
        except (ValueError, AttributeError):
            return None

    def _pushed_since(self, ctx: JobContext, repository: str, digest: str,
                      started_at: float) -> bool:
        artifacts, tags = ctx.runner.executor.run(store.repository_activity, repository)
        pushes = [row[0] for d, row in artifacts.items() if d == digest and row[0] is not None]
        pushes += [pushed for d, pushed in tags.values() if d == digest]
        return any(p >= int(started_at) for p in pushes)

    def failed(self, ctx: JobContext, reason: str) -> Sequence[Any]:
        return []

    def stopped(self, ctx: JobContext) -> Sequence[Any]:
        return []


def _parse_time(value: Any) -> int | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    if "." in text:  # Go writes nanoseconds; fromisoformat takes at most microseconds
        head, _, rest = text.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        return int(datetime.fromisoformat(text).timestamp())
    except ValueError:
        return None


def _when(value: int | None) -> str:
    return time.strftime("%Y/%m/%d %H:%M:%S", time.gmtime(value)) if value else "-"
