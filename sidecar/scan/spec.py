"""Harbor's Pluggable Scanner Adapter API v1.1, as data: MIME types, messages, their checks.

Pure (no I/O), so the client, the job and the tests read the protocol in one place. Written
from goharbor/pluggable-scanner-spec api/spec/scanner-adapter-openapi-v1.1.yaml (v1.2.0,
d898c3d7) and what Harbor 2.10's client sends (src/pkg/scan/rest/v1).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

#: The two report types Harbor summarises (scan_overview keys), Harbor's preference first.
GENERIC_REPORT = "application/vnd.security.vulnerability.report; version=1.1"
NATIVE_REPORT = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
VULNERABILITY_REPORTS = (GENERIC_REPORT, NATIVE_REPORT)

METADATA_TYPE = "application/vnd.scanner.adapter.metadata+json; version=1.0"
# Harbor labels its requests 1.0 whatever it puts in them; v1.1 adapters expect that label
SCAN_REQUEST_TYPE = "application/vnd.scanner.adapter.scan.request+json; version=1.0"
SCAN_RESPONSE_TYPE = "application/vnd.scanner.adapter.scan.response+json; version=1.0"
ERROR_TYPE = "application/vnd.scanner.adapter.error+json; version=1.0"

#: An adapter's metadata property: "Bearer" asks for a registry token instead of Basic.
REGISTRY_AUTH_PROPERTY = "harbor.scanner-adapter/registry-authorization-type"

#: Refresh-After: Harbor reads it as a signed 8-bit integer and waits 5 s when it cannot.
DEFAULT_REFRESH_SECONDS = 5
MAX_REFRESH_SECONDS = 127


class SpecError(ValueError):
    """A message from the adapter does not follow the spec; the text says where."""


@dataclass(frozen=True)
class Capability:
    consumes: tuple[str, ...]
    produces: tuple[str, ...]
    type: str = ""  # spec v1.2; absent means "vulnerability"


@dataclass(frozen=True)
class AdapterMetadata:
    name: str
    vendor: str
    version: str
    capabilities: tuple[Capability, ...]
    properties: Mapping[str, str] = field(default_factory=dict)

    def report_types(self, media_type: str) -> tuple[str, ...]:
        """The vulnerability reports the scanner makes for an artifact of this manifest type,
        Harbor's preference first; empty when it does not scan such artifacts (Helm charts,
        indexes, anything unknown)."""
        for capability in self.capabilities:
            if capability.type in ("", "vulnerability") and media_type in capability.consumes:
                return tuple(t for t in VULNERABILITY_REPORTS if t in capability.produces)
        return ()

    @property
    def registry_auth_type(self) -> str:
        """"Bearer" when the adapter asks for a registry token, else "Basic" (as Harbor)."""
        return "Bearer" if self.properties.get(REGISTRY_AUTH_PROPERTY) == "Bearer" else "Basic"


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{where} must be a list of strings")
    return tuple(value)


def parse_metadata(data: Any) -> AdapterMetadata:
    """ScannerAdapterMetadata -> AdapterMetadata; SpecError names the first wrong field."""
    if not isinstance(data, dict):
        raise SpecError("metadata must be a JSON object")
    scanner = data.get("scanner")
    if not isinstance(scanner, dict):
        raise SpecError("metadata has no 'scanner' object")
    for key in ("name", "vendor", "version"):
        if not isinstance(scanner.get(key, ""), str):
            raise SpecError(f"scanner.{key} must be a string")
    raw_capabilities = data.get("capabilities")
    if not isinstance(raw_capabilities, list) or not raw_capabilities:
        raise SpecError("metadata has no capabilities")
    capabilities = []
    for index, raw in enumerate(raw_capabilities):
        where = f"capabilities[{index}]"
        if not isinstance(raw, dict):
            raise SpecError(f"{where} must be an object")
        kind = raw.get("type", "")
        if not isinstance(kind, str):
            raise SpecError(f"{where}.type must be a string")
        capabilities.append(Capability(
            consumes=_strings(raw.get("consumes_mime_types"), f"{where}.consumes_mime_types"),
            produces=_strings(raw.get("produces_mime_types"), f"{where}.produces_mime_types"),
            type=kind))
    properties = data.get("properties") or {}
    if not isinstance(properties, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in properties.items()):
        raise SpecError("properties must map strings to strings")
    return AdapterMetadata(name=scanner.get("name", ""), vendor=scanner.get("vendor", ""),
                           version=scanner.get("version", ""),
                           capabilities=tuple(capabilities), properties=dict(properties))


def scan_request(*, registry_url: str, authorization: str, repository: str, digest: str,
                 tag: str, mime_type: str) -> dict[str, Any]:
    """The ScanRequest body, as Harbor 2.10 sends it (v1.1 fields; `authorization` may be "":
    the adapter then pulls anonymously)."""
    return {
        "registry": {"url": registry_url, "authorization": authorization},
        "artifact": {"repository": repository, "tag": tag, "digest": digest,
                     "mime_type": mime_type},
    }


def basic_authorization(username: str, password: str) -> str:
    """The registry `authorization` value for a username and password."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def parse_scan_response(data: Any) -> str:
    """ScanResponse -> the scan request id."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        raise SpecError("the scan response has no 'id' string")
    if len(data["id"]) > 256:
        raise SpecError("the scan response id is longer than 256 characters")
    return data["id"]


def error_message(data: Any) -> str | None:
    """The message of an ErrorResponse (`{"error": {"message": ...}}`), None if not one."""
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        message = data["error"].get("message")
        if isinstance(message, str):
            return message
    return None


def refresh_seconds(header: str | None) -> int:
    """Seconds to wait after a 302, from Refresh-After as Harbor reads it."""
    try:
        value = int((header or "").strip())
    except ValueError:
        return DEFAULT_REFRESH_SECONDS
    if not 0 <= value <= MAX_REFRESH_SECONDS:
        return DEFAULT_REFRESH_SECONDS
    return value


_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf"\s*;\s*({_TOKEN})\s*=\s*(\"(?:[^\"\\]|\\.)*\"|{_TOKEN})\s*")


def media_type(value: str) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """`type/subtype; k=v` -> comparable form (case and spacing do not matter, nor quotes);
    None when it is not a media type at all."""
    value = value.strip()
    head = re.match(rf"({_TOKEN})/({_TOKEN})", value)
    if not head:
        return None
    params: list[tuple[str, str]] = []
    rest = value[head.end():]
    while rest.strip():
        match = _PARAM.match(rest)
        if not match:
            return None
        key, raw = match.group(1).lower(), match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params.append((key, raw))
        rest = rest[match.end():]
    return f"{head.group(1)}/{head.group(2)}".lower(), tuple(sorted(params))


def same_media_type(a: str, b: str) -> bool:
    parsed = media_type(a)
    return parsed is not None and parsed == media_type(b)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (and any credential-looking header value) replaced by ***.

    An adapter may echo what it was sent (Trivy's error names the malformed Authorization);
    its words reach logs and status pages only through here.
    """
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return re.sub(r"\b(Basic|Bearer)\s+[A-Za-z0-9._~+/=-]{6,}", r"\1 ***", text)
