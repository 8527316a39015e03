"""Which request paths are chart routes, and what each one names. Pure.

Three ways a chart reaches the sidecar, one route model for the first two:
- ChartMuseum's API at depth 0 (`/charts/x.tgz`, `/api/charts`) or depth N (`/<repo>/charts/...`,
  `/api/<repo>/charts`), where `<repo>` has exactly N segments;
- Harbor's legacy chart repository (`/chartrepo/<project>/...`, `/api/chartrepo/<project>/...`,
  also under `/api/v2.0/`), which Harbor forwarded to its ChartMuseum as depth-1 routes;
- OCI charts pushed to `/v2/` (a manifest whose config is Helm's), seen by the artifact path
  (events.chartinfer.oci_chart_events).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

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
