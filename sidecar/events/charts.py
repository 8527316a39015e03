"""Helm charts: which paths are chart routes, what a chart exchange means, and its payload.

Pure (no I/O). Three ways a chart reaches the sidecar, one event model for all:
- ChartMuseum's API at depth 0 (`/charts/x.tgz`, `/api/charts`) or depth N (`/<repo>/charts/...`,
  `/api/<repo>/charts`), where `<repo>` has exactly N segments;
- Harbor's legacy chart repository (`/chartrepo/<project>/...`, `/api/chartrepo/<project>/...`,
  also under `/api/v2.0/`), which Harbor forwarded to its ChartMuseum as depth-1 routes;
- OCI charts pushed to `/v2/` (a manifest whose config is Helm's), seen by the artifact path.

Payloads follow Harbor 2.7's `constructChartPayload`: one resource per version, `tag` = version,
`resource_url` = the chart's download URL *with* scheme (Harbor used ExtEndpoint here), no
digest, no `date_created`. Chart size, when known, goes to `custom_attributes["size"]` as the
artifact events carry theirs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import yaml

from sidecar.events.manifest import parse_manifest
from sidecar.events.model import DELETE_ARTIFACT
from sidecar.events.model import DELETE_CHART
from sidecar.events.model import DOWNLOAD_CHART
from sidecar.events.model import PULL_ARTIFACT
from sidecar.events.model import PUSH_ARTIFACT
from sidecar.events.model import UPLOAD_CHART
from sidecar.events.model import ArtifactEvent
from sidecar.events.model import InProject
from sidecar.events.operator import operator_from_authorization

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART_LAYERS = (
    "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
    "application/tar+gzip",  # Helm's legacy chart layer type (HIP-0017)
)
TITLE = "org.opencontainers.image.title"
VERSION = "org.opencontainers.image.version"

# Route kinds, by path alone (the method decides what the exchange means).
INDEX = "index"          # [/<repo>]/index.yaml
FILE = "file"            # [/<repo>]/charts/<filename>  (.tgz download, .tgz.prov, other)
CHARTS = "charts"        # /api[/<repo>]/charts         (GET list, POST upload)
PROV = "prov"            # /api[/<repo>]/prov           (POST provenance upload)
CHART = "chart"          # /api[/<repo>]/charts/<name>  (GET versions; Harbor: DELETE all)
VERSION_ROUTE = "version"  # /api[/<repo>]/charts/<name>/<version>  (GET, DELETE)
OTHER = "other"          # anything else under a chart prefix: proxied, never an event

_SERVER_PATHS = frozenset({"/health", "/info", "/artifacthub-repo.yml"})
_HARBOR_API_PREFIXES = ("/api/v2.0/chartrepo/", "/api/chartrepo/")
_HARBOR_REPO_PREFIX = "/chartrepo/"
#: Path characters kept readable when a decoded path is quoted again for the upstream.
_PATH_SAFE = "/+:@!$&'()*,;=~"

# SemVer 2.0.0 (semver.org's recommended expression), for splitting `<name>-<version>.tgz`.
_SEMVER = re.compile(
    r"^(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)"
    r"(?:-(?:(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?$"
)


@dataclass(frozen=True)
class ChartRoute:
    """A chart path, understood: where it goes upstream and whose charts it concerns.

    `namespace_path` is what chart repositories live under for events: the Harbor project, the
    ChartMuseum tenant (`org/team` at depth 2), or the configured project at depth 0.
    `download_base` is the client-visible prefix of `<chart>-<version>.tgz` downloads.
    """

    kind: str
    upstream_path: str
    namespace_path: str
    download_base: str
    tenant: str = ""
    name: str = ""
    version: str = ""
    filename: str = ""
    harbor: bool = False

    @property
    def index_path(self) -> str:
        """The upstream index.yaml for this route's repository."""
        return f"/{self.tenant}/index.yaml" if self.tenant else "/index.yaml"

    def versions_path(self, name: str) -> str:
        """The upstream API path listing the versions of chart `name`."""
        return _api(self.tenant, "charts", name)


def _segments_ok(segments: list[str]) -> bool:
    return all(s and s not in (".", "..") for s in segments)


def _api(tenant: str, *rest: str) -> str:
    parts = ["api", *([tenant] if tenant else []), *rest]
    return quote("/" + "/".join(parts), safe=_PATH_SAFE)


def _plain(tenant: str, *rest: str) -> str:
    parts = [*([tenant] if tenant else []), *rest]
    return quote("/" + "/".join(parts), safe=_PATH_SAFE)


def parse_chart_route(path: str, depth: int = 0, project: str = "library") -> ChartRoute | None:
    """Classify a (decoded) request path as a chart route, or None when it is not one.

    Harbor's legacy prefixes win over ChartMuseum routes of a tenant named `chartrepo`, and
    `/v2/` always belongs to the registry.
    """
    if path == "/v2" or path.startswith(("/v2/", "/sidecar/")):
        return None
    for prefix in _HARBOR_API_PREFIXES:
        if path.startswith(prefix):
            return _harbor_api(path[len(prefix):], project)
    if path.startswith(_HARBOR_REPO_PREFIX):
        return _harbor_repo(path[len(_HARBOR_REPO_PREFIX):])
    if path in _SERVER_PATHS:
        return ChartRoute(OTHER, quote(path, safe=_PATH_SAFE), project, "/charts/")
    if path.startswith("/api/"):
        return _museum_api(path[len("/api/"):].split("/"), depth, project)
    return _museum_repo(path.lstrip("/").split("/"), depth, project)


def _museum_api(segments: list[str], depth: int, project: str) -> ChartRoute | None:
    if len(segments) <= depth or not _segments_ok(segments[:depth]):
        return None
    tenant = "/".join(segments[:depth])
    rest = segments[depth:]
    if rest[0] not in ("charts", "prov") or not _segments_ok(rest[1:]):
        return None
    namespace = tenant or project
    base = f"/{tenant}/charts/" if tenant else "/charts/"
    upstream = _api(tenant, *rest)
    common = {"upstream_path": upstream, "namespace_path": namespace, "download_base": base,
              "tenant": tenant}
    if rest == ["prov"]:
        return ChartRoute(PROV, **common)
    if rest[0] != "charts":
        return None
    if len(rest) == 1:
        return ChartRoute(CHARTS, **common)
    if len(rest) == 2:
        return ChartRoute(CHART, name=rest[1], **common)
    if len(rest) == 3:
        return ChartRoute(VERSION_ROUTE, name=rest[1], version=rest[2], **common)
    return ChartRoute(OTHER, name=rest[1], version=rest[2], **common)


def _museum_repo(segments: list[str], depth: int, project: str) -> ChartRoute | None:
    if len(segments) <= depth or not _segments_ok(segments[:depth]):
        return None
    tenant = "/".join(segments[:depth])
    rest = segments[depth:]
    namespace = tenant or project
    base = f"/{tenant}/charts/" if tenant else "/charts/"
    common = {"namespace_path": namespace, "download_base": base, "tenant": tenant}
    if rest == ["index.yaml"]:
        return ChartRoute(INDEX, upstream_path=_plain(tenant, "index.yaml"), **common)
    if rest == ["artifacthub-repo.yml"] and tenant:
        return ChartRoute(OTHER, upstream_path=_plain(tenant, *rest), **common)
    if len(rest) == 2 and rest[0] == "charts" and _segments_ok(rest[1:]):
        return ChartRoute(FILE, upstream_path=_plain(tenant, *rest), filename=rest[1], **common)
    return None


def _harbor_repo(rest: str) -> ChartRoute | None:
    segments = rest.split("/")
    if segments == ["index.yaml"]:  # Harbor's all-projects index: ChartMuseum's root index
        return ChartRoute(INDEX, "/index.yaml", "", "", harbor=True)
    if not _segments_ok(segments):
        return None
    project = segments[0]
    base = f"/chartrepo/{project}/charts/"
    common = {"namespace_path": project, "download_base": base, "tenant": project,
              "harbor": True}
    if segments[1:] == ["index.yaml"]:
        return ChartRoute(INDEX, upstream_path=_plain(project, "index.yaml"), **common)
    if len(segments) == 3 and segments[1] == "charts":
        return ChartRoute(FILE, upstream_path=_plain(project, *segments[1:]),
                          filename=segments[2], **common)
    return ChartRoute(OTHER, upstream_path=_plain(project, *segments[1:]), **common)


def _harbor_api(rest: str, default_project: str) -> ChartRoute | None:
    segments = rest.split("/")
    if segments == ["health"]:
        return ChartRoute(OTHER, "/health", "", "", harbor=True)
    if segments == ["charts"]:  # Harbor: upload to the default project
        segments = [default_project, "charts"]
    if len(segments) < 2 or not _segments_ok(segments):
        return None
    project, rest_segments = segments[0], segments[1:]
    base = f"/chartrepo/{project}/charts/"
    common = {"upstream_path": _api(project, *rest_segments), "namespace_path": project,
              "download_base": base, "tenant": project, "harbor": True}
    if rest_segments == ["charts"]:
        return ChartRoute(CHARTS, **common)
    if rest_segments == ["prov"]:
        return ChartRoute(PROV, **common)
    if rest_segments[0] == "charts" and len(rest_segments) == 2:
        return ChartRoute(CHART, name=rest_segments[1], **common)
    if rest_segments[0] == "charts" and len(rest_segments) == 3:
        return ChartRoute(VERSION_ROUTE, name=rest_segments[1], version=rest_segments[2],
                          **common)
    return ChartRoute(OTHER, **common)


# -- chart packages and indexes ------------------------------------------------------------

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


# -- events ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChartEvent(InProject):
    """One chart upload, download or delete; `versions` holds one version per resource.

    `download_base` is the path prefix the chart downloads from (`/chartrepo/p/charts/`);
    empty means an OCI chart, whose URL is `oci://<host>/<repository>:<tag>`.
    """

    type: str
    repository: str
    chart: str
    versions: tuple[str, ...]
    operator: str
    occur_at: int
    host: str = ""
    scheme: str = "http"
    download_base: str = ""
    digest: str = ""
    size: int | None = None
    request_id: str = ""

    @property
    def tags(self) -> tuple[str, ...]:
        """The versions, under the name policy tag filters read."""
        return self.versions


@dataclass(frozen=True)
class ChartExchange:
    """What the chart proxy saw of one request (header keys lower-case) and learnt around it.

    `chart` is (name, version): from the uploaded package's Chart.yaml, or a download's file
    name resolved against the index. `versions` lists what a whole-chart delete removed.
    """

    route: ChartRoute
    method: str
    status: int
    request_headers: Mapping[str, str]
    occur_at: int
    scheme: str = "http"
    chart: tuple[str, str] | None = None
    versions: tuple[str, ...] = ()
    size: int | None = None


def infer_chart(exchange: ChartExchange) -> list[ChartEvent]:
    """The chart events of one exchange: only upstream successes fire (201 / 200 / 200)."""
    route, method, status = exchange.route, exchange.method.upper(), exchange.status
    if not route.namespace_path:
        return []
    chart: str = ""
    versions: tuple[str, ...] = ()
    size = None
    if route.kind == CHARTS and method == "POST" and status == 201 and exchange.chart:
        kind, (chart, version), size = UPLOAD_CHART, exchange.chart, exchange.size
        versions = (version,)
    elif (route.kind == FILE and method == "GET" and status == 200 and exchange.chart
          and route.filename.endswith(".tgz")):
        kind, (chart, version), size = DOWNLOAD_CHART, exchange.chart, exchange.size
        versions = (version,)
    elif route.kind == VERSION_ROUTE and method == "DELETE" and status == 200:
        kind, chart, versions = DELETE_CHART, route.name, (route.version,)
    elif route.kind == CHART and method == "DELETE" and status == 200 and exchange.versions:
        kind, chart, versions = DELETE_CHART, route.name, tuple(exchange.versions)
    else:
        return []
    headers = exchange.request_headers
    return [ChartEvent(
        type=kind,
        repository=f"{route.namespace_path}/{chart}",
        chart=chart,
        versions=versions,
        operator=operator_from_authorization(headers.get("authorization")),
        occur_at=exchange.occur_at,
        host=headers.get("host", ""),
        scheme=exchange.scheme,
        download_base=route.download_base,
        size=size,
        request_id=headers.get("x-request-id", ""),
    )]


@dataclass(frozen=True)
class HelmManifest:
    """What an OCI manifest says about the Helm chart it carries."""

    name: str
    version: str
    size: int | None


def helm_manifest(body: bytes) -> HelmManifest | None:
    """The chart an OCI manifest carries, or None when its config is not Helm's."""
    if HELM_CONFIG.encode() not in body:
        return None  # cheap test first: most manifests are images
    manifest = parse_manifest(body)
    if manifest is None:
        return None
    config = manifest.get("config")
    if not isinstance(config, dict) or config.get("mediaType") != HELM_CONFIG:
        return None
    annotations = manifest.get("annotations")
    annotations = annotations if isinstance(annotations, dict) else {}
    size = None
    for layer in manifest.get("layers") or []:
        if isinstance(layer, dict) and layer.get("mediaType") in HELM_CHART_LAYERS \
                and isinstance(layer.get("size"), int):
            size = layer["size"]
            break
    return HelmManifest(
        name=str(annotations.get(TITLE) or ""),
        version=str(annotations.get(VERSION) or ""),
        size=size,
    )


_OCI_CHART_TYPE = {
    PUSH_ARTIFACT: UPLOAD_CHART,
    PULL_ARTIFACT: DOWNLOAD_CHART,
    DELETE_ARTIFACT: DELETE_CHART,
}


def oci_chart_events(events: Iterable[ArtifactEvent], manifest: bytes) -> list[ChartEvent]:
    """The chart events that accompany artifact events on a Helm chart manifest.

    Version: the manifest's version annotation (Helm writes it), else the tag with Helm's
    `_` -> `+` mapping. A chart addressed by digest alone with no annotation has no version
    to report and gets no chart event.
    """
    helm = helm_manifest(manifest) if manifest else None
    if helm is None:
        return []
    out: list[ChartEvent] = []
    for event in events:
        kind = _OCI_CHART_TYPE.get(event.type)
        if kind is None or not event.name:
            continue
        version = helm.version or (event.tags[0].replace("_", "+") if event.tags else "")
        if not version:
            continue
        out.append(ChartEvent(
            type=kind,
            repository=event.repository,
            chart=helm.name or event.repository.rsplit("/", 1)[-1],
            versions=(version,),
            operator=event.operator,
            occur_at=event.occur_at,
            host=event.host,
            digest=event.digest,
            size=helm.size,
            request_id=event.request_id,
        ))
    return out


# -- payload ---------------------------------------------------------------------------------

def chart_url(event: ChartEvent, version: str, hostname: str) -> str:
    """Where the chart version downloads from.

    ChartMuseum and Harbor routes: `<scheme>://<host><base><chart>-<version>.tgz` (Harbor's
    ExtEndpoint form, with scheme). OCI: `oci://<host>/<repository>:<tag>`, what `helm pull`
    takes, with Helm's `+` -> `_` tag mapping.
    """
    host = (hostname or event.host).rstrip("/")
    scheme = event.scheme or "http"
    for prefix in ("https://", "http://"):
        if host.lower().startswith(prefix):
            scheme, host = prefix[:-3], host[len(prefix):]
    host = host.lower()
    if not event.download_base:
        return f"oci://{host}/{event.repository}:{version.replace('+', '_')}"
    return f"{scheme}://{host}{event.download_base}{event.chart}-{version}.tgz"


def chart_payload(event: ChartEvent, *, hostname: str, public: bool) -> dict[str, Any]:
    """Harbor's Default payload of a chart event: one resource per version."""
    resources: list[dict[str, Any]] = []
    for version in event.versions:
        resource: dict[str, Any] = {}
        if event.digest:
            resource["digest"] = event.digest
        resource["tag"] = version
        resource["resource_url"] = chart_url(event, version, hostname)
        resources.append(resource)
    event_data: dict[str, Any] = {
        "resources": resources,
        "repository": {
            "name": event.name,
            "namespace": event.namespace,
            "repo_full_name": event.repository,
            "repo_type": "public" if public else "private",
        },
    }
    if event.size is not None:
        event_data["custom_attributes"] = {"size": str(int(event.size))}
    return {
        "type": event.type,
        "occur_at": int(event.occur_at),
        "operator": event.operator,
        "event_data": event_data,
    }
