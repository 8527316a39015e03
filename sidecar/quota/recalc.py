"""Rebuild a project's usage from what the registry holds: the `quota.recalc` job.

The walk Harbor's usage definition asks for, through the registry API: the catalog, the
project's repositories, their tags, each tag's manifest (an index: its child manifests too),
and the config and layers each references at their declared sizes, a blob counted once per
project. It reads as `sidecar.registry_credential` (pull on every repository of the project,
plus `registry:catalog:*`); a refusal fails the job with the reason, a registry that cannot be
reached is retried with backoff. Progress is checkpointed per repository (at most every few
seconds), so a recalculation taken over after a crash resumes where it was.

Manifests no tag points at (pushed by digest alone, outside an index) cannot be listed
through the registry API: they are not found by the walk, and a rebuild forgets them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from sidecar.events.manifest import parse_manifest
from sidecar.events.quota import manifest_refs
from sidecar.events.uploads import project_of
from sidecar.jobs.runner import JobContext
from sidecar.jobs.runner import Outcome
from sidecar.jobs.runner import Retry
from sidecar.registry import NotFound
from sidecar.registry import RegistryClient
from sidecar.registry import RegistryError
from sidecar.registry import RegistryUnavailable
from sidecar.registry import Unauthorized
from sidecar.store import quota_recalc
from sidecar.store import quota_recount
from sidecar.store.models import FAILED
from sidecar.store.models import SUCCEEDED
from sidecar.store.quota_recount import Artifact

log = logging.getLogger(__name__)

KIND = quota_recalc.KIND


def walk_repository(registry: RegistryClient, repository: str,
                    check: Callable[[], None] = lambda: None) -> list[Artifact]:
    """Every manifest a tag of `repository` reaches (index children included), with the
    blobs each references. A tag or child deleted during the walk is skipped."""
    found: dict[str, Artifact] = {}

    def visit(reference: str) -> None:
        check()
        try:
            manifest = registry.get_manifest(repository, reference)
        except NotFound:
            return
        if manifest.digest in found:
            return
        refs = manifest_refs(manifest.data) or ()
        found[manifest.digest] = Artifact(repository, manifest.digest, len(manifest.data),
                                          refs)
        children = (parse_manifest(manifest.data) or {}).get("manifests")
        if isinstance(children, list):
            for child in children:
                digest = child.get("digest") if isinstance(child, dict) else None
                if isinstance(digest, str) and digest not in found:
                    visit(digest)

    try:
        tags = list(registry.tags(repository))
    except NotFound:
        return []
    for tag in tags:
        visit(tag)
    return list(found.values())


def _packed(artifacts: Sequence[Artifact]) -> list[list[Any]]:
    return [[a.repository, a.digest, a.size, [list(ref) for ref in a.refs]] for a in artifacts]


def _unpacked(rows: Sequence[Sequence[Any]]) -> list[Artifact]:
    return [Artifact(repo, digest, int(size), tuple((d, int(s)) for d, s in refs))
            for repo, digest, size, refs in rows]


class RecalcHandler:
    """The job handler of `quota.recalc` (payload: project, started_at)."""

    kind = KIND

    def __init__(self, registry: RegistryClient, checkpoint_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self._registry = registry
        self._checkpoint_seconds = checkpoint_seconds
        self._clock = clock

    def run(self, ctx: JobContext) -> Outcome:
        project = ctx.payload["project"]
        started_at = float(ctx.payload["started_at"])
        executor = ctx.runner.executor
        state = ctx.state
        done: list[str] = list(state.get("done", []))
        found = _unpacked(state.get("found", []))
        try:
            repositories = sorted({name for name in self._registry.catalog()
                                   if project_of(name) == project})
            saved = self._clock()
            for repository in repositories:
                if repository in done:
                    continue
                found.extend(walk_repository(self._registry, repository, ctx.check_stop))
                done.append(repository)
                if self._clock() - saved >= self._checkpoint_seconds:
                    ctx.checkpoint({"done": done, "found": _packed(found)})
                    saved = self._clock()
        except RegistryUnavailable as exc:
            raise Retry(f"registry unavailable: {exc}") from None
        except Unauthorized as exc:
            executor.run(quota_recalc.end_recalc, project)
            return Outcome(FAILED, reason=f"the registry refused the sidecar's credential "
                                          f"(sidecar.registry_credential): {exc}")
        except RegistryError as exc:
            raise Retry(str(exc)) from None
        used = executor.run(quota_recount.rebuild, project, found, started_at=started_at)
        if used is None:
            return Outcome(SUCCEEDED, reason="the project has no quota any more")
        ctx.log(f"{project}: {len(found)} manifests in {len(repositories)} repositories, "
                f"{used} bytes")
        log.info("quota: %s recalculated from the registry: %d bytes (%d manifests in %d "
                 "repositories)", project, used, len(found), len(repositories))
        return Outcome(SUCCEEDED, result={"project": project, "used": used,
                                          "repositories": len(repositories),
                                          "manifests": len(found)})

    def failed(self, ctx: JobContext, reason: str) -> Sequence[Any]:
        ctx.runner.executor.run(quota_recalc.end_recalc, ctx.payload["project"])
        return []

    def stopped(self, ctx: JobContext) -> Sequence[Any]:
        ctx.runner.executor.run(quota_recalc.end_recalc, ctx.payload["project"])
        return []
