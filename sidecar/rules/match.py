"""Which policies an event reaches. Pure: the caller supplies the policies of its project."""

from __future__ import annotations

import re
from collections.abc import Iterable
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol
from typing import TypeVar

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


def glob_match(pattern: str, value: str) -> bool:
    """Doublestar globs, as Harbor's repository and tag filters (bmatcuk/doublestar)."""
    return _compile(pattern).fullmatch(value) is not None


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    index = 0
    depth = 0  # inside {a,b}
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")  # zero or more whole segments
            index += 3
            continue
        if pattern.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", index + 1)
            if end < 0:
                out.append(re.escape(char))
            else:
                body = pattern[index + 1:end]
                negate = body.startswith(("!", "^"))
                body = body[1:] if negate else body
                out.append(f"[{'^' if negate else ''}{body.replace(chr(92), chr(92) * 2)}]")
                index = end + 1
                continue
        elif char == "{":
            depth += 1
            out.append("(?:")
        elif char == "}" and depth:
            depth -= 1
            out.append(")")
        elif char == "," and depth:
            out.append("|")
        elif char == "\\" and index + 1 < len(pattern):
            out.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        else:
            out.append(re.escape(char))
        index += 1
    out.append(")" * depth)
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error:
        return re.compile(re.escape(pattern))  # a pattern we cannot read matches only itself
