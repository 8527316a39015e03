"""What a chart package, a repository index and a version listing say. Pure.

A chart's name and version come from its `Chart.yaml` on upload, from the repository's
index.yaml (else the file name) on download, and from ChartMuseum's version listing when Harbor's
whole-chart delete removes every version.
"""

from __future__ import annotations

import json
import re

import yaml

# SemVer 2.0.0 (semver.org's recommended expression), for splitting `<name>-<version>.tgz`.
_SEMVER = re.compile(
    r"^(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)"
    r"(?:-(?:(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?$"
)


def chart_metadata(chart_yaml: bytes) -> tuple[str, str] | None:
    """(name, version) from a Chart.yaml, or None when it does not name both.

    Read with YAML's BaseLoader: every scalar stays a string, so `version: 1.10` is "1.10",
    not the float 1.1.
    """
    try:
        data = yaml.load(chart_yaml, Loader=yaml.BaseLoader)  # BaseLoader: strings only, no tags
    except yaml.YAMLError:
        return None
    if not isinstance(data, dict):
        return None
    name, version = data.get("name"), data.get("version")
    if not isinstance(name, str) or not isinstance(version, str):
        return None
    name, version = name.strip(), version.strip()
    if not name or not version or "/" in name or "/" in version:
        return None
    return name, version


def split_filename(filename: str) -> tuple[str, str] | None:
    """Split `<name>-<version>.tgz` at the first dash followed by a full SemVer.

    The fallback when the index does not know the file: chart names and pre-releases both
    contain dashes (`my-chart-1.2.3-rc.1.tgz`), and the first split whose rest is a SemVer is
    the only reading in which the name is not itself versioned.
    """
    if not filename.endswith(".tgz"):
        return None
    stem = filename[: -len(".tgz")]
    for index, char in enumerate(stem):
        if char == "-" and index > 0 and _SEMVER.match(stem[index + 1:]):
            return stem[:index], stem[index + 1:]
    return None


def index_files(index_yaml: bytes) -> dict[str, tuple[str, str]]:
    """Map each chart file an index.yaml lists to its (name, version)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(index_yaml, Loader=loader)
    except yaml.YAMLError:
        return {}
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        return {}
    files: dict[str, tuple[str, str]] = {}
    for key, versions in entries.items():
        for item in versions if isinstance(versions, list) else []:
            if not isinstance(item, dict):
                continue
            name = str(item.get("name") or key)
            version = item.get("version")
            if version is None:
                continue
            version = str(version)
            files.setdefault(f"{name}-{version}.tgz", (name, version))
            for url in item.get("urls") or []:
                if isinstance(url, str) and url:
                    files[url.rstrip("/").rsplit("/", 1)[-1]] = (name, version)
    return files


def versions_from_listing(body: bytes) -> list[str]:
    """Versions from ChartMuseum's `GET /api/<repo>/charts/<name>` answer (a JSON list)."""
    try:
        items = json.loads(body)
    except ValueError:
        return []
    if not isinstance(items, list):
        return []
    return [str(i["version"]) for i in items if isinstance(i, dict) and i.get("version")]
