"""Harbor's WebhookPolicy, validated once, with Harbor's own error messages.

The rules file and the REST API share this module, so a policy copied from one to the other is
accepted or refused for the same reason, in the same words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from sidecar.events.model import EVENT_TYPES
from sidecar.rules.globs import glob_problem
from sidecar.rules.target import Target
from sidecar.rules.target import parse_target

PROJECT_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
#: Longest pull de-duplication window: one day (the store forgets windows older than this).
MAX_PULL_DEDUP_SECONDS = 86400

#: Keys Harbor's API returns that a user may paste back; read-only here.
POLICY_READ_ONLY_KEYS = ("id", "project_id", "creator", "creation_time", "update_time")
#: Harbor's keys, then ours (beyond Harbor: Harbor's own API ignores them).
POLICY_KEYS = ("name", "description", "enabled", "event_types", "targets", "filters",
               "pull_dedup_seconds")
FILTER_KEYS = ("repositories", "tags", "ignore_operators")


@dataclass(frozen=True)
class Filters:
    """Which events of a subscribed type a policy wants (beyond Harbor).

    Globs: `*` matches within one path segment, `**` across segments, `?` one character,
    `{a,b}` alternatives. Repositories are matched without the project prefix, as Harbor's
    retention and immutability rules do; tags also match the digest of an untagged event.
    """

    repositories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    ignore_operators: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.repositories or self.tags or self.ignore_operators)

    def for_project_events(self) -> Filters:
        """What still applies to an event that names no repository (quota, retention, ...)."""
        return Filters(ignore_operators=self.ignore_operators)

    def as_dict(self) -> dict[str, list[str]]:
        return {key: list(getattr(self, key)) for key in FILTER_KEYS if getattr(self, key)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> Filters:
        """From the stored form (already validated)."""
        raw = raw or {}
        return cls(**{key: tuple(raw.get(key) or ()) for key in FILTER_KEYS})


@dataclass(frozen=True)
class Policy:
    name: str
    event_types: tuple[str, ...]
    targets: tuple[Target, ...]
    description: str = ""
    enabled: bool = True
    line: int = 0
    filters: Filters = Filters()
    #: Repeated pulls of one artifact by one operator within this many seconds: one delivery.
    pull_dedup_seconds: int = 0

    def options(self) -> dict[str, Any]:
        """Our extra fields, in the form the store and the API keep them; empty when unused."""
        out: dict[str, Any] = {}
        if self.filters:
            out["filters"] = self.filters.as_dict()
        if self.pull_dedup_seconds:
            out["pull_dedup_seconds"] = self.pull_dedup_seconds
        return out


@dataclass(frozen=True)
class Problem:
    """One validation failure: where (a key path inside the object) and Harbor's message."""

    path: tuple[str | int, ...]
    message: str


@dataclass
class _Checker:
    problems: list[Problem] = field(default_factory=list)

    def add(self, path: tuple[str | int, ...], message: str) -> None:
        self.problems.append(Problem(path, message))


def parse_policy(raw: Any, *, allow_unknown: bool = False) -> tuple[Policy | None, list[Problem]]:
    """Validate a WebhookPolicy mapping; return the policy or the problems found.

    Harbor's order: event types, then targets. Unknown keys are refused unless
    `allow_unknown` (the REST API, like Harbor's, ignores them). Our own extra fields
    (`filters`, `pull_dedup_seconds`, a target's `secret` and `cloudevents_mode`) are
    checked either way.
    """
    checker = _Checker()
    if not isinstance(raw, Mapping):
        checker.add((), "a webhook policy must be a mapping")
        return None, checker.problems
    if not allow_unknown:
        for key in raw:
            if key not in POLICY_KEYS and key not in POLICY_READ_ONLY_KEYS:
                checker.add((str(key),), f"unknown key '{key}' in webhook policy")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        checker.add(("name",), "policy name is required")
        name = ""
    description = raw.get("description") or ""
    if not isinstance(description, str):
        checker.add(("description",), "description must be a string")
        description = ""
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        checker.add(("enabled",), "enabled must be true or false")
        enabled = True

    event_types = raw.get("event_types")
    types: list[str] = []
    if event_types is None or event_types == []:
        checker.add(("event_types",), "empty event type")
    elif not isinstance(event_types, list):
        checker.add(("event_types",), "event_types must be a list")
    else:
        for index, value in enumerate(event_types):
            if value not in EVENT_TYPES:
                checker.add(("event_types", index), f"unsupported event type {value}")
            elif value not in types:
                types.append(value)

    targets_raw = raw.get("targets")
    targets: list[Target] = []
    if not targets_raw:
        checker.add(("targets",), f"empty notification target with policy {name}")
    elif not isinstance(targets_raw, list):
        checker.add(("targets",), "targets must be a list")
    else:
        for index, item in enumerate(targets_raw):
            target = _parse_target(item, name, ("targets", index), checker, allow_unknown)
            if target is not None:
                targets.append(target)

    filters = _parse_filters(raw.get("filters"), checker)
    dedup = raw.get("pull_dedup_seconds", 0)
    if dedup is None:
        dedup = 0
    if (isinstance(dedup, bool) or not isinstance(dedup, int)
            or not 0 <= dedup <= MAX_PULL_DEDUP_SECONDS):
        checker.add(("pull_dedup_seconds",), "pull_dedup_seconds must be a whole number of "
                    f"seconds from 0 to {MAX_PULL_DEDUP_SECONDS}")
        dedup = 0

    if checker.problems:
        return None, checker.problems
    policy = Policy(
        name=name.strip(),
        description=description,
        enabled=enabled,
        event_types=tuple(types),
        targets=tuple(targets),
        filters=filters,
        pull_dedup_seconds=dedup,
    )
    return policy, []


def _parse_filters(raw: Any, checker: _Checker) -> Filters:
    """Our schema, so unknown keys are refused in the API too: a typo must not match all."""
    if raw is None:
        return Filters()
    if not isinstance(raw, Mapping):
        checker.add(("filters",), "filters must be a mapping with repositories, tags "
                    "and/or ignore_operators")
        return Filters()
    values: dict[str, tuple[str, ...]] = {}
    for key, value in raw.items():
        if key not in FILTER_KEYS:
            checker.add(("filters", str(key)), f"unknown key '{key}' in filters "
                        f"(expected {', '.join(FILTER_KEYS)})")
            continue
        if value is None:
            value = []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            checker.add(("filters", key), f"filters.{key} must be a list of patterns")
            continue
        for index, pattern in enumerate(value):
            problem = check_glob(pattern, allow_empty=key == "ignore_operators")
            if problem:
                checker.add(("filters", key, index), f"filters.{key}: {problem}")
        values[key] = tuple(dict.fromkeys(value))
    return Filters(**values)


def check_glob(pattern: str, *, allow_empty: bool = False) -> str | None:
    """Why a filter pattern cannot be used, or None. "" names the anonymous operator."""
    if pattern == "":
        return None if allow_empty else "empty pattern"
    problem = glob_problem(pattern)
    if problem:
        return problem
    return None


def _parse_target(raw: Any, policy_name: str, path: tuple[str | int, ...], checker: _Checker,
                  allow_unknown: bool) -> Target | None:
    target, problems = parse_target(raw, policy_name, allow_unknown=allow_unknown)
    for where, message in problems:
        checker.add((*path, *where), message)
    return target
