"""Read a rules file into projects and policies, naming the file and line of every mistake.

A broken file is refused as a whole: the caller keeps the last good rules in force.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from sidecar.rules import lined_yaml
from sidecar.rules.lined_yaml import LineDict
from sidecar.rules.lined_yaml import LineList
from sidecar.rules.policy import PROJECT_NAME
from sidecar.rules.policy import Policy
from sidecar.rules.policy import parse_policy
from sidecar.rules.quota import QuotaRule
from sidecar.rules.quota import parse_quota
from sidecar.rules.registries import Registry
from sidecar.rules.registries import parse_registries
from sidecar.rules.replication import ReplicationPolicy
from sidecar.rules.replication import parse_replication
from sidecar.rules.retention import RetentionPolicy
from sidecar.rules.retention import parse_retention
from sidecar.rules.scanners import PROJECT_SCAN_KEYS
from sidecar.rules.scanners import Scanner
from sidecar.rules.scanners import parse_project_scanning
from sidecar.rules.scanners import parse_scanners

PROJECT_KEYS = ("name", "public", "webhooks", "quota", *PROJECT_SCAN_KEYS, "retention")
TOP_LEVEL_KEYS = ("projects", "scanners", "registries", "replication")
_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Project:
    name: str
    public: bool
    policies: tuple[Policy, ...]
    auto_scan: bool = False
    scanner: str = ""  # "" = the default scanner
    quota: QuotaRule | None = None
    retention: RetentionPolicy | None = None


@dataclass(frozen=True)
class Rules:
    projects: tuple[Project, ...]
    source: str = ""
    scanners: tuple[Scanner, ...] = ()
    registries: tuple[Registry, ...] = ()
    replication: tuple[ReplicationPolicy, ...] = ()

    def project(self, name: str) -> Project | None:
        for project in self.projects:
            if project.name == name:
                return project
        return None


class RulesError(ValueError):
    """The rules file cannot be used; `problems` lists `file:line: reason` strings."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _line_of(root: Any, path: tuple[str | int, ...]) -> int:
    """Line of the deepest node along `path` that we know a line for."""
    node, line = root, getattr(root, "line", 1)
    for step in path:
        if isinstance(node, LineDict) and step in node:
            line = node.key_lines.get(step, line)
            node = node[step]
        elif isinstance(node, LineList) and isinstance(step, int) and step < len(node):
            line = node.item_lines[step]
            node = node[step]
        else:
            break
        if isinstance(node, (LineDict, LineList)) and not isinstance(step, str):
            line = node.line
    return line


def expand_env(value: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """Replace `${VAR}` (or `${VAR:-default}`) from the environment; `$$` is a literal `$`.

    As in the shell and docker compose, the default also replaces a variable set to "".

    Returns the text and the names that were neither set nor given a default.
    """
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if default is not None and not environ.get(name):
            return default
        if name not in environ:
            missing.append(name)
            return ""
        return environ[name]

    return _ENV_REF.sub(replace, value), missing


def rules_fingerprint(data: bytes, environ: Mapping[str, str] | None = None) -> str:
    """A digest of a rules file's bytes and of the environment values it refers to (`${VAR}`).

    Equal digests mean the same rules: a sidecar whose store already holds rules of this
    digest need not read 10,000 policies again (a start, or another worker's reload).
    """
    environ = os.environ if environ is None else environ
    digest = hashlib.sha256(data)
    text = data.decode("utf-8", "replace")
    for name in sorted({m.group(1) for m in _ENV_REF.finditer(text) if m.group(1)}):
        value = environ.get(name)
        digest.update(f"\0{name}".encode() + (b"\0unset" if value is None
                                                else b"=" + value.encode()))
    return digest.hexdigest()


def load_rules(path: str, environ: Mapping[str, str] | None = None) -> Rules:
    """Read and validate the rules file at `path`; raise RulesError naming file and line."""
    return parse_rules(read_rules(path).decode("utf-8"), path,
                       os.environ if environ is None else environ)


def read_rules(path: str) -> bytes:
    """The rules file's bytes; RulesError if it cannot be read (or is not UTF-8)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        data.decode("utf-8")
    except OSError as exc:
        raise RulesError([f"{path}: cannot read rules file: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise RulesError([f"{path}: the rules file is not UTF-8: {exc}"]) from exc
    return data


def parse_rules(text: str, source: str, environ: Mapping[str, str]) -> Rules:
    """Validate rules text; every problem found is reported, not just the first."""
    try:
        root = lined_yaml.load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise RulesError([f"{source}:{line}: {exc.problem or exc}"]) from exc
    except yaml.YAMLError as exc:
        raise RulesError([f"{source}: {exc}"]) from exc

    problems: list[str] = []
    refers = "$" in text  # `${VAR}` (or `$$`) somewhere

    def report(path: tuple[str | int, ...], message: str) -> None:
        problems.append(f"{source}:{_line_of(root, path)}: {message}")

    if root is None:
        root = LineDict(projects=[])
        root.key_lines = {}
    if not isinstance(root, dict):
        raise RulesError([f"{source}:1: the rules file must be a mapping with a 'projects' list"])
    for key in root:
        if key not in TOP_LEVEL_KEYS:
            expected = " or ".join(f"'{k}'" for k in TOP_LEVEL_KEYS)
            report((key,), f"unknown top-level key '{key}' (expected {expected})")
    scanners = _scanners(root, environ, report)
    registries = _section(root, "registries", environ, report, parse_registries)
    replication = _section(root, "replication", environ, report,
                           lambda raw: parse_replication(raw, registries))
    raw_projects = root.get("projects") or []
    if not isinstance(raw_projects, list):
        report(("projects",), "'projects' must be a list")
        raw_projects = []

    projects: list[Project] = []
    seen_projects: set[str] = set()
    for p_index, raw_project in enumerate(raw_projects):
        base: tuple[str | int, ...] = ("projects", p_index)
        if not isinstance(raw_project, dict):
            report(base, "a project must be a mapping with 'name', 'public' and 'webhooks'")
            continue
        for key in raw_project:
            if key not in PROJECT_KEYS:
                report((*base, key), f"unknown key '{key}' in project")
        name = raw_project.get("name")
        if not isinstance(name, str) or not PROJECT_NAME.match(name):
            report((*base, "name"), f"invalid project name {name!r}: use lower-case letters, "
                   "digits and . _ - between them")
            name = None
        elif name in seen_projects:
            report((*base, "name"), f"project '{name}' is declared twice")
        else:
            seen_projects.add(name)
        public = raw_project.get("public", False)
        if not isinstance(public, bool):
            report((*base, "public"), "public must be true or false")
        raw_hooks = raw_project.get("webhooks") or []
        if not isinstance(raw_hooks, list):
            report((*base, "webhooks"), "'webhooks' must be a list of webhook policies")
            raw_hooks = []
        policies: list[Policy] = []
        names: set[str] = set()
        for h_index, raw_hook in enumerate(raw_hooks):
            hook_path = (*base, "webhooks", h_index)
            # a file without `$` has nothing to expand: 10,000 policies need not be copied
            expanded, missing = _expand_tree(raw_hook, environ) if refers else (raw_hook, [])
            for var, sub_path in missing:
                report((*hook_path, *sub_path), f"environment variable {var} is not set")
            policy, policy_problems = parse_policy(expanded)
            for problem in policy_problems:
                report((*hook_path, *problem.path), problem.message)
            if policy is None:
                continue
            if policy.name in names:
                report((*hook_path, "name"),
                       f"notification policy named {policy.name} already exists")
                continue
            names.add(policy.name)
            policies.append(_with_line(policy, _line_of(root, hook_path)))
        scanning, found = parse_project_scanning(raw_project, scanners)
        for problem in found:
            report((*base, *problem.path), problem.message)
        quota = _quota(raw_project.get("quota"), base, environ, report)
        retention = None
        if raw_project.get("retention") is not None:
            retention, found = parse_retention(raw_project["retention"])
            for problem in found:
                report((*base, "retention", *problem.path), problem.message)
        if name:
            projects.append(Project(name=name, public=bool(public), policies=tuple(policies),
                                    auto_scan=scanning.auto_scan, scanner=scanning.scanner,
                                    quota=quota, retention=retention))
    if problems:
        raise RulesError(problems)
    return Rules(projects=tuple(projects), source=source, scanners=scanners or (),
                 registries=registries or (), replication=replication or ())


def _scanners(root: Any, environ: Mapping[str, str], report) -> tuple[Scanner, ...] | None:
    """The `scanners:` section (None when broken: projects then skip their name checks)."""
    expanded, missing = _expand_tree(root.get("scanners"), environ)
    for var, sub_path in missing:
        report(("scanners", *sub_path), f"environment variable {var} is not set")
    scanners, found = parse_scanners(expanded)
    unset = {tuple(sub_path) for _, sub_path in missing}
    for problem in found:
        if problem.path not in unset:  # already said: the variable is not set
            report(("scanners", *problem.path), problem.message)
    if found or missing:
        return None
    return tuple(dataclasses.replace(s, line=_line_of(root, ("scanners", i)))
                 for i, s in enumerate(scanners))


def _quota(raw: Any, base: tuple[str | int, ...], environ: Mapping[str, str],
           report) -> QuotaRule | None:
    """A project's `quota:` section (rules.quota), None when absent or broken."""
    if raw is None:
        return None
    expanded, missing = _expand_tree(raw, environ)
    for var, sub_path in missing:
        report((*base, "quota", *sub_path), f"environment variable {var} is not set")
    quota, found = parse_quota(expanded)
    for problem in found:
        report((*base, "quota", *problem.path), problem.message)
    return quota


def _section(root: Any, key: str, environ: Mapping[str, str], report, parse
             ) -> tuple[Any, ...] | None:
    """A list section whose items remember their line (registries, replication); None when
    broken, so sections naming its items skip their name checks."""
    expanded, missing = _expand_tree(root.get(key), environ)
    for var, sub_path in missing:
        report((key, *sub_path), f"environment variable {var} is not set")
    items, found = parse(expanded)
    unset = {tuple(sub_path) for _, sub_path in missing}
    for problem in found:
        if problem.path not in unset:
            report((key, *problem.path), problem.message)
    if found or missing:
        return None
    return tuple(dataclasses.replace(item, line=_line_of(root, (key, i)))
                 for i, item in enumerate(items))


def _with_line(policy: Policy, line: int) -> Policy:
    # replace() keeps every field, including ones added to Policy later
    return dataclasses.replace(policy, line=line)


def _expand_tree(
    value: Any, environ: Mapping[str, str], path: tuple[str | int, ...] = ()
) -> tuple[Any, list[tuple[str, tuple[str | int, ...]]]]:
    """Expand `${VAR}` in every string of a policy; plain dicts and lists come out."""
    missing: list[tuple[str, tuple[str | int, ...]]] = []
    if isinstance(value, str):
        text, names = expand_env(value, environ)
        return text, [(name, path) for name in names]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out[key], sub = _expand_tree(item, environ, (*path, key))
            missing.extend(sub)
        return out, missing
    if isinstance(value, list):
        items = []
        for index, item in enumerate(value):
            expanded, sub = _expand_tree(item, environ, (*path, index))
            items.append(expanded)
            missing.extend(sub)
        return items, missing
    return value, missing
