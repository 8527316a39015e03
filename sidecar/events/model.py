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
