"""The replication task (job kind "replication-task"): one source repository of one execution.

Harbor's task, in the job queue every job uses. It says REPLICATION `Running` when it starts
(recorded with its first checkpoint), copies (or, for a replicated deletion, deletes) each of
its references, and ends with `Success`, `Error` or `Stopped`, each event recorded in the
same transaction as the task's new state, so a task resumed after a crash never repeats one.

Progress is saved as it goes: references done, blobs done, bytes sent. A task taken over
after `kill -9` resumes where it was (what the destination already holds is skipped, by the
checkpoint and by HEAD). What may pass (the destination unreachable, a 5xx, a digest that did
not arrive intact) is retried with backoff; what will not (refused credentials, an artifact
gone from the source, a destination that refuses the manifest) fails the task at once. As in
Harbor, one failed reference fails the task, after the others were tried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.events.model import REPLICATION
from sidecar.events.replication import ERROR
from sidecar.events.replication import RUNNING
from sidecar.events.replication import STOPPED
from sidecar.events.replication import SUCCESS
from sidecar.events.replication import ReplicationEvent
from sidecar.jobs.runner import JobContext
from sidecar.jobs.runner import Outcome
from sidecar.jobs.runner import Retry
from sidecar.registry import DigestMismatch
from sidecar.registry import RegistryClient
from sidecar.registry import RegistryError
from sidecar.registry import RegistryUnavailable
from sidecar.replicate.copy import CHUNK_SIZE
from sidecar.replicate.copy import Copier
from sidecar.replicate.destinations import Destinations
from sidecar.replicate.destinations import prepare
from sidecar.replicate.throttle import Throttle
from sidecar.store import replication as replication_store
from sidecar.store.executor import Executor
from sidecar.store.models import FAILED
from sidecar.store.models import SUCCEEDED
from sidecar.store.replication_runs import TASK_KIND

log = logging.getLogger(__name__)

COPY, DELETION = "copy", "deletion"
#: at most this much of the failures goes into the task's reason
MAX_REASON = 1000


@dataclass(frozen=True)
class TaskOrder:
    """What a task does, as its planner wrote it (no secret: the credential is read from
    the registry's row when the task runs)."""

    execution_id: int
    policy_id: int
    policy: str
    operation: str
    source: str
    destination: str
    references: tuple[str, ...]
    registry_id: int
    registry_name: str
    registry_type: str
    registry_url: str
    auth_type: str
    trigger: str
    execution_timestamp: int
    host: str = ""
    description: str = ""
    creator: str = ""
    override: bool = True
    speed: int = 0
    copy_by_chunk: bool = False
    public: bool = False
    resource_type: str = "artifact"
    src_resource: str = ""
    dst_resource: str = ""

    def payload(self) -> dict[str, Any]:
        out = dict(vars(self))
        out["references"] = list(self.references)
        return out

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> TaskOrder:
        fields = {k: v for k, v in payload.items() if k in cls.__dataclass_fields__}
        fields["references"] = tuple(fields.get("references") or ())
        return cls(**fields)


def transient(exc: RegistryError) -> bool:
    """Whether trying again may help: the registry unreachable or overloaded, or bytes that
    did not arrive intact."""
    if isinstance(exc, (RegistryUnavailable, DigestMismatch)):
        return True
    return exc.status is not None and (exc.status >= 500 or exc.status in (408, 429))


class TaskHandler:
    """The job handler of kind "replication-task" (see the module's docstring)."""

    kind = TASK_KIND

    def __init__(self, executor: Executor, source: RegistryClient, destinations: Destinations,
                 *, observe: Callable[[str], None] = lambda outcome: None,
                 observe_bytes: Callable[[int], None] = lambda n: None,
                 clock: Callable[[], float] = time.time):
        self._executor = executor
        self._source = source
        self._destinations = destinations
        self._observe = observe
        self._observe_bytes = observe_bytes
        self._clock = clock

    # -- JobHandler -------------------------------------------------------------------------
    def run(self, ctx: JobContext) -> Outcome:
        order = TaskOrder.from_payload(ctx.payload)
        state = dict(ctx.state)
        if not state.get("running"):
            state.update(running=True, done={}, blobs=[], bytes=0)
            ctx.log(f"{order.operation} {order.source} -> {order.registry_name}/"
                    f"{order.destination}: {', '.join(order.references)}")
            ctx.checkpoint(state, events=[self._event(ctx, order, RUNNING)])
        elif state.get("done") or state.get("blobs"):
            ctx.log(f"resumed: {len(state.get('done') or {})} of {len(order.references)} "
                    f"references and {len(state.get('blobs') or [])} blobs of the current "
                    "one already done")
        registry = self._executor.run(replication_store.registry, order.registry_id)
        if registry is None:
            return self._fail(ctx, order, state, f"registry {order.registry_name} is no "
                              "longer declared")
        destination = self._destinations.get(registry)
        try:
            prepare(destination, order.destination, order.public)
        except ValueError as exc:
            return self._fail(ctx, order, state, str(exc))
        except RegistryError as exc:
            return self._failed_by(ctx, order, state, str(exc), [exc])
        copier = Copier(self._source, destination.client, mounts=destination.mounts,
                        throttle=Throttle(order.speed),
                        chunk_size=CHUNK_SIZE if order.copy_by_chunk else None,
                        check_stop=ctx.check_stop, log=ctx.log,
                        on_blob=lambda digest, size: self._blob_done(ctx, state, digest, size))
        errors: dict[str, RegistryError] = {}
        done: dict[str, str] = dict(state.get("done") or {})
        for reference in order.references:
            if reference in done:
                continue
            try:
                if order.operation == DELETION:
                    outcome = self._delete(copier, order, reference)
                else:
                    outcome = copier.copy(order.source, order.destination, reference,
                                          order.override).outcome
            except RegistryError as exc:
                errors[reference] = exc
                ctx.log(f"{reference}: {exc}")
                continue
            done[reference] = outcome
            state.update(done=done, blobs=[])
            ctx.checkpoint(state)
        if errors:
            reason = "; ".join(f"{ref}: {exc}" for ref, exc in errors.items())
            return self._failed_by(ctx, order, state, reason, list(errors.values()))
        self._observe(SUCCEEDED)
        result = {"bytes": int(state.get("bytes", 0)), "references": done}
        return Outcome(SUCCEEDED, result=result,
                       events=[self._event(ctx, order, SUCCESS)])

    def failed(self, ctx: JobContext, reason: str) -> Sequence[Any]:
        """The runner gave up (attempts used up, or the last worker died holding it)."""
        self._observe(FAILED)
        return [self._event(ctx, TaskOrder.from_payload(ctx.payload), ERROR)]

    def stopped(self, ctx: JobContext) -> Sequence[Any]:
        self._observe("stopped")
        return [self._event(ctx, TaskOrder.from_payload(ctx.payload), STOPPED)]

    # -- steps ------------------------------------------------------------------------------
    def _delete(self, copier: Copier, order: TaskOrder, reference: str) -> str:
        """Harbor's deletion: resolve the reference at the destination, delete by digest
        (which takes every tag pointing at it there); absent is nothing to do."""
        digest = copier.destination_digest(order.destination, reference)
        if digest is None:
            copier.log(f"{order.destination}:{reference} is not at the destination: skipped")
            return "absent"
        copier.destination.delete_manifest(order.destination, digest)
        copier.log(f"{order.destination}@{digest} deleted ({reference})")
        return "deleted"

    def _blob_done(self, ctx: JobContext, state: dict[str, Any], digest: str,
                   size: int) -> None:
        blobs = list(state.get("blobs") or [])
        if digest in blobs:
            return
        blobs.append(digest)
        state.update(blobs=blobs, bytes=int(state.get("bytes", 0)) + size)
        if size:
            self._observe_bytes(size)
        ctx.checkpoint(state)

    # -- outcomes ---------------------------------------------------------------------------
    def _failed_by(self, ctx: JobContext, order: TaskOrder, state: dict[str, Any],
                   reason: str, errors: list[RegistryError]) -> Outcome:
        reason = reason[:MAX_REASON]
        if any(transient(exc) for exc in errors):
            raise Retry(reason)  # the runner ends it (failed()) once attempts are used up
        return self._fail(ctx, order, state, reason)

    def _fail(self, ctx: JobContext, order: TaskOrder, state: dict[str, Any],
              reason: str) -> Outcome:
        self._observe(FAILED)
        return Outcome(FAILED, reason=reason, result={"bytes": int(state.get("bytes", 0))},
                       events=[self._event(ctx, order, ERROR)])

    def _event(self, ctx: JobContext, order: TaskOrder, status: str) -> ReplicationEvent:
        return ReplicationEvent(
            type=REPLICATION, repository=order.source, operator=ctx.job.operator,
            occur_at=int(self._clock()), job_status=status,
            execution_id=order.execution_id, task_id=ctx.job.id, trigger_type=order.trigger,
            execution_timestamp=order.execution_timestamp, references=order.references,
            source_resource=order.src_resource, destination_resource=order.dst_resource,
            registry_name=order.registry_name, registry_type=order.registry_type,
            registry_endpoint=order.registry_url, description=order.description,
            artifact_type=order.resource_type, authentication_type=order.auth_type,
            override_mode=order.override, policy_creator=order.creator, host=order.host)
