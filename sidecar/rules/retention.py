"""A project's tag retention policy: Harbor's RetentionPolicy rules, checked before they run.

The shape is Harbor's (`src/pkg/retention/policy/rule/models.go`), so rules copy to and from
Harbor's API and UI unchanged; the messages are Harbor's where Harbor has one. Harbor itself
checks only the cron and the rule count when a policy is saved and lets a bad template, param
or selector fail the job later (harbor-jobs.md 1.2); here all of it is refused up front, with
the words Harbor's job would have used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from typing import Any

from sidecar.rules.cron import CronError
from sidecar.rules.cron import validate_cron
from sidecar.rules.globs import glob_problem
from sidecar.rules.policy import Problem

ALWAYS = "always"
NOTHING = "nothing"
LATEST_PUSHED_K = "latestPushedK"
LATEST_PULLED_N = "latestPulledN"
LATEST_ACTIVE_K = "latestActiveK"
N_DAYS_SINCE_LAST_PUSH = "nDaysSinceLastPush"
N_DAYS_SINCE_LAST_PULL = "nDaysSinceLastPull"
LAST_X_DAYS = "lastXDays"
#: template -> the largest value its parameter may take (None: takes no parameter). The count
#: limits are the validators' `< math.MaxInt16`, the day limits their `<= 20190904`.
#: latestActiveK and lastXDays have no validator in Harbor; they get the same limits.
TEMPLATES: dict[str, int | None] = {
    ALWAYS: None,
    NOTHING: None,  # Harbor's evaluator exists; its registration is commented out
    LATEST_PUSHED_K: 32766,
    LATEST_PULLED_N: 32766,
    LATEST_ACTIVE_K: 32766,
    N_DAYS_SINCE_LAST_PUSH: 20190904,
    N_DAYS_SINCE_LAST_PULL: 20190904,
    LAST_X_DAYS: 20190904,
}
DOUBLESTAR = "doublestar"
TAG_DECORATIONS = ("matches", "excludes")
REPOSITORY_DECORATIONS = ("repoMatches", "repoExcludes")
#: every decoration Harbor's doublestar selector registers (ns* only mean something system-wide)
ALL_DECORATIONS = (*TAG_DECORATIONS, *REPOSITORY_DECORATIONS, "nsMatches", "nsExcludes")
MAX_RULES = 15
RETAIN = "retain"

RETENTION_KEYS = ("schedule", "rules", "algorithm", "trigger", "id", "scope")
RULE_KEYS = ("id", "priority", "disabled", "action", "template", "params", "tag_selectors",
             "scope_selectors")
SELECTOR_KEYS = ("kind", "decoration", "pattern", "extras")


@dataclass(frozen=True)
class Selector:
    """Harbor's rule.Selector. `extras` is a JSON *string* such as '{"untagged":true}'."""

    kind: str
    decoration: str
    pattern: str
    extras: str = ""

    @property
    def untagged(self) -> bool:
        """Whether untagged artifacts pass a tag selector (doublestar `New`): by default both
        `matches` and `excludes` let them through; `{"untagged": ...}` decides otherwise."""
        untagged = self.decoration != "excludes"
        if self.extras:
            try:
                extras = json.loads(self.extras)
            except ValueError:
                return untagged
            if isinstance(extras, dict):
                # Go decodes into a struct: a missing or non-bool key leaves false
                value = extras.get("untagged")
                untagged = value if isinstance(value, bool) else False
        return untagged

    def as_harbor(self) -> dict[str, str]:
        return {"kind": self.kind, "decoration": self.decoration, "pattern": self.pattern,
                "extras": self.extras}


@dataclass(frozen=True)
class RetentionRule:
    template: str
    params: dict[str, int] = field(default_factory=dict)
    tag_selectors: tuple[Selector, ...] = ()
    #: only "repository" is read at project level, as in Harbor
    scope_selectors: dict[str, tuple[Selector, ...]] = field(default_factory=dict)
    disabled: bool = False
    id: int = 0
    priority: int = 0
    action: str = RETAIN

    @property
    def value(self) -> int | None:
        """The template's number (K, N or days), or None for `always` and `nothing`."""
        return self.params.get(self.template)

    @property
    def repository_selectors(self) -> tuple[Selector, ...]:
        return self.scope_selectors.get("repository", ())

    def as_harbor(self) -> dict[str, Any]:
        """The rule as Harbor's API shows it (rules[] of RetentionPolicy)."""
        return {
            "id": self.id,
            "priority": self.priority,
            "disabled": self.disabled,
            "action": self.action,
            "template": self.template,
            "params": dict(self.params),
            "tag_selectors": [s.as_harbor() for s in self.tag_selectors],
            "scope_selectors": {key: [s.as_harbor() for s in selectors]
                                for key, selectors in self.scope_selectors.items()},
        }


@dataclass(frozen=True)
class RetentionPolicy:
    """A project's policy. `schedule` is Harbor's 6-field cron, "" for manual runs only."""

    rules: tuple[RetentionRule, ...]
    schedule: str = ""
    algorithm: str = "or"


class _Problems(list):
    def add(self, path: tuple[str | int, ...], message: str) -> None:
        self.append(Problem(path, message))


def parse_retention(raw: Any) -> tuple[RetentionPolicy | None, list[Problem]]:
    """Validate a project's `retention` section; paths in problems are relative to it.

    Besides `schedule` and `rules`, the keys of Harbor's own RetentionPolicy are accepted so a
    policy read from Harbor's API can be pasted in: `algorithm` ("or"), `trigger`
    ({kind: Schedule, settings: {cron}}), and the read-only `id` and `scope` (ignored).
    """
    problems = _Problems()
    if not isinstance(raw, Mapping):
        problems.add((), "retention must be a mapping with 'schedule' and 'rules'")
        return None, problems
    for key in raw:
        if key not in RETENTION_KEYS:
            problems.add((key,), f"unknown key '{key}' in retention (expected "
                         "'schedule' and 'rules')")
    algorithm = raw.get("algorithm", "or")
    if algorithm != "or":
        problems.add(("algorithm",), f"algorithm {algorithm!r} is not supported: only 'or'")
    schedule = _schedule(raw, problems)
    raw_rules = raw.get("rules")
    if raw_rules is None:
        raw_rules = []
    if not isinstance(raw_rules, list):
        problems.add(("rules",), "'rules' must be a list of retention rules")
        raw_rules = []
    if len(raw_rules) > MAX_RULES:
        problems.add(("rules",), f"only {MAX_RULES} rules are allowed at most")
    rules: list[RetentionRule | None] = [
        _parse_rule(raw_rule, ("rules", index), problems)
        for index, raw_rule in enumerate(raw_rules)
    ]
    _check_conflicts(rules, problems)
    if problems:
        return None, problems
    return RetentionPolicy(rules=tuple(r for r in rules if r is not None), schedule=schedule), []


def _schedule(raw: Mapping[str, Any], problems: _Problems) -> str:
    path: tuple[str | int, ...] = ("schedule",)
    cron = raw.get("schedule")
    trigger = raw.get("trigger")
    if trigger is not None:
        if "schedule" in raw:
            problems.add(("trigger",), "give either 'schedule' or Harbor's 'trigger', not both")
            return ""
        if not isinstance(trigger, Mapping) or trigger.get("kind") != "Schedule":
            problems.add(("trigger",), "trigger must be {kind: Schedule, settings: {cron: ...}}")
            return ""
        settings = trigger.get("settings") or {}
        cron = settings.get("cron") if isinstance(settings, Mapping) else None
        path = ("trigger", "settings", "cron")
    if cron is None or cron == "":
        return ""
    if not isinstance(cron, str):
        problems.add(path, "invalid cron type for scheduled tag retention: must be a string")
        return ""
    try:
        schedule = validate_cron(cron)
    except CronError as exc:
        problems.add(path, f"invalid cron string for scheduled tag retention: {cron}, "
                     f"error: {exc}")
        return ""
    if not any(schedule.next_after(start) for start in _YEARS):
        problems.add(path, f"the cron string {cron} never fires")
    return cron


#: Start points for the "never fires" check: any schedule that fires at all fires within five
#: years of one of them (29 February included: these cover a leap year each).
_YEARS = (datetime(2000, 1, 1), datetime(2096, 1, 1))


def _parse_rule(raw: Any, path: tuple[str | int, ...], problems: _Problems
                ) -> RetentionRule | None:
    if not isinstance(raw, Mapping):
        problems.add(path, "a retention rule must be a mapping with 'template', 'params', "
                     "'tag_selectors' and 'scope_selectors'")
        return None
    before = len(problems)
    for key in raw:
        if key not in RULE_KEYS:
            problems.add((*path, key), f"unknown key '{key}' in retention rule")
    template = raw.get("template")
    if template is None or template == "":
        problems.add((*path, "template"), "empty rule template ID")
    elif not isinstance(template, str) or template not in TEMPLATES:
        problems.add((*path, "template"), f"rule evaluator {template} is not registered "
                     f"(templates: {', '.join(TEMPLATES)})")
    action = raw.get("action", RETAIN)
    if action != RETAIN:
        problems.add((*path, "action"), f"action {action} is not registered")
    params = _params(raw.get("params"), template, (*path, "params"), problems)
    raw_tags = raw.get("tag_selectors")
    tag_selectors = _selectors(raw_tags, TAG_DECORATIONS, (*path, "tag_selectors"), problems)
    if not raw_tags:
        problems.add((*path, "tag_selectors"), "a rule needs at least one tag selector "
                     "(Harbor skips a rule without one), e.g. {kind: doublestar, "
                     "decoration: matches, pattern: '**'}")
    scope = _scope(raw.get("scope_selectors"), (*path, "scope_selectors"), problems)
    numbers = {}
    for key in ("id", "priority"):
        value = raw.get(key, 0)
        if not _is_int(value):
            problems.add((*path, key), f"{key} must be an integer")
        numbers[key] = value
    disabled = raw.get("disabled", False)
    if not isinstance(disabled, bool):
        problems.add((*path, "disabled"), "disabled must be true or false")
    if len(problems) > before:
        return None
    return RetentionRule(template=template, params=params, tag_selectors=tag_selectors,
                         scope_selectors=scope, disabled=disabled, id=numbers["id"],
                         priority=numbers["priority"])


def _params(raw: Any, template: Any, path: tuple[str | int, ...], problems: _Problems
            ) -> dict[str, int]:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        problems.add(path, f"params must be a mapping such as {{{LATEST_PUSHED_K}: 10}}")
        return {}
    if not isinstance(template, str) or template not in TEMPLATES:
        return {}
    limit = TEMPLATES[template]
    for key in raw:
        if key != template or limit is None:
            problems.add((*path, key), f"unknown parameter '{key}' for rule {template}"
                         + (f" (it takes {template})" if limit is not None else
                            " (it takes none)"))
    if limit is None:
        return {}
    if template not in raw:
        problems.add(path, f"missing required parameter {template} for rule {template}")
        return {}
    value = raw[template]
    if not _is_int(value):
        problems.add((*path, template), f"{template} type error: it must be a whole number")
    elif value < 0:
        problems.add((*path, template), f"{template} is less than zero")
    elif value > limit:
        problems.add((*path, template), f"{template} is too large (at most {limit})")
    else:
        return {template: value}
    return {}


def _selectors(raw: Any, decorations: tuple[str, ...], path: tuple[str | int, ...],
               problems: _Problems) -> tuple[Selector, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.add(path, "selectors must be a list of {kind, decoration, pattern, extras}")
        return ()
    out = []
    for index, item in enumerate(raw):
        selector = _selector(item, decorations, (*path, index), problems)
        if selector is not None:
            out.append(selector)
    return tuple(out)


def _selector(raw: Any, decorations: tuple[str, ...], path: tuple[str | int, ...],
              problems: _Problems) -> Selector | None:
    if not isinstance(raw, Mapping):
        problems.add(path, "a selector must be a mapping with kind, decoration and pattern")
        return None
    before = len(problems)
    for key in raw:
        if key not in SELECTOR_KEYS:
            problems.add((*path, key), f"unknown key '{key}' in selector")
    kind, decoration = raw.get("kind"), raw.get("decoration")
    if not kind or not decoration:
        problems.add(path, "empty selector kind or decoration")
    elif kind != DOUBLESTAR:
        problems.add((*path, "kind"), f"selector {kind} is not registered (use {DOUBLESTAR})")
    elif decoration not in decorations:
        where = "tag" if decorations == TAG_DECORATIONS else "repository"
        problems.add((*path, "decoration"), f"decoration {decoration} of selector {kind} is "
                     f"not supported in a {where} selector (use {' or '.join(decorations)})")
    pattern = raw.get("pattern", "")
    if pattern is None:
        pattern = ""
    if not isinstance(pattern, str):
        problems.add((*path, "pattern"), "pattern must be a string")
    elif pattern and (why := glob_problem(pattern)):
        problems.add((*path, "pattern"), why)
    extras = raw.get("extras", "")
    if extras is None:
        extras = ""
    if not isinstance(extras, str):
        problems.add((*path, "extras"), "extras must be a JSON string, e.g. "
                     "'{\"untagged\":true}'")
    elif extras and (why := _check_extras(extras)):
        problems.add((*path, "extras"), why)
    if len(problems) > before:
        return None
    return Selector(kind=kind, decoration=decoration, pattern=pattern, extras=extras)


def _check_extras(extras: str) -> str | None:
    try:
        value = json.loads(extras)
    except ValueError as exc:
        return f"extras is not JSON ({exc.msg}): {extras!r}"
    if not isinstance(value, dict):
        return f"extras must be a JSON object such as {{\"untagged\":true}}: {extras!r}"
    for key, item in value.items():
        if key != "untagged":
            return f"unknown key '{key}' in extras (only \"untagged\")"
        if not isinstance(item, bool):
            return "extras: untagged must be true or false"
    return None


def _scope(raw: Any, path: tuple[str | int, ...], problems: _Problems
           ) -> dict[str, tuple[Selector, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.add(path, "scope_selectors must be a mapping such as {repository: [...]}")
        return {}
    out = {}
    for key, selectors in raw.items():
        if key != "repository":
            problems.add((*path, key), f"unknown scope '{key}' (a project's rules select "
                         "by 'repository')")
            continue
        out[key] = _selectors(selectors, REPOSITORY_DECORATIONS, (*path, key), problems)
    return out


def _check_conflicts(rules: list[RetentionRule | None], problems: _Problems) -> None:
    """Harbor's `checkRuleConflict`: two rules equal but for their id (409 in Harbor)."""
    seen: dict[str, int] = {}
    for index, rule in enumerate(rules):
        if rule is None:
            continue
        shape = rule.as_harbor()
        shape["id"] = 0
        key = json.dumps(shape, sort_keys=True)
        if key in seen:
            problems.add(("rules", index), f"rule {index} is conflict with rule {seen[key]}")
        else:
            seen[key] = index


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
