"""Which policies an event reaches. Pure: the caller supplies the policies of its project."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence
from typing import Protocol
from typing import TypeVar

from sidecar.rules.globs import compile_glob
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


class CompiledFilters:
    """A policy's filters with every glob compiled once (per rules load, not per event).

    `accepts` answers as the function `accepts` does for the same Filters.
    """

    __slots__ = ("repositories", "tags", "ignore_operators", "project_events")

    def __init__(self, filters: Filters):
        self.repositories = tuple(compile_glob(p).fullmatch for p in filters.repositories)
        self.tags = tuple(compile_glob(p).fullmatch for p in filters.tags)
        self.ignore_operators = tuple(compile_glob(p).fullmatch
                                      for p in filters.ignore_operators)

    def accepts_operator(self, operator: str) -> bool:
        """All that applies to a project-wide event (no repository, no tags)."""
        return not (self.ignore_operators and any(m(operator) for m in self.ignore_operators))

    def accepts(self, *, repository: str, references: Sequence[str], operator: str) -> bool:
        if self.ignore_operators and any(m(operator) for m in self.ignore_operators):
            return False
        if self.repositories and not any(m(repository) for m in self.repositories):
            return False
        if self.tags and not any(m(ref) for m in self.tags for ref in references):
            return False
        return True
