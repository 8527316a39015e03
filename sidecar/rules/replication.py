"""The rules file's `replication:` section: Harbor's replication policies, push mode.

Each entry is Harbor's ReplicationPolicy object with `dest_registry` naming an entry of
`registries:` (the file's way of writing `{"id": N}`), checked as Harbor's API checks a policy,
with Harbor's messages. What this sidecar cannot do is refused with a reason rather than
accepted and ignored: a source registry (pull mode), label filters (a plain registry has no
labels). Matching (which repositories and tags a policy selects) is here too, pure, so the
event trigger and the planner of manual runs read filters the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.rules.cron import parse_cron
from sidecar.rules.globs import glob_match
from sidecar.rules.globs import glob_problem
from sidecar.rules.policy import Problem
from sidecar.rules.registries import Registry

MANUAL = "manual"
SCHEDULED = "scheduled"
EVENT_BASED = "event_based"
TRIGGER_TYPES = (MANUAL, SCHEDULED, EVENT_BASED)
NAME, TAG, LABEL, RESOURCE = "name", "tag", "label", "resource"
MATCHES, EXCLUDES = "matches", "excludes"
POLICY_KEYS = ("name", "description", "enabled", "src_registry", "dest_registry",
               "dest_namespace", "dest_namespace_replace_count", "trigger", "filters",
               "replicate_deletion", "deletion", "override", "speed", "copy_by_chunk",
               "single_active_replication")
#: distribution's repository path grammar (no domain): what a destination namespace must be
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
MAX_SPEED = 2**31 - 1


@dataclass(frozen=True)
class Filter:
    """Harbor's filter object: `name` and `tag` globs (doublestar), `resource` (ignored)."""

    type: str
    value: str
    decoration: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "value": self.value}
        if self.decoration:
            out["decoration"] = self.decoration
        return out


@dataclass(frozen=True)
class ReplicationPolicy:
    """One push-mode replication policy (Harbor's ReplicationPolicy, from the file)."""

    name: str
    dest_registry: str
    description: str = ""
    enabled: bool = True
    dest_namespace: str = ""
    dest_namespace_replace_count: int = -1  # Harbor's default: flatten every namespace
    trigger: str = MANUAL
    cron: str = ""
    filters: tuple[Filter, ...] = ()
    replicate_deletion: bool = False
    override: bool = True
    speed: int = 0  # KB/s per task; 0 = unlimited (Harbor stores a negative speed as 0)
    copy_by_chunk: bool = False
    single_active_replication: bool = False
    line: int = 0

    # -- matching (pure) -------------------------------------------------------------------
    def selects_repository(self, repository: str) -> bool:
        """The name filters, read as Harbor's: a glob over the full path, project included;
        an empty pattern selects everything."""
        return all(not f.value or glob_match(f.value, repository)
                   for f in self.filters if f.type == NAME)

    def selected_tags(self, tags: Iterable[str]) -> tuple[str, ...] | None:
        """The tags of one artifact the tag filters keep; () for an untagged artifact that
        passes (it is replicated by digest), None when the artifact is not selected."""
        kept = tuple(tags)
        for rule in (f for f in self.filters if f.type == TAG and f.value):
            if not kept:  # untagged: tested as the empty string ("**" passes, "v*" not)
                if not tags_passed(rule, ("",)):
                    return None
                continue
            kept = tags_passed(rule, kept)
            if not kept:  # every tag filtered out: the artifact is not selected
                return None
        return kept

    def filters_dict(self) -> list[dict[str, Any]]:
        return [f.as_dict() for f in self.filters]


def tags_passed(rule: Filter, tags: tuple[str, ...]) -> tuple[str, ...]:
    if rule.decoration == EXCLUDES:
        return tuple(t for t in tags if not glob_match(rule.value, t))
    return tuple(t for t in tags if glob_match(rule.value, t))


def destination_repository(repository: str, namespace: str, replace_count: int) -> str:
    """Harbor's replaceNamespace: where `repository` lands with `dest_namespace`.

    Raises ValueError (Harbor's message) when the count asks for more components than the
    source path has.
    """
    if not namespace:
        return repository
    parts = repository.split("/")
    last = parts[-1]
    if replace_count < 0:
        return f"{namespace}/{last}"
    middle = parts[:-1]
    if replace_count > len(middle):
        raise ValueError(
            f'the source repository "{repository}" contains only {len(middle)} path components '
            f"{middle} excepting the last one, but the destination namespace flattening level "
            f"is {replace_count}")
    return "/".join([namespace, *middle[replace_count:], last])


def parse_replication(raw: Any, registries: tuple[Registry, ...] | None
                      ) -> tuple[tuple[ReplicationPolicy, ...], list[Problem]]:
    """Validate the `replication:` list; paths relative to the section: `(index, key, ...)`.

    `registries` None means that section is broken: `dest_registry` names are then not
    checked (its own problems say what is wrong).
    """
    problems: list[Problem] = []
    if raw is None:
        return (), problems
    if not isinstance(raw, list):
        return (), [Problem((), "'replication' must be a list of replication policies")]
    policies: list[ReplicationPolicy] = []
    names: set[str] = set()
    for index, item in enumerate(raw):
        policy = _parse_policy(item, index, registries, problems)
        if policy is None:
            continue
        if policy.name in names:
            problems.append(Problem((index, "name"),
                                    f"replication policy {policy.name} already exists"))
            continue
        names.add(policy.name)
        policies.append(policy)
    return tuple(policies), problems


def _parse_policy(raw: Any, index: int, registries: tuple[Registry, ...] | None,
                  problems: list[Problem]) -> ReplicationPolicy | None:
    def add(path: tuple[str | int, ...], message: str) -> None:
        problems.append(Problem((index, *path), message))

    if not isinstance(raw, Mapping):
        add((), "a replication policy must be a mapping with 'name' and 'dest_registry'")
        return None
    before = len(problems)
    for key in raw:
        if key not in POLICY_KEYS:
            add((str(key),), f"unknown key '{key}' in replication policy")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        add(("name",), "empty name")
        name = ""
    if raw.get("src_registry") is not None:
        add(("src_registry",), "pull-mode replication (src_registry) is not supported: the "
            "sidecar replicates what is pushed to it to a dest_registry")
    dest = raw.get("dest_registry")
    if isinstance(dest, Mapping):  # Harbor's {"name": ...} form, as its API answers it
        dest = dest.get("name")
    if not isinstance(dest, str) or not dest.strip():
        add(("dest_registry",), "either src_registry or dest_registry should be empty and "
            "the other one shouldn't be empty")
        dest = ""
    elif registries is not None and dest.strip() not in {r.name for r in registries}:
        declared = ", ".join(r.name for r in registries) or "none"
        add(("dest_registry",), f"registry {dest.strip()} not found (declared under "
            f"'registries': {declared})")
    strings = {}
    for key in ("description", "dest_namespace"):
        value = raw.get(key) or ""
        if not isinstance(value, str):
            add((key,), f"{key} must be a string")
            value = ""
        strings[key] = value
    namespace = strings["dest_namespace"]
    if namespace and not REPOSITORY_PATH.match(namespace):
        add(("dest_namespace",), f"invalid destination namespace: {namespace}")
    count = raw.get("dest_namespace_replace_count", -1)
    count = -1 if count is None else count
    if isinstance(count, bool) or not isinstance(count, int) or not -1 <= count <= 127:
        add(("dest_namespace_replace_count",), "dest_namespace_replace_count must be a whole "
            "number from -1 (flatten every namespace) to 127")
        count = -1
    trigger, cron = _parse_trigger(raw.get("trigger"), add)
    filters = _parse_filters(raw.get("filters"), add)
    flags = _flags(raw, add)
    speed = raw.get("speed", 0)
    speed = 0 if speed is None else speed
    if isinstance(speed, bool) or not isinstance(speed, int) or speed > MAX_SPEED:
        add(("speed",), "speed must be a whole number of KB/s (-1 or 0: unlimited)")
        speed = 0
    if flags["single_active_replication"] and trigger == EVENT_BASED:
        add(("single_active_replication",), "single active replication is not allowed for "
            "event_based triggers")
    if len(problems) > before:
        return None
    return ReplicationPolicy(
        name=name.strip(), dest_registry=dest.strip(), description=strings["description"],
        dest_namespace=namespace, dest_namespace_replace_count=count, trigger=trigger,
        cron=cron, filters=filters, speed=max(0, speed), **flags)


def _flags(raw: Mapping[str, Any], add) -> dict[str, bool]:
    defaults = {"enabled": True, "override": True, "copy_by_chunk": False,
                "single_active_replication": False}
    out: dict[str, bool] = {}
    for key, default in defaults.items():
        value = raw.get(key, default)
        if not isinstance(value, bool):
            add((key,), f"{key} must be true or false")
            value = default
        out[key] = value
    # Harbor's request field is `deletion`, its answers say `replicate_deletion`: take either
    deletion = {k: raw[k] for k in ("replicate_deletion", "deletion") if k in raw}
    for key, value in deletion.items():
        if not isinstance(value, bool):
            add((key,), f"{key} must be true or false")
    values = {v for v in deletion.values() if isinstance(v, bool)}
    if len(values) > 1:
        add(("deletion",), "deletion and replicate_deletion disagree: write one of them")
    out["replicate_deletion"] = values == {True}
    return out


def _parse_trigger(raw: Any, add) -> tuple[str, str]:
    if raw is None:
        return MANUAL, ""
    if not isinstance(raw, Mapping):
        add(("trigger",), "trigger must be a mapping: {type: manual | scheduled | "
            "event_based}")
        return MANUAL, ""
    for key in raw:
        if key not in ("type", "trigger_settings"):
            add(("trigger", str(key)), f"unknown key '{key}' in trigger (expected type, "
                "trigger_settings)")
    kind = raw.get("type") or MANUAL
    if kind not in TRIGGER_TYPES:
        add(("trigger", "type"), "invalid trigger type")
        return MANUAL, ""
    settings = raw.get("trigger_settings") or {}
    if not isinstance(settings, Mapping):
        add(("trigger", "trigger_settings"), "trigger_settings must be a mapping with cron")
        settings = {}
    cron = settings.get("cron") or ""
    if not isinstance(cron, str):
        add(("trigger", "trigger_settings", "cron"), "cron must be a string")
        cron = ""
    if kind != SCHEDULED:
        return kind, ""
    complaint = cron_problem(cron)
    if complaint:
        add(("trigger", "trigger_settings", "cron") if cron else ("trigger",), complaint)
    return kind, cron.strip()


def cron_problem(cron: str) -> str | None:
    """Harbor's checks of a replication schedule (controller/replication/model Validate)."""
    if not cron.strip():
        return "the cron string cannot be empty when the trigger type is scheduled"
    fields = cron.split(" ")
    if len(cron.split()) != 6 or cron.startswith(("@", "TZ=", "CRON_TZ=")):
        return f"invalid cron string for scheduled trigger: {cron}"
    try:
        parse_cron(cron)
    except ValueError:
        return f"invalid cron string for scheduled trigger: {cron}"
    if fields[0] != "0":
        return "the 1st field (indicating Seconds of time) of the cron setting must be 0"
    if len(fields) > 1 and fields[1] == "*":
        return "* is not allowed for the Minutes field of the cron setting of replication policy"
    return None


def _parse_filters(raw: Any, add) -> tuple[Filter, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        add(("filters",), "filters must be a list of {type, value, decoration}")
        return ()
    filters: list[Filter] = []
    for index, item in enumerate(raw):
        path = ("filters", index)
        if not isinstance(item, Mapping):
            add(path, "a filter must be a mapping with type and value")
            continue
        for key in item:
            if key not in ("type", "value", "decoration"):
                add((*path, str(key)), f"unknown key '{key}' in filter (expected type, value, "
                    "decoration)")
        kind = item.get("type")
        value = item.get("value", "")
        value = "" if value is None else value
        decoration = item.get("decoration") or ""
        if kind == LABEL:
            add((*path, "type"), "label filters are not supported: a plain registry has no "
                "labels (filter by name and tag)")
            continue
        if kind not in (NAME, TAG, RESOURCE):
            add((*path, "type"), "invalid filter type")
            continue
        if not isinstance(value, str):
            add((*path, "value"), "the type of filter value isn't string")
            continue
        if kind == RESOURCE and value not in ("image", "artifact"):
            add((*path, "value"), f"invalid resource filter: {value}")
            continue
        if kind in (NAME, RESOURCE) and decoration:
            add((*path, "decoration"), "only tag and label filter support decoration")
            continue
        if decoration and decoration not in (MATCHES, EXCLUDES):
            add((*path, "decoration"), f"invalid filter decoration, :{decoration}")
            continue
        if kind in (NAME, TAG) and value:
            problem = glob_problem(value)
            if problem:
                add((*path, "value"), problem)
                continue
        filters.append(Filter(type=kind, value=value, decoration=decoration))
    return tuple(filters)
