"""Turn what the chart proxy saw, or an OCI chart's artifact events, into chart events. Pure.

As for artifacts (events.infer), only upstream successes are events: a 201 upload, a 200
download of a `.tgz`, a 200 delete. Harbor's own chart events (2.7's `constructChartPayload`)
are the model: one resource per version, the version as the tag.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass

from sidecar.events.chartroutes import CHART
from sidecar.events.chartroutes import CHARTS
from sidecar.events.chartroutes import FILE
from sidecar.events.chartroutes import VERSION_ROUTE
from sidecar.events.chartroutes import ChartRoute
from sidecar.events.manifest import helm_manifest
from sidecar.events.model import DELETE_ARTIFACT
from sidecar.events.model import DELETE_CHART
from sidecar.events.model import DOWNLOAD_CHART
from sidecar.events.model import PULL_ARTIFACT
from sidecar.events.model import PUSH_ARTIFACT
from sidecar.events.model import UPLOAD_CHART
from sidecar.events.model import ArtifactEvent
from sidecar.events.model import ChartEvent
from sidecar.events.operator import operator_from_authorization


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
