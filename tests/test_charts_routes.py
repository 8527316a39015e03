"""Which paths are chart routes, at every depth and in Harbor's legacy forms, and where they go."""

from __future__ import annotations

import pytest

from sidecar.events.chartroutes import CHART
from sidecar.events.chartroutes import CHARTS
from sidecar.events.chartroutes import FILE
from sidecar.events.chartroutes import INDEX
from sidecar.events.chartroutes import OTHER
from sidecar.events.chartroutes import PROV
from sidecar.events.chartroutes import VERSION_ROUTE
from sidecar.events.chartroutes import parse_chart_route

# (path, depth) -> (kind, upstream path, namespace path, download base, name, version, filename)
CASES = [
    # ChartMuseum, depth 0: everything belongs to the configured project
    (("/index.yaml", 0), (INDEX, "/index.yaml", "library", "/charts/", "", "", "")),
    (("/charts/app-1.0.0.tgz", 0),
     (FILE, "/charts/app-1.0.0.tgz", "library", "/charts/", "", "", "app-1.0.0.tgz")),
    (("/charts/app-1.0.0.tgz.prov", 0),
     (FILE, "/charts/app-1.0.0.tgz.prov", "library", "/charts/", "", "", "app-1.0.0.tgz.prov")),
    (("/api/charts", 0), (CHARTS, "/api/charts", "library", "/charts/", "", "", "")),
    (("/api/prov", 0), (PROV, "/api/prov", "library", "/charts/", "", "", "")),
    (("/api/charts/app", 0), (CHART, "/api/charts/app", "library", "/charts/", "app", "", "")),
    (("/api/charts/app/1.0.0", 0),
     (VERSION_ROUTE, "/api/charts/app/1.0.0", "library", "/charts/", "app", "1.0.0", "")),
    (("/api/charts/app/1.0.0/values", 0),
     (OTHER, "/api/charts/app/1.0.0/values", "library", "/charts/", "app", "1.0.0", "")),
    (("/health", 0), (OTHER, "/health", "library", "/charts/", "", "", "")),
    (("/info", 3), (OTHER, "/info", "library", "/charts/", "", "", "")),
    # depth 1: the tenant is the project
    (("/team/index.yaml", 1), (INDEX, "/team/index.yaml", "team", "/team/charts/", "", "", "")),
    (("/team/charts/my-chart-1.2.3-rc.1.tgz", 1),
     (FILE, "/team/charts/my-chart-1.2.3-rc.1.tgz", "team", "/team/charts/", "", "",
      "my-chart-1.2.3-rc.1.tgz")),
    (("/api/team/charts", 1), (CHARTS, "/api/team/charts", "team", "/team/charts/", "", "", "")),
    (("/api/team/prov", 1), (PROV, "/api/team/prov", "team", "/team/charts/", "", "", "")),
    (("/api/team/charts/app/2.0.0+build.1", 1),
     (VERSION_ROUTE, "/api/team/charts/app/2.0.0+build.1", "team", "/team/charts/", "app",
      "2.0.0+build.1", "")),
    # depth 2: a nested tenant; the project is its first segment (like images)
    (("/org/team/charts/app-1.0.0.tgz", 2),
     (FILE, "/org/team/charts/app-1.0.0.tgz", "org/team", "/org/team/charts/", "", "",
      "app-1.0.0.tgz")),
    (("/api/org/team/charts/app/1.0.0", 2),
     (VERSION_ROUTE, "/api/org/team/charts/app/1.0.0", "org/team", "/org/team/charts/", "app",
      "1.0.0", "")),
    # Harbor's legacy routes: depth-1 routes upstream, whatever the configured depth
    (("/chartrepo/proj/index.yaml", 0),
     (INDEX, "/proj/index.yaml", "proj", "/chartrepo/proj/charts/", "", "", "")),
    (("/chartrepo/proj/charts/app-1.0.0.tgz", 2),
     (FILE, "/proj/charts/app-1.0.0.tgz", "proj", "/chartrepo/proj/charts/", "", "",
      "app-1.0.0.tgz")),
    (("/api/chartrepo/proj/charts", 0),
     (CHARTS, "/api/proj/charts", "proj", "/chartrepo/proj/charts/", "", "", "")),
    (("/api/v2.0/chartrepo/proj/charts", 0),
     (CHARTS, "/api/proj/charts", "proj", "/chartrepo/proj/charts/", "", "", "")),
    (("/api/chartrepo/charts", 0),
     (CHARTS, "/api/library/charts", "library", "/chartrepo/library/charts/", "", "", "")),
    (("/api/chartrepo/proj/prov", 0),
     (PROV, "/api/proj/prov", "proj", "/chartrepo/proj/charts/", "", "", "")),
    (("/api/chartrepo/proj/charts/app", 0),
     (CHART, "/api/proj/charts/app", "proj", "/chartrepo/proj/charts/", "app", "", "")),
    (("/api/v2.0/chartrepo/proj/charts/app/1.0.0", 1),
     (VERSION_ROUTE, "/api/proj/charts/app/1.0.0", "proj", "/chartrepo/proj/charts/", "app",
      "1.0.0", "")),
    (("/api/v2.0/chartrepo/proj/charts/app/1.0.0/labels", 1),
     (OTHER, "/api/proj/charts/app/1.0.0/labels", "proj", "/chartrepo/proj/charts/", "", "",
      "")),
    (("/api/chartrepo/health", 0), (OTHER, "/health", "", "", "", "", "")),
    (("/chartrepo/index.yaml", 0), (INDEX, "/index.yaml", "", "", "", "", "")),
]


@pytest.mark.parametrize(("given", "expected"), CASES, ids=[f"{p}@{d}" for (p, d), _ in CASES])
def test_chart_routes(given, expected):
    path, depth = given
    route = parse_chart_route(path, depth=depth, project="library")
    assert route is not None
    got = (route.kind, route.upstream_path, route.namespace_path, route.download_base,
           route.name, route.version, route.filename)
    assert got == expected


@pytest.mark.parametrize(("path", "depth"), [
    ("/v2/", 0), ("/v2", 0), ("/v2/team/manifests/1", 1), ("/v2/index.yaml", 1),
    ("/sidecar/status", 0), ("/", 0), ("/api/v2.0/projects", 0), ("/api/v2.0/projects", 1),
    ("/charts/app-1.0.0.tgz", 1),       # depth 1 wants a tenant
    ("/team/charts/app-1.0.0.tgz", 0),  # depth 0 has none
    ("/api/charts", 1), ("/api/a/charts", 2), ("/index.yaml", 1),
    ("/api/team/charts/", 1), ("/../charts/x.tgz", 1), ("/chartrepo/", 0),
    ("/api/chartrepo/proj", 0), ("/team/other", 1),
])
def test_not_chart_routes(path, depth):
    assert parse_chart_route(path, depth=depth, project="library") is None


def test_configured_project_owns_depth_zero():
    route = parse_chart_route("/api/charts", depth=0, project="helm")
    assert route.namespace_path == "helm"
    harbor = parse_chart_route("/api/chartrepo/charts", depth=0, project="helm")
    assert harbor.upstream_path == "/api/helm/charts"


def test_index_and_versions_paths():
    route = parse_chart_route("/api/org/team/charts/app/1.0.0", depth=2)
    assert route.index_path == "/org/team/index.yaml"
    assert route.versions_path("app") == "/api/org/team/charts/app"
    harbor = parse_chart_route("/api/v2.0/chartrepo/proj/charts/app", depth=0)
    assert harbor.index_path == "/proj/index.yaml"
    assert harbor.versions_path("app") == "/api/proj/charts/app"
    root = parse_chart_route("/charts/x-1.0.0.tgz", depth=0)
    assert root.index_path == "/index.yaml"


def test_harbor_paths_are_quoted_again_for_the_upstream():
    route = parse_chart_route("/api/chartrepo/proj/charts/app/1.0.0 x", depth=0)
    assert route.upstream_path == "/api/proj/charts/app/1.0.0%20x"
