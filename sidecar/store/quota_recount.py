"""Quota usage after deletes, and rebuilt from what the registry holds.

A delete uncounts the blobs no remaining manifest of the project references (Harbor's
CleanupAssociationsForProject); a rebuild replaces the project's counted blobs and links with
what a registry walk found (catalog -> tags -> manifests -> blob sizes).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from peewee import fn

from sidecar.events.quota import decide_warning
from sidecar.store.models import database
from sidecar.store.quota_models import Quota
from sidecar.store.quota_models import QuotaBlob
from sidecar.store.quota_models import QuotaLink
from sidecar.store.quota_usage import chunks
from sidecar.store.quota_usage import count_blobs
from sidecar.store.quota_usage import lock_quota


@dataclass(frozen=True)
class Artifact:
    """What a registry walk found: a manifest in a repository and what it references."""

    repository: str
    digest: str
    size: int
    refs: tuple[tuple[str, int], ...] = ()


def forget_manifest(project: str, repository: str, digest: str,
                    now: float | None = None) -> int:
    """After a manifest was deleted from a repository: uncount the blobs no remaining
    manifest of the project references. Returns the bytes freed."""
    now = time.time() if now is None else now
    with database.atomic():
        return _forget(project, (QuotaLink.repository == repository)
                       & (QuotaLink.manifest == digest), now)


def forget_repository(project: str, repository: str, now: float | None = None) -> int:
    """After a whole repository was deleted."""
    now = time.time() if now is None else now
    with database.atomic():
        return _forget(project, QuotaLink.repository == repository, now)


def _forget(project: str, which: Any, now: float) -> int:
    quota = lock_quota(project)
    if quota is None:
        return 0
    which = which & (QuotaLink.project == project)
    blobs = {row.blob for row in QuotaLink.select(QuotaLink.blob).where(which).distinct()}
    if not blobs:
        return 0
    QuotaLink.delete().where(which).execute()
    still: set[str] = set()
    for chunk in chunks(sorted(blobs)):
        still.update(row.blob for row in QuotaLink.select(QuotaLink.blob).where(
            (QuotaLink.project == project) & QuotaLink.blob.in_(list(chunk))).distinct())
    freed = 0
    for chunk in chunks(sorted(blobs - still)):
        gone = QuotaBlob.select(QuotaBlob.size).where(
            (QuotaBlob.project == project) & QuotaBlob.digest.in_(list(chunk)))
        freed += sum(row.size for row in gone)
        QuotaBlob.delete().where(
            (QuotaBlob.project == project) & QuotaBlob.digest.in_(list(chunk))).execute()
    decision = decide_warning(quota.used, quota.used - freed, quota.hard,
                              quota.warning_percent, quota.warning_repeat, quota.warned)
    Quota.update(used=Quota.used - freed, warned=decision.warned, updated_at=now).where(
        Quota.project == project).execute()
    return freed


def begin_recalc(project: str, now: float | None = None) -> float | None:
    """Mark a project as recalculating (status shows it); return the start time to pass to
    `rebuild`, or None when the project has no quota."""
    now = time.time() if now is None else now
    updated = Quota.update(recalc_started_at=now).where(Quota.project == project).execute()
    return now if updated else None


def rebuild(project: str, artifacts: Iterable[Artifact], *, started_at: float,
            now: float | None = None) -> int | None:
    """Replace the project's counted blobs and links with what a registry walk begun at
    `started_at` found; return the new usage (None: no quota). Blobs and links that pushes
    recorded since `started_at` are kept, since the walk may not have seen them; a manifest
    deleted while the walk ran may come back counted until the next rebuild. Enforcement
    used the last known figure meanwhile."""
    now = time.time() if now is None else now
    blobs: dict[str, int] = {}
    links: set[tuple[str, str, str]] = set()
    for artifact in artifacts:
        for digest, size in ((artifact.digest, artifact.size), *artifact.refs):
            blobs.setdefault(digest, int(size))
            links.add((artifact.repository, artifact.digest, digest))
    with database.atomic():
        quota = lock_quota(project)
        if quota is None:
            return None
        for model in (QuotaLink, QuotaBlob):
            model.delete().where((model.project == project)
                                 & (model.added_at < started_at)).execute()
        count_blobs(project, blobs, now)
        rows = [{"project": project, "repository": repository, "manifest": manifest,
                 "blob": blob, "added_at": now} for repository, manifest, blob in sorted(links)]
        for chunk in chunks(rows):
            QuotaLink.insert_many(chunk).on_conflict_ignore().execute()
        used = (QuotaBlob.select(fn.COALESCE(fn.SUM(QuotaBlob.size), 0))
                .where(QuotaBlob.project == project).scalar())
        used = int(used or 0)
        decision = decide_warning(used, used, quota.hard, quota.warning_percent,
                                  quota.warning_repeat, quota.warned)
        Quota.update(used=used, warned=decision.warned, recalc_started_at=None,
                     updated_at=now).where(Quota.project == project).execute()
        return used
