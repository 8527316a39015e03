"""Storage quotas as an operator reads them (`sidecar quota --json`), and image sizes as Harbor
counts them (manifest + config + layers, each blob once)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support.sidecar import sidecar_command


def quotas(database: str) -> dict[str, dict[str, Any]]:
    """project -> `sidecar quota --json` row."""
    result = subprocess.run([*sidecar_command(), "quota", "--json", "--database", database],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return {row["project"]: row for row in json.loads(result.stdout)}


def settled(database: str, project: str, timeout: float = 30.0) -> dict[str, Any]:
    """The project's quota once no push holds bytes and no recalculation runs."""
    deadline = time.monotonic() + timeout
    while True:
        row = quotas(database).get(project)
        if row is not None and row["held"] == 0 and not row["recalculating"]:
            return row
        assert time.monotonic() < deadline, f"quota of {project} never settled: {row}"
        time.sleep(0.2)


def wait_used(database: str, project: str, expected: int, timeout: float = 30.0) -> bool:
    """Wait until the project's usage is `expected` (deletes settle after their answer)."""
    deadline = time.monotonic() + timeout
    while True:
        row = quotas(database).get(project)
        if row is not None and row["used"] == expected and row["held"] == 0:
            return True
        assert time.monotonic() < deadline, f"usage of {project} never became {expected}: {row}"
        time.sleep(0.2)


def recalc(database: str, project: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run([*sidecar_command(), "quota", "recalc", project, "--wait",
                           "--timeout", str(timeout), "--database", database],
                          capture_output=True, text=True, timeout=timeout + 30)


def blobs(layout: Path) -> dict[str, int]:
    """digest -> size of every blob of the layout's images (manifests, configs, layers)."""
    found: dict[str, int] = {}

    def visit(entry: dict) -> None:
        found[entry["digest"]] = entry["size"]
        manifest = json.loads((layout / "blobs" / "sha256" /
                               entry["digest"].split(":")[1]).read_bytes())
        for child in manifest.get("manifests", []):  # an image index
            visit(child)
        for item in [manifest.get("config"), *manifest.get("layers", [])]:
            if item:
                found[item["digest"]] = item["size"]

    for entry in json.loads((layout / "index.json").read_text())["manifests"]:
        visit(entry)
    return found


def size_of(*layouts: Path) -> int:
    """What the images of `layouts` count for in one project: distinct blobs once."""
    merged: dict[str, int] = {}
    for layout in layouts:
        merged.update(blobs(layout))
    return sum(merged.values())
