"""A small ChartMuseum-compatible chart server for the tests (no ChartMuseum binary installs here).

Only what the sidecar proxies, with ChartMuseum's documented routes, status codes and bodies
(helm/chartmuseum README, pkg/chartmuseum/server/multitenant): `--depth N` tenancy,
index.yaml generation, uploads as a raw body or multipart `chart`/`prov` fields, 409 on an
existing version unless `?force`, delete of one version. It runs as a real HTTP server on a
free loopback port and records every request it got.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import http.server
import io
import json
import tarfile
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qs
from urllib.parse import unquote
from urllib.parse import urlsplit

import yaml

from tests.support.ports import free_port


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class StoredChart:
    name: str
    version: str
    package: bytes
    metadata: dict
    created: str


def read_chart_yaml(package: bytes) -> dict:
    """Chart.yaml of a .tgz, as ChartMuseum's ChartVersionFromStorageObject reads it."""
    with tarfile.open(fileobj=io.BytesIO(package), mode="r:gz") as tar:
        for member in tar:
            parts = member.name.lstrip("./").split("/")
            if len(parts) == 2 and parts[1] == "Chart.yaml" and member.isfile():
                return yaml.safe_load(tar.extractfile(member).read()) or {}
    raise ValueError("chart package has no Chart.yaml")


class ChartMuseum:
    def __init__(self, depth: int = 0, port: int | None = None):
        self.depth = depth
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.charts: dict[str, dict[tuple[str, str], StoredChart]] = {}  # repo -> charts
        self.provs: dict[str, dict[str, bytes]] = {}
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None

    # -- storage ---------------------------------------------------------------------------
    def stored(self, repo: str = "") -> dict[tuple[str, str], StoredChart]:
        with self._lock:
            return dict(self.charts.get(repo, {}))

    def index(self, repo: str) -> dict:
        entries: dict[str, list] = {}
        for chart in sorted(self.stored(repo).values(), key=lambda c: (c.name, c.version)):
            entries.setdefault(chart.name, []).append(self._version_doc(chart))
        return {"apiVersion": "v1", "entries": entries,
                "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    @staticmethod
    def _version_doc(chart: StoredChart) -> dict:
        return {**chart.metadata, "name": chart.name, "version": chart.version,
                "urls": [f"charts/{chart.name}-{chart.version}.tgz"],
                "created": chart.created,
                "digest": hashlib.sha256(chart.package).hexdigest()}

    def save(self, repo: str, package: bytes, force: bool) -> tuple[int, dict]:
        try:
            metadata = read_chart_yaml(package)
            name, version = str(metadata["name"]), str(metadata["version"])
        except (ValueError, KeyError, tarfile.TarError, OSError, EOFError) as exc:
            return 400, {"error": f"{exc}"}
        with self._lock:
            charts = self.charts.setdefault(repo, {})
            if (name, version) in charts and not force:
                return 409, {"error": f"{name}-{version}.tgz already exists"}
            charts[(name, version)] = StoredChart(
                name, version, package, metadata,
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        return 201, {"saved": True}

    # -- server ----------------------------------------------------------------------------
    def start(self) -> ChartMuseum:
        museum = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                seen = Seen(self.command, self.path,
                            {k.lower(): v for k, v in self.headers.items()}, body)
                with museum._lock:
                    museum.requests.append(seen)
                status, ctype, payload = museum.route(
                    self.command, unquote(parts.path), parse_qs(parts.query,
                                                                keep_blank_values=True),
                    self.headers.get("Content-Type", ""), body)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_HEAD = do_POST = do_DELETE = do_PUT = _handle  # noqa: N815

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- routes ----------------------------------------------------------------------------
    def route(self, method: str, path: str, query: dict, ctype: str, body: bytes
              ) -> tuple[int, str, bytes]:
        segments = path.strip("/").split("/") if path.strip("/") else []
        if method in ("GET", "HEAD") and path == "/health":
            return _json(200, {"healthy": True})
        if method in ("GET", "HEAD") and path == "/info":
            return _json(200, {"version": "v0.16.2-test"})
        if segments[:1] == ["api"]:
            rest = segments[1:]
            if len(rest) <= self.depth:
                return _json(404, {"error": "not found"})
            repo, rest = "/".join(rest[: self.depth]), rest[self.depth:]
            return self._api(method, repo, rest, query, ctype, body)
        if len(segments) <= self.depth:
            return _json(404, {"error": "not found"})
        repo, rest = "/".join(segments[: self.depth]), segments[self.depth:]
        if method in ("GET", "HEAD") and rest == ["index.yaml"]:
            text = yaml.safe_dump(self.index(repo), sort_keys=False).encode()
            return 200, "application/x-yaml", text
        if method in ("GET", "HEAD") and len(rest) == 2 and rest[0] == "charts":
            return self._file(repo, rest[1])
        return _json(404, {"error": "not found"})

    def _file(self, repo: str, filename: str) -> tuple[int, str, bytes]:
        if filename.endswith(".prov"):
            prov = self.provs.get(repo, {}).get(filename)
            if prov is None:
                return _json(404, {"error": "not found"})
            return 200, "application/octet-stream", prov
        for chart in self.stored(repo).values():
            if f"{chart.name}-{chart.version}.tgz" == filename:
                return 200, "application/x-tar", chart.package
        return _json(404, {"error": "not found"})

    def _api(self, method: str, repo: str, rest: list[str], query: dict, ctype: str,
             body: bytes) -> tuple[int, str, bytes]:
        charts = self.stored(repo)
        if rest == ["charts"] and method == "POST":
            return self._upload(repo, query, ctype, body)
        if rest == ["prov"] and method == "POST":
            return self._save_prov(repo, body)
        if rest == ["charts"] and method in ("GET", "HEAD"):
            listing: dict[str, list] = {}
            for chart in sorted(charts.values(), key=lambda c: (c.name, c.version)):
                listing.setdefault(chart.name, []).append(self._version_doc(chart))
            return _json(200, listing)
        if len(rest) == 2 and rest[0] == "charts" and method in ("GET", "HEAD"):
            versions = [self._version_doc(c) for (n, _), c in sorted(charts.items())
                        if n == rest[1]]
            if not versions:
                return _json(404, {"error": "chart not found"})
            return _json(200, versions)
        if len(rest) == 3 and rest[0] == "charts":
            key = (rest[1], rest[2])
            if method in ("GET", "HEAD"):
                if key not in charts:
                    return _json(404, {"error": "improper constraint: " + rest[2]})
                return _json(200, self._version_doc(charts[key]))
            if method == "DELETE":
                with self._lock:
                    if key not in self.charts.get(repo, {}):
                        return _json(404, {"error": f"remove {rest[1]}-{rest[2]}.tgz: "
                                                    "no such file or directory"})
                    del self.charts[repo][key]
                return _json(200, {"deleted": True})
        return _json(404, {"error": "not found"})

    def _upload(self, repo: str, query: dict, ctype: str, body: bytes
                ) -> tuple[int, str, bytes]:
        force = "force" in query
        if ctype.startswith("multipart/form-data"):
            fields = _multipart(ctype, body)
            chart, prov = fields.get("chart"), fields.get("prov")
            if chart is None and prov is None:
                return _json(400, {"error": "no package or provenance file found in form "
                                            "fields chart and prov"})
            if chart is not None:
                status, answer = self.save(repo, chart, force)
                if status != 201:
                    return _json(status, answer)
            if prov is not None:
                self._save_prov(repo, prov)
            return _json(201, {"saved": True})
        status, answer = self.save(repo, body, force)
        return _json(status, answer)

    def _save_prov(self, repo: str, prov: bytes) -> tuple[int, str, bytes]:
        # the provenance names its chart file in its signed body; the tests name it first
        name = prov.split(b"\n", 1)[0].decode(errors="replace").strip() or "unnamed"
        with self._lock:
            self.provs.setdefault(repo, {})[f"{name}.prov"] = prov
        return _json(201, {"saved": True})


def _json(status: int, value) -> tuple[int, str, bytes]:
    return status, "application/json; charset=utf-8", json.dumps(value).encode()


def _multipart(ctype: str, body: bytes) -> dict[str, bytes]:
    head = f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name and name not in fields:
            fields[name] = part.get_payload(decode=True) or b""
    return fields
