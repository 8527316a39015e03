"""Which policies an event reaches. Pure: the caller supplies the policies of its project."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol
from typing import TypeVar


class _PolicyLike(Protocol):
    enabled: bool
    event_types: tuple[str, ...]


P = TypeVar("P", bound=_PolicyLike)


def matching(policies: Iterable[P], event_type: str) -> list[P]:
    """Enabled policies subscribed to `event_type`, as Harbor's GetRelatedPolices."""
    return [p for p in policies if p.enabled and event_type in p.event_types]
