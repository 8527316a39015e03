"""Harbor's WebhookPolicy, validated once, with Harbor's own error messages.

The rules file and the REST API share this module, so a policy copied from one to the other is
accepted or refused for the same reason, in the same words.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

from sidecar.events.model import EVENT_TYPES
from sidecar.rules.globs import glob_problem

TARGET_TYPES = ("http", "slack")
PAYLOAD_FORMATS = ("Default", "CloudEvents")
PROJECT_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")

CLOUDEVENTS_MODES = ("structured", "binary")
SECRET_PREFIX = "whsec_"
#: Standard Webhooks: a symmetric secret is 24 to 64 random bytes.
SECRET_BYTES = (24, 64)
#: Longest pull de-duplication window: one day.
MAX_PULL_DEDUP_SECONDS = 86400

#: Keys Harbor's API returns that a user may paste back; read-only here.
POLICY_READ_ONLY_KEYS = ("id", "project_id", "creator", "creation_time", "update_time")
#: Harbor's keys, then ours (beyond Harbor: Harbor's own API ignores them).
POLICY_KEYS = ("name", "description", "enabled", "event_types", "targets", "filters",
               "pull_dedup_seconds")
TARGET_KEYS = ("type", "address", "auth_header", "skip_cert_verify", "payload_format",
               "cloudevents_mode", "secret")
FILTER_KEYS = ("repositories", "tags", "ignore_operators")


@dataclass(frozen=True)
class Target:
    type: str
    address: str
    auth_header: str = field(default="", repr=False)  # a log or traceback must not carry it
    skip_cert_verify: bool = False
    payload_format: str = "Default"
    #: CloudEvents content mode: "structured" (Harbor's, the default) or "binary".
    cloudevents_mode: str = ""
    #: Standard Webhooks signing secret (`whsec_...`); never shown, like auth_header.
    secret: str = field(default="", repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The stored form; Harbor's keys only, unless one of ours is set."""
        out: dict[str, Any] = {"type": self.type, "address": self.address}
        if self.auth_header:
            out["auth_header"] = self.auth_header
        out["skip_cert_verify"] = self.skip_cert_verify
        if self.payload_format:
            out["payload_format"] = self.payload_format
        if self.cloudevents_mode:
            out["cloudevents_mode"] = self.cloudevents_mode
        if self.secret:
            out["secret"] = self.secret
        return out


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


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret; ValueError (never quoting it) if malformed."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"secret must start with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"secret must be {SECRET_PREFIX} followed by base64") from None
    low, high = SECRET_BYTES
    if not low <= len(key) <= high:
        raise ValueError(f"secret must encode {low} to {high} bytes, not {len(key)}")
    return key


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
    mode = raw.get("cloudevents_mode") or ""
    if mode and payload_format != "CloudEvents":
        checker.add((*path, "cloudevents_mode"),
                    "cloudevents_mode needs payload_format CloudEvents")
    elif mode and mode not in CLOUDEVENTS_MODES:
        checker.add((*path, "cloudevents_mode"),
                    f"unsupported cloudevents_mode {mode} (expected structured or binary)")
    secret = raw.get("secret") or ""
    if secret and kind == "slack":
        checker.add((*path, "secret"), "set secret is not allowed for slack")
    elif secret:
        try:
            secret_key(secret)
        except ValueError as exc:
            checker.add((*path, "secret"), f"{exc} (make one with: echo whsec_$(openssl rand "
                        "-base64 32))")
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
        cloudevents_mode=mode,
        secret=secret,
    )
