"""Scan events (SCANNING_COMPLETED, SCANNING_FAILED, SCANNING_STOPPED) and their payloads.

Harbor fires one per scanned artifact when its scan task ends (an index: one per child),
from the scan job, not from a request: the operator is whoever asked for the scan (the
pusher on auto-scan), `occur_at` the moment the scan ended.

Two shapes exist. Harbor 2.10 sends resources + repository; 2.11 added `event_data.scan`
(`{"scan_type": "vulnerability"}`), which the Jenkins plugin, the receiver that gates builds
on these events, refuses as an unknown key. The stored payload is the 2.10 shape; a target
that asks for `payload_version: "2.11"` gets `harbor_shape(payload, "2.11")`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from sidecar.events.model import SCANNING_COMPLETED
from sidecar.events.model import SCANNING_FAILED
from sidecar.events.model import SCANNING_STOPPED
from sidecar.events.model import InProject
from sidecar.events.payload import resource_url

SCAN_EVENTS = frozenset({SCANNING_COMPLETED, SCANNING_FAILED, SCANNING_STOPPED})
#: Harbor task status -> the event its end fires (src/controller/event/metadata/scan.go).
EVENT_FOR_STATUS = {"Success": SCANNING_COMPLETED, "Error": SCANNING_FAILED,
                    "Stopped": SCANNING_STOPPED}

#: Payload shapes a target may ask for; the first is the default.
PAYLOAD_VERSIONS = ("2.10", "2.11")
DEFAULT_PAYLOAD_VERSION = PAYLOAD_VERSIONS[0]


@dataclass(frozen=True)
class ScanEvent(InProject):
    """The end of one artifact's scan.

    `tags` holds the tag the scan was asked for (the pushed tag on auto-scan), or nothing;
    `scan_overview` maps a report MIME type to its NativeReportSummary as Harbor's JSON
    (sidecar.scan.summary builds it). `host` is the Host the push (or the API call) came
    through, for `resource_url` when no hostname is configured, as for artifact events.
    """

    type: str
    repository: str
    digest: str
    operator: str
    occur_at: int
    tags: tuple[str, ...] = ()
    scan_overview: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    request_id: str = ""
    host: str = ""

    @property
    def reference(self) -> str:
        return self.tags[0] if self.tags else self.digest


def scan_payload(event: ScanEvent, *, hostname: str, public: bool,
                 date_created: int | None = None) -> dict[str, Any]:
    """Harbor 2.10's payload of a scan event (no `date_created`: Harbor sets none here)."""
    resource: dict[str, Any] = {}
    if event.digest:
        resource["digest"] = event.digest
    if event.tags:
        resource["tag"] = event.tags[0]
    resource["resource_url"] = resource_url(hostname or event.host, event.repository,
                                            event.reference,
                                            by_digest=not event.tags)
    if event.scan_overview:
        # Go writes map keys sorted
        resource["scan_overview"] = {mime: dict(summary) for mime, summary
                                     in sorted(event.scan_overview.items())}
    return {
        "type": event.type,
        "occur_at": int(event.occur_at),
        "operator": event.operator,
        "event_data": {
            "resources": [resource],
            "repository": {
                "name": event.name,
                "namespace": event.namespace,
                "repo_full_name": event.repository,
                "repo_type": "public" if public else "private",
            },
        },
    }


#: Harbor's EventData members in its Go declaration order (2.11 and later).
_EVENT_DATA_ORDER = ("resources", "repository", "replication", "retention", "scan",
                     "custom_attributes")


def harbor_shape(payload: Mapping[str, Any], payload_version: str) -> dict[str, Any]:
    """A stored Default payload in the shape of the Harbor version a target asked for.

    Only scan events differ: from 2.11 on they carry `event_data.scan`, whose `scan_type` is
    "sbom" for an SBOM overview, "vulnerability" for a vulnerability one, and absent when
    neither is there (Harbor's scan-all events: `"scan": {}`).
    """
    if payload_version not in PAYLOAD_VERSIONS:
        raise ValueError(f"unknown payload_version {payload_version!r}")
    if payload_version == "2.10" or payload.get("type") not in SCAN_EVENTS:
        return dict(payload)
    data = dict(payload.get("event_data") or {})
    resources = data.get("resources") or []
    scan: dict[str, str] = {}
    if any("sbom_overview" in r for r in resources):
        scan["scan_type"] = "sbom"
    elif any("scan_overview" in r for r in resources):
        scan["scan_type"] = "vulnerability"
    data["scan"] = scan
    ordered = {key: data[key] for key in _EVENT_DATA_ORDER if key in data}
    ordered.update((k, v) for k, v in data.items() if k not in ordered)
    return {**payload, "event_data": ordered}
