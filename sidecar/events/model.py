"""The catalogue of events the sidecar produces, and the plain record of one occurrence.

Event type names are Harbor's policy `event_types` values, so a policy copied from Harbor
subscribes to the same things here.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field

PUSH_ARTIFACT = "PUSH_ARTIFACT"
PULL_ARTIFACT = "PULL_ARTIFACT"
DELETE_ARTIFACT = "DELETE_ARTIFACT"
QUOTA_EXCEED = "QUOTA_EXCEED"
QUOTA_WARNING = "QUOTA_WARNING"
SCANNING_FAILED = "SCANNING_FAILED"
SCANNING_STOPPED = "SCANNING_STOPPED"
SCANNING_COMPLETED = "SCANNING_COMPLETED"
REPLICATION = "REPLICATION"
TAG_RETENTION = "TAG_RETENTION"
UPLOAD_CHART = "UPLOAD_CHART"
DOWNLOAD_CHART = "DOWNLOAD_CHART"
DELETE_CHART = "DELETE_CHART"

#: Harbor's order (GET /webhook/events answers in this order), chart events last as in 2.7.
EVENT_TYPES: tuple[str, ...] = (
    PUSH_ARTIFACT,
    PULL_ARTIFACT,
    DELETE_ARTIFACT,
    QUOTA_EXCEED,
    QUOTA_WARNING,
    SCANNING_FAILED,
    SCANNING_STOPPED,
    SCANNING_COMPLETED,
    REPLICATION,
    TAG_RETENTION,
    UPLOAD_CHART,
    DOWNLOAD_CHART,
    DELETE_CHART,
)

ARTIFACT_EVENTS = frozenset({PUSH_ARTIFACT, PULL_ARTIFACT, DELETE_ARTIFACT})
CHART_EVENTS = frozenset({UPLOAD_CHART, DOWNLOAD_CHART, DELETE_CHART})


# What every event family provides (a frozen dataclass each), so that the recorder matches,
# de-duplicates and records them all the same way, whoever produced them (the proxy, the quota
# gate, a scan, replication or retention job):
#   type, occur_at (int seconds), operator ("" for anonymous), request_id ("" if none)
#   repository  "proj/name", or "" for an event about a whole project (quota, retention, ...)
#   project     the Harbor project the event belongs to ("" = none: matches no policy)
#   name        the repository inside the project ("" when none): what repository filters read
#   tags, digest  what tag filters read (tags first; the digest when there are none)
# and a payload builder registered in events.families.PAYLOAD_BUILDERS.


class InProject:
    """Harbor's reading of a repository path: the project is the first segment, the name the
    rest (`proj/a/b` -> `proj`, `a/b`). Mixed into every event that names a repository."""

    repository: str

    @property
    def namespace(self) -> str:
        return self.repository.partition("/")[0]

    @property
    def name(self) -> str:
        return self.repository.partition("/")[2]

    @property
    def project(self) -> str:
        """A single-segment repository (`alpine`) has no Harbor project: it matches nothing."""
        return self.namespace if self.name else ""


@dataclass(frozen=True)
class ArtifactEvent(InProject):
    """One artifact push, pull or delete, as inferred from a request/response pair.

    `tags` holds every tag the event concerns: the pushed or pulled tag, or all tags a deleted
    artifact had. Payloads use the first, as Harbor does; an empty tuple means "by digest".
    """

    type: str
    repository: str
    digest: str
    operator: str
    occur_at: int
    tags: tuple[str, ...] = ()
    size: int | None = None
    media_type: str = ""
    host: str = ""
    request_id: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        return self.tags[0] if self.tags else self.digest


@dataclass(frozen=True)
class ChartEvent(InProject):
    """One chart upload, download or delete; `versions` holds one version per resource.

    `download_base` is the path prefix the chart downloads from (`/chartrepo/p/charts/`);
    empty means an OCI chart, whose URL is `oci://<host>/<repository>:<tag>`. `scheme` is the
    one the client used, for the download URL (Harbor's ExtEndpoint carries a scheme).
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
