"""Which policies an event reaches. Pure: the caller supplies the policies of its project."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence
from typing import Protocol
from typing import TypeVar

from sidecar.rules.globs import glob_match
from sidecar.rules.policy import Filters


class _PolicyLike(Protocol):
    enabled: bool
    event_types: tuple[str, ...]


P = TypeVar("P", bound=_PolicyLike)


def matching(policies: Iterable[P], event_type: str) -> list[P]:
    """Enabled policies subscribed to `event_type`, as Harbor's GetRelatedPolices."""
    return [p for p in policies if p.enabled and event_type in p.event_types]


def accepts(
    filters: Filters,
    *,
    repository: str,
    references: Sequence[str],
    operator: str,
) -> bool:
    """Whether a policy's filters let an event through.

    `repository` is the name inside the project (`app`, `team/app`); `references` are the
    event's tags, or its digest when it has none (what Harbor puts in `resources[].tag`), so
    a tag filter of `sha256:*` takes untagged events. Any one tag matching is enough: a
    deleted artifact carries all the tags it had.
    """
    if filters.ignore_operators and any(
        glob_match(pattern, operator) for pattern in filters.ignore_operators
    ):
        return False
    if filters.repositories and not any(
        glob_match(pattern, repository) for pattern in filters.repositories
    ):
        return False
    if filters.tags and not any(
        glob_match(pattern, ref) for pattern in filters.tags for ref in references
    ):
        return False
    return True
