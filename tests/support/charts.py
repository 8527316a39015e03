"""Real Helm chart packages built with tarfile, laid out as `helm package` lays them out."""

from __future__ import annotations

import io
import json
import os
import tarfile

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


def make_chart(name: str, version: str, *, before: dict[str, bytes] | None = None,
               files: dict[str, bytes] | None = None, fmt: int = tarfile.USTAR_FORMAT,
               chart_dir: str | None = None) -> bytes:
    """A .tgz with `<name>/Chart.yaml`, values.yaml and a template.

    `before` adds members *ahead of* Chart.yaml (helm writes Chart.yaml first; a hand-made
    package may not), `files` adds members after it.
    """
    top = chart_dir or name
    chart_yaml = (f"apiVersion: v2\nname: {name}\nversion: {version}\n"
                  f"description: A chart for the sidecar tests\ntype: application\n").encode()
    members: list[tuple[str, bytes]] = [(f"{top}/{p}", d) for p, d in (before or {}).items()]
    members += [
        (f"{top}/Chart.yaml", chart_yaml),
        (f"{top}/values.yaml", b"replicaCount: 1\n"),
        (f"{top}/templates/configmap.yaml",
         b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"),
    ]
    members += [(f"{top}/{p}", d) for p, d in (files or {}).items()]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=fmt) as tar:
        for path, data in members:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def random_bytes(size: int) -> bytes:
    """Incompressible content, so a package really is as large as asked."""
    return os.urandom(size)


def helm_config(name: str, version: str) -> bytes:
    """The OCI config blob `helm push` writes: the chart's metadata as JSON."""
    return json.dumps({"name": name, "version": version, "apiVersion": "v2",
                       "type": "application"}).encode()
