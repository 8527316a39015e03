"""The replication execution (job kind "replication"): decides the tasks of one run.

An event-based execution carries its one artifact (pushed, or deleted with
`replicate_deletion`): one task. A manual or scheduled one walks the source registry (its
catalog, then each selected repository's tags, as the policy's name and tag filters select
them) and queues a task per repository for the tags the destination lacks or holds at another
digest (those only with `override`). Scheduled and manual runs never delete, as in Harbor.
Tasks are queued as the walk goes (copying starts before it ends) under keys that make a
resumed walk queue nothing twice; nothing to do ends the execution with Harbor's "no resources
need to be replicated".

The walk compares digests when it can; when the destination cannot be asked (unreachable,
refusing the credential) it queues every selected tag, so each task says what went wrong, in
its REPLICATION event, as Harbor's tasks do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from typing import NoReturn

from sidecar.events.replication import resource_name
from sidecar.jobs.runner import JobContext
from sidecar.jobs.runner import Outcome
from sidecar.jobs.runner import Retry
from sidecar.registry import NotFound
from sidecar.registry import RegistryClient
from sidecar.registry import RegistryError
from sidecar.registry import Unauthorized
from sidecar.replicate.copy import Copier
from sidecar.replicate.destinations import Destination
from sidecar.replicate.destinations import Destinations
from sidecar.replicate.destinations import check_path
from sidecar.replicate.task import COPY
from sidecar.replicate.task import DELETION
from sidecar.replicate.task import TaskOrder
from sidecar.replicate.task import transient
from sidecar.rules.replication import destination_repository
from sidecar.store import policies as policy_store
from sidecar.store import replication as replication_store
from sidecar.store import replication_runs as runs
from sidecar.store.executor import Executor
from sidecar.store.models import FAILED
from sidecar.store.models import SUCCEEDED
from sidecar.store.replication import PolicyView
from sidecar.store.replication import RegistryView

log = logging.getLogger(__name__)


class PlanFailed(Exception):
    """The execution cannot run; the text is its status_text."""


class ExecutionHandler:
    """The job handler of kind "replication" (see the module's docstring)."""

    kind = runs.EXECUTION_KIND

    def __init__(self, executor: Executor, source: RegistryClient, destinations: Destinations):
        self._executor = executor
        self._source = source
        self._destinations = destinations

    def run(self, ctx: JobContext) -> Outcome:
        payload = ctx.payload
        self._executor.run(runs.ensure_execution, ctx.job.id, int(payload["policy_id"]),
                           str(payload.get("policy", "")), str(payload.get("trigger", "")),
                           ctx.job.created_at)
        try:
            policy = self._executor.run(replication_store.policy, int(payload["policy_id"]))
            if policy is None:
                raise PlanFailed(f"replication policy {payload.get('policy')} "
                                 f"({payload['policy_id']}) no longer exists")
            registry = self._executor.run(replication_store.registry, policy.registry_id)
            if registry is None:
                raise PlanFailed(f"the destination registry of {policy.name} no longer "
                                 "exists")
            if policy.single_active_replication and self._executor.run(
                    runs.active_executions, policy.id, ctx.job.id):
                raise PlanFailed(runs.SKIPPED)
            planner = _Planner(self, ctx, policy, registry)
            if "resource" in payload:
                queued = planner.event(payload["resource"])
            else:
                queued = planner.walk()
        except PlanFailed as exc:
            ctx.log(str(exc))
            return Outcome(FAILED, reason=str(exc), result={"status_text": str(exc)})
        text = "" if queued else runs.NO_RESOURCES
        ctx.log(f"{queued} task(s) queued" if queued else runs.NO_RESOURCES)
        return Outcome(SUCCEEDED, result={"tasks": queued, "status_text": text})

    def failed(self, ctx: JobContext, reason: str) -> Sequence[Any]:
        return []  # an execution says nothing itself: its tasks do

    def stopped(self, ctx: JobContext) -> Sequence[Any]:
        return []


class _Planner:
    def __init__(self, handler: ExecutionHandler, ctx: JobContext, policy: PolicyView,
                 registry: RegistryView):
        self.executor = handler._executor
        self.source = handler._source
        self.destination: Destination = handler._destinations.get(registry)
        self.ctx = ctx
        self.policy = policy
        self.registry = registry
        self.rule = policy.rule
        self.compare = True  # False once the destination could not be asked
        self.public: dict[str, bool] = {}

    # -- event-based: one artifact ---------------------------------------------------------
    def event(self, resource: dict[str, Any]) -> int:
        repository = resource["repository"]
        references = list(resource.get("tags") or []) or [resource["digest"]]
        operation = DELETION if resource.get("deleted") else COPY
        return self._queue(repository, references, operation)

    # -- manual and scheduled: the whole source ---------------------------------------------
    def walk(self) -> int:
        state = dict(self.ctx.state)
        after = state.get("last_repository", "")
        queued = int(state.get("queued", 0))
        try:
            repositories = sorted(r for r in self.source.catalog()
                                  if r > after and self.rule.selects_repository(r))
        except Unauthorized as exc:
            raise PlanFailed(f"listing the source's repositories was refused (the sidecar's "
                             f"registry_credential needs registry:catalog:*): {exc}") from None
        except RegistryError as exc:
            self._again_or_fail(f"listing the source's repositories: {exc}", exc)
        for repository in repositories:
            self.ctx.check_stop()
            references = self._wanted(repository)
            if references:
                queued += self._queue(repository, references, COPY)
            state.update(last_repository=repository, queued=queued)
            self.ctx.checkpoint(state)
        return queued

    def _wanted(self, repository: str) -> list[str]:
        """The selected tags of a repository the destination lacks or holds elsewhere."""
        try:
            tags = [t for t in self.source.tags(repository)
                    if self.rule.selected_tags((t,)) is not None]
        except NotFound:
            return []  # deleted since the catalog was read
        except RegistryError as exc:
            self._again_or_fail(f"listing the tags of {repository}: {exc}", exc)
        if not tags or not self.compare:
            return tags
        target = self._target(repository)
        copier = Copier(self.source, self.destination.client)
        wanted = []
        for tag in tags:
            try:
                found = self.source.head_manifest(repository, tag)
            except RegistryError as exc:
                self._again_or_fail(f"reading {repository}:{tag}: {exc}", exc)
            if found is None:
                continue
            try:
                existing = copier.destination_digest(target, tag)
            except RegistryError as exc:
                self.ctx.log(f"the destination cannot be compared ({exc}): every selected "
                             "tag is queued, its tasks will say what fails")
                self.compare = False
                return tags
            if existing is None or existing != found.digest and self.rule.override:
                wanted.append(tag)
            elif existing != found.digest:
                self.ctx.log(f"{target}:{tag} is {existing} at the destination, not "
                             f"{found.digest}; override is off: kept")
        return wanted

    # -- tasks -------------------------------------------------------------------------------
    def _target(self, repository: str) -> str:
        try:
            target = destination_repository(repository, self.policy.dest_namespace,
                                            self.policy.dest_namespace_replace_count)
            check_path(self.registry, target)
        except ValueError as exc:
            raise PlanFailed(str(exc)) from None
        return target

    def _queue(self, repository: str, references: list[str], operation: str) -> int:
        target = self._target(repository)
        execution_id = self.ctx.job.id
        payload = self.ctx.payload
        order = TaskOrder(
            execution_id=execution_id, policy_id=self.policy.id, policy=self.policy.name,
            operation=operation, source=repository, destination=target,
            references=tuple(references), registry_id=self.registry.id,
            registry_name=self.registry.name, registry_type=self.registry.type,
            registry_url=self.registry.url, auth_type=self.registry.auth_type,
            trigger=str(payload.get("trigger", "")),
            execution_timestamp=int(self.ctx.job.created_at),
            host=str(payload.get("host", "")), description=self.policy.description,
            creator=self.policy.creator, override=self.policy.override,
            speed=self.policy.speed, copy_by_chunk=self.policy.copy_by_chunk,
            public=self._public(repository),
            src_resource=resource_name(repository, len(references)),
            dst_resource=resource_name(target, len(references)))
        job_id = self.ctx.enqueue(runs.TASK_KIND, order.payload(),
                                  key=f"replication-task:{execution_id}:{repository}",
                                  parent=execution_id, operator=self.ctx.job.operator,
                                  project=repository.partition("/")[0],
                                  title=f"{repository} -> {self.registry.name}/{target}",
                                  max_attempts=runs.MAX_ATTEMPTS)
        if job_id is not None:
            self.ctx.log(f"task {job_id}: {operation} {repository} -> {target} "
                         f"({', '.join(references)})")
        return 1

    def _public(self, repository: str) -> bool:
        project = repository.partition("/")[0]
        if project not in self.public:
            found = self.executor.run(policy_store.policies_for, [project]).get(project)
            self.public[project] = bool(found and found.public)
        return self.public[project]

    def _again_or_fail(self, reason: str, exc: RegistryError) -> NoReturn:
        if transient(exc):
            raise Retry(reason)
        raise PlanFailed(reason)
