"""Reading a registry's 401: `WWW-Authenticate` challenges and the token scopes they name.

Pure: no I/O. The grammar is RFC 7235's (a scheme, then comma-separated `key=value` or
`key="quoted"` parameters; several challenges may share one header value, and requests joins
repeated headers with ", "). Scopes are the Docker token spec's `type:name:action,action`,
space-separated when several (`repository:a/b:pull repository:c:pull`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Challenge:
    scheme: str                      # lower-case: "bearer", "basic"
    params: tuple[tuple[str, str], ...] = ()

    def param(self, name: str) -> str:
        for key, value in self.params:
            if key == name:
                return value
        return ""

    @property
    def realm(self) -> str:
        return self.param("realm")

    @property
    def service(self) -> str:
        return self.param("service")

    @property
    def error(self) -> str:
        return self.param("error")

    @property
    def scopes(self) -> tuple[Scope, ...]:
        return parse_scopes(self.param("scope"))


@dataclass(frozen=True, order=True)
class Scope:
    """One resource and the actions wanted on it: `repository:acc/app:pull,push`."""

    type: str
    name: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def repository(name: str, *actions: str) -> Scope:
    return Scope("repository", name, tuple(sorted(set(actions))))


CATALOG = Scope("registry", "catalog", ("*",))

_SEPARATORS = " \t,="


def parse_challenges(values: str | Iterable[str]) -> list[Challenge]:
    """Every challenge in one or more WWW-Authenticate values; unreadable parts are skipped."""
    if isinstance(values, str):
        values = [values]
    found: list[Challenge] = []
    for value in values:
        found.extend(_parse_one(value))
    return found


def _parse_one(text: str) -> list[Challenge]:
    challenges: list[tuple[str, list[tuple[str, str]]]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        start = i
        while i < n and text[i] not in _SEPARATORS:
            i += 1
        token = text[start:i]
        if not token:
            i += 1  # a stray "=": skip it
            continue
        j = i
        while j < n and text[j] in " \t":
            j += 1
        if j < n and text[j] == "=" and challenges:
            value, i = _value(text, j + 1)
            challenges[-1][1].append((token.lower(), value))
        else:
            challenges.append((token.lower(), []))
            i = j
    return [Challenge(scheme, tuple(params)) for scheme, params in challenges]


def _value(text: str, i: int) -> tuple[str, int]:
    """A token or a quoted-string starting at `i` (after BWS); returns it and the next index."""
    n = len(text)
    while i < n and text[i] in " \t":
        i += 1
    if i < n and text[i] == '"':
        out: list[str] = []
        i += 1
        while i < n and text[i] != '"':
            if text[i] == "\\" and i + 1 < n:
                i += 1
            out.append(text[i])
            i += 1
        return "".join(out), i + 1
    start = i
    while i < n and text[i] not in " \t,":
        i += 1
    return text[start:i], i


def parse_scopes(text: str | Iterable[str]) -> tuple[Scope, ...]:
    """`repository:a:pull,push registry:catalog:*` -> scopes (names may hold a `host:port`)."""
    items = text.split() if isinstance(text, str) else [p for t in text for p in t.split()]
    scopes = []
    for item in items:
        kind, sep, rest = item.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not (sep and sep2 and kind and name):
            continue
        scopes.append(Scope(kind, name, tuple(sorted({a for a in actions.split(",") if a}))))
    return merge(scopes)


def merge(*groups: Iterable[Scope]) -> tuple[Scope, ...]:
    """One scope per resource with the union of its actions, in a stable order (a cache key)."""
    actions: dict[tuple[str, str], set[str]] = {}
    for group in groups:
        for scope in group:
            actions.setdefault((scope.type, scope.name), set()).update(scope.actions)
    return tuple(sorted(Scope(t, n, tuple(sorted(a))) for (t, n), a in actions.items()))


def scope_text(scopes: Iterable[Scope]) -> str:
    return " ".join(str(s) for s in scopes)


def covers(granted: Iterable[Scope], wanted: Iterable[Scope]) -> bool:
    """Whether `granted` includes every action of `wanted`."""
    have = {(s.type, s.name): set(s.actions) for s in granted}
    return all(set(w.actions) <= have.get((w.type, w.name), set()) for w in wanted)
