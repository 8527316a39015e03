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
from urllib.parse import urlsplit

from sidecar.events.model import EVENT_TYPES

TARGET_TYPES = ("http", "slack")
PAYLOAD_FORMATS = ("Default", "CloudEvents")
PROJECT_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")

#: Keys Harbor's API returns that a user may paste back; read-only here.
POLICY_READ_ONLY_KEYS = ("id", "project_id", "creator", "creation_time", "update_time")
POLICY_KEYS = ("name", "description", "enabled", "event_types", "targets")
TARGET_KEYS = ("type", "address", "auth_header", "skip_cert_verify", "payload_format")


@dataclass(frozen=True)
class Target:
    type: str
    address: str
    auth_header: str = ""
    skip_cert_verify: bool = False
    payload_format: str = "Default"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "address": self.address}
        if self.auth_header:
            out["auth_header"] = self.auth_header
        out["skip_cert_verify"] = self.skip_cert_verify
        if self.payload_format:
            out["payload_format"] = self.payload_format
        return out


@dataclass(frozen=True)
class Policy:
    name: str
    event_types: tuple[str, ...]
    targets: tuple[Target, ...]
    description: str = ""
    enabled: bool = True
    line: int = 0


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


def check_url(address: Any) -> str | None:
    """Return Harbor's complaint about a target address, or None when it is usable."""
    if not isinstance(address, str) or not address.strip():
        return "empty URL"
    candidate = address.strip()
    if "://" not in candidate:
        # Harbor would store it and fail at delivery; say what is missing instead
        return "invalid scheme: the address must start with http:// or https://"
    try:
        parts = urlsplit(candidate)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        return f'parse "{candidate}": {exc}'
    if parts.scheme not in ("http", "https"):
        return f"invalid scheme: {parts.scheme}"
    if not parts.hostname or " " in parts.netloc:
        return f'parse "{candidate}": invalid host'
    return None


def parse_policy(raw: Any, *, allow_unknown: bool = False) -> tuple[Policy | None, list[Problem]]:
    """Validate a WebhookPolicy mapping; return the policy or the problems found.

    Harbor's order: event types, then targets. Unknown keys are refused unless
    `allow_unknown` (the REST API, like Harbor's, ignores them).
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

    if checker.problems:
        return None, checker.problems
    policy = Policy(
        name=name.strip(),
        description=description,
        enabled=enabled,
        event_types=tuple(types),
        targets=tuple(targets),
    )
    return policy, []


def _parse_target(
    raw: Any,
    policy_name: str,
    path: tuple[str | int, ...],
    checker: _Checker,
    allow_unknown: bool,
) -> Target | None:
    if not isinstance(raw, Mapping):
        checker.add(path, "a target must be a mapping")
        return None
    before = len(checker.problems)
    if not allow_unknown:
        for key in raw:
            if key not in TARGET_KEYS:
                checker.add((*path, str(key)), f"unknown key '{key}' in target")
    kind = raw.get("type", "http")
    if kind not in TARGET_TYPES:
        checker.add((*path, "type"), f"unsupported target type {kind} with policy {policy_name}")
    problem = check_url(raw.get("address"))
    if problem:
        checker.add((*path, "address"), problem)
    payload_format = raw.get("payload_format") or ""
    if kind == "slack" and payload_format:
        checker.add((*path, "payload_format"), "set payload format is not allowed for slack")
    elif payload_format and payload_format not in PAYLOAD_FORMATS:
        checker.add(
            (*path, "payload_format"), f"unsupported payload format type: {payload_format}"
        )
    if kind == "http" and not payload_format:
        payload_format = "Default"
    auth_header = raw.get("auth_header") or ""
    if not isinstance(auth_header, str):
        checker.add((*path, "auth_header"), "auth_header must be a string")
    skip = raw.get("skip_cert_verify", False)
    if not isinstance(skip, bool):
        checker.add((*path, "skip_cert_verify"), "skip_cert_verify must be true or false")
    if len(checker.problems) > before:
        return None
    return Target(
        type=kind,
        address=raw["address"].strip(),
        auth_header=auth_header,
        skip_cert_verify=skip,
        payload_format=payload_format,
    )
