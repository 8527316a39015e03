"""What real receivers of Harbor webhooks check, as assertions other tests can reuse.

Rules T1-T5 (the HTTP request) and B1-B15 (the Default body) are those our receivers survey
derived from Argo CD Image Updater, Flux, Keel, Kargo, the Jenkins plugin, KubeVela, Backend.AI
and go-deploy. S1-S3 are what the Jenkins plugin, the receiver that acts on scan events, reads
of them (its model classes under strict Jackson). Every failure names its rule, so a broken
test says which receiver would break.
R1-R6 are the TAG_RETENTION body as a Go decoder of Harbor's `Retention` struct
(src/controller/event/model/event.go) reads it: no surveyed receiver handles that event.
RP1-RP6 are Harbor's REPLICATION struct as a strict decoder of it (Go's json with
DisallowUnknownFields, a Jackson model) would read it.

    assert_harbor_compatible(payload, host="harbor.example.com")
    assert_request_compatible("POST", url, headers, body, address=url, auth_header="s3cret")

Written independently of the sidecar's code (no sidecar imports), so it cannot share its bugs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

TOP_KEYS = ("type", "occur_at", "operator", "event_data")
EVENT_DATA_KEYS = frozenset({"resources", "repository", "replication", "retention",
                             "custom_attributes"})
RESOURCE_KEYS = frozenset({"digest", "tag", "resource_url", "scan_overview"})
REPOSITORY_KEYS = frozenset({"date_created", "name", "namespace", "repo_full_name", "repo_type"})
#: Harbor's webhook event names: today's ten, and the chart events of Harbor <= 2.7.
HARBOR_EVENT_TYPES = frozenset({
    "PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT", "QUOTA_EXCEED", "QUOTA_WARNING",
    "SCANNING_FAILED", "SCANNING_STOPPED", "SCANNING_COMPLETED", "REPLICATION", "TAG_RETENTION",
    "UPLOAD_CHART", "DOWNLOAD_CHART", "DELETE_CHART",
})
ARTIFACT_EVENT_TYPES = frozenset({"PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT"})
SCAN_EVENT_TYPES = frozenset({"SCANNING_COMPLETED", "SCANNING_FAILED", "SCANNING_STOPPED"})
#: Harbor's Replication, ReplicationResource and ArtifactInfo structs: key -> JSON type
REPLICATION_KEYS = {
    "harbor_hostname": str, "job_status": str, "description": str, "artifact_type": str,
    "authentication_type": str, "override_mode": bool, "trigger_type": str,
    "policy_creator": str, "execution_timestamp": int, "src_resource": dict,
    "dest_resource": dict, "successful_artifact": list, "failed_artifact": list,
    "execution_id": int, "task_id": int,
}
REPLICATION_RESOURCE_KEYS = frozenset({"registry_name", "registry_type", "endpoint", "provider",
                                       "namespace"})
ARTIFACT_INFO_KEYS = frozenset({"type", "status", "name_tag", "references", "fail_reason"})
#: jobservice's status names, the task statuses a REPLICATION event reports
JOB_STATUSES = frozenset({"Pending", "Scheduled", "Running", "Stopped", "Error", "Success"})
TRIGGER_TYPES = frozenset({"MANUAL", "SCHEDULE", "EVENT"})
#: Jenkins' NativeReportSummary properties, and the values of its two enums.
SUMMARY_KEYS = frozenset({"report_id", "scan_status", "severity", "duration", "summary",
                          "start_time", "end_time", "scanner", "complete_percent"})
SCAN_STATUSES = frozenset({"Not Scanned", "Pending", "Running", "Error", "Stopped", "Success",
                           "Scheduled"})
SEVERITIES = frozenset({"None", "Unknown", "Negligible", "Low", "Medium", "High", "Critical"})
MAX_BODY = 1024 * 1024  # argocd-image-updater's limit, the smallest among receivers

_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_DOMAIN_PART = r"(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])"
_HOST = re.compile(rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[a-f0-9:.]+\])(?::[0-9]+)?")


def _fail(rule: str, message: str) -> None:
    raise AssertionError(f"{rule}: {message}")


def _check(condition: bool, rule: str, message: str) -> None:
    if not condition:
        _fail(rule, message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _nulls(value: Any, path: str = "$") -> list[str]:
    if value is None:
        return [path]
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in _nulls(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{path}[{i}]")]
    return []


def assert_harbor_compatible(payload: Mapping[str, Any] | bytes | str,
                             host: str | None = None) -> None:
    """Raise AssertionError naming the first broken rule of B1-B15 (and B11 when `host`).

    `payload` is the decoded body or the raw bytes on the wire. Resource rules (B7-B13) apply
    to artifact events, the ones whose `resources` name a pullable artifact.
    """
    if isinstance(payload, (bytes, str)):
        try:
            payload = json.loads(payload)
        except ValueError as exc:
            _fail("B1", f"body is not JSON: {exc}")
    _check(isinstance(payload, Mapping), "B1", "body must be a JSON object")
    nulls = _nulls(payload)
    _check(not nulls, "B15", f"null values at {', '.join(nulls)}; omit optional keys instead")
    extra = set(payload) - set(TOP_KEYS)
    _check(not extra, "B1", f"top-level keys outside Harbor's schema: {sorted(extra)}")
    _check(isinstance(payload.get("type"), str) and payload["type"] in HARBOR_EVENT_TYPES,
           "B4", f"type {payload.get('type')!r} is not a Harbor event name")
    _check(_is_int(payload.get("occur_at")), "B5",
           f"occur_at must be an integer, got {payload.get('occur_at')!r}")
    _check(isinstance(payload.get("operator"), str), "B6",
           f"operator must be a string, got {payload.get('operator')!r}")

    data = payload.get("event_data")
    _check(isinstance(data, Mapping), "B2", "event_data must be an object")
    extra = set(data) - EVENT_DATA_KEYS
    _check(not extra, "B2", f"event_data keys outside Harbor's schema: {sorted(extra)}")
    if "custom_attributes" in data:
        custom = data["custom_attributes"]
        _check(isinstance(custom, Mapping)
               and all(isinstance(k, str) and isinstance(v, str) for k, v in custom.items()),
               "B2", f"custom_attributes must map strings to strings, got {custom!r}")

    resources = data.get("resources", [])
    _check(isinstance(resources, list), "B7", "resources must be a list")
    for resource in resources:
        _check(isinstance(resource, Mapping), "B3", "each resource must be an object")
        extra = set(resource) - RESOURCE_KEYS
        _check(not extra, "B3", f"resource keys outside Harbor's schema: {sorted(extra)}")
    repository = data.get("repository")
    if repository is not None:
        _check(isinstance(repository, Mapping), "B3", "repository must be an object")
        extra = set(repository) - REPOSITORY_KEYS
        _check(not extra, "B3", f"repository keys outside Harbor's schema: {sorted(extra)}")
        if "date_created" in repository:
            _check(_is_int(repository["date_created"]), "B5",
                   f"date_created must be an integer, got {repository['date_created']!r}")
        if "repo_type" in repository:
            _check(repository["repo_type"] in ("public", "private"), "B14",
                   f"repo_type must be public or private, got {repository['repo_type']!r}")

    if payload["type"] in ARTIFACT_EVENT_TYPES:
        _check_artifact(resources, repository, host)
    if payload["type"] in SCAN_EVENT_TYPES:
        _check_scan(resources, repository)
    if payload["type"] == "TAG_RETENTION":
        _check_retention(data)
    if payload["type"] == "REPLICATION":
        _check_replication(data)


def _check_replication(data: Mapping[str, Any]) -> None:
    _check(set(data) == {"replication"}, "RP1", f"a REPLICATION event_data holds only "
           f"replication, got {sorted(data)}")
    replication = data["replication"]
    _check(isinstance(replication, Mapping), "RP1", "replication must be an object")
    extra = set(replication) - set(REPLICATION_KEYS)
    _check(not extra, "RP2", f"replication keys outside Harbor's struct: {sorted(extra)}")
    for key, kind in REPLICATION_KEYS.items():
        if key not in replication:
            continue
        value = replication[key]
        right = _is_int(value) if kind is int else isinstance(value, kind)
        _check(right, "RP2", f"{key} must be a {kind.__name__}, got {value!r}")
        # omitempty: Go never writes "", 0, false or an empty list for these
        _check(value not in ("", 0, False) and value != [], "RP2",
               f"{key} is omitempty in Harbor's struct: an empty {key} is left out")
    status = replication.get("job_status")
    _check(status in JOB_STATUSES, "RP3", f"job_status {status!r} is not a jobservice status")
    trigger = replication.get("trigger_type")
    _check(trigger is None or trigger in TRIGGER_TYPES, "RP3",
           f"trigger_type {trigger!r} is not MANUAL, SCHEDULE or EVENT")
    for key in ("src_resource", "dest_resource"):
        resource = replication.get(key)
        if resource is None:
            continue
        extra = set(resource) - REPLICATION_RESOURCE_KEYS
        _check(not extra, "RP4", f"{key} keys outside ReplicationResource: {sorted(extra)}")
        _check(isinstance(resource.get("registry_type"), str)
               and isinstance(resource.get("endpoint"), str), "RP4",
               f"{key} always has registry_type and endpoint (not omitempty)")
        _check(all(isinstance(v, str) and v != "" for k, v in resource.items()
                   if k not in ("registry_type", "endpoint")), "RP4",
               f"{key}: registry_name, provider and namespace are omitempty strings")
    for key, wanted in (("successful_artifact", "Success"), ("failed_artifact", "Error")):
        items = replication.get(key)
        if items is None:
            continue
        _check(status == wanted, "RP5", f"{key} goes only with job_status {wanted}")
        for item in items:
            _check(isinstance(item, Mapping) and set(item) <= ARTIFACT_INFO_KEYS, "RP5",
                   f"{key} items are ArtifactInfo objects, got {item!r}")
            _check(all(isinstance(item.get(k), str) for k in ("type", "status", "name_tag")),
                   "RP5", f"{key}: type, status and name_tag are strings")
            references = item.get("references")
            _check(isinstance(references, list)
                   and all(isinstance(r, str) for r in references), "RP6",
                   f"{key}: references is a list of strings (never null), got {references!r}")


def _check_scan(resources: list, repository: Mapping[str, Any] | None) -> None:
    _check(len(resources) == 1, "S1", f"a scan event has exactly one resource (Jenkins reads "
           f"[0]), got {len(resources)}")
    resource = resources[0]
    digest = resource.get("digest")
    _check(isinstance(digest, str) and _DIGEST.fullmatch(digest) is not None, "S1",
           f"Jenkins matches the build's image on resources[0].digest, got {digest!r}")
    url = resource.get("resource_url")
    _check(isinstance(url, str) and url != "" and "://" not in url, "S1",
           f"resource_url must be a pull reference without scheme, got {url!r}")
    _check(isinstance(repository, Mapping) and repository.get("namespace")
           and repository.get("name"), "S1", "Jenkins reads repository.namespace and .name")
    overview = resource.get("scan_overview", {})
    _check(isinstance(overview, Mapping), "S2", "scan_overview must be an object")
    for mime, summary in overview.items():
        _check(isinstance(mime, str) and isinstance(summary, Mapping), "S2",
               f"scan_overview maps a report MIME type to a summary, got {mime!r}")
        extra = set(summary) - SUMMARY_KEYS
        _check(not extra, "S2", f"summary keys outside NativeReportSummary: {sorted(extra)}")
        _check(summary.get("scan_status") in SCAN_STATUSES, "S2",
               f"scan_status {summary.get('scan_status')!r} is not a Jenkins scan status")
        # "" is what Harbor sends for a scan that did not succeed
        _check(summary.get("severity") in SEVERITIES | {""}, "S2",
               f"severity {summary.get('severity')!r} is not a Harbor severity")
        for key in ("duration", "complete_percent"):
            _check(_is_int(summary.get(key)), "S2", f"{key} must be an integer")
        for key in ("start_time", "end_time"):
            _check(isinstance(summary.get(key), str) and _TIME.fullmatch(summary[key]), "S2",
                   f"{key} must be an RFC 3339 time, got {summary.get(key)!r}")
        scanner = summary.get("scanner", {})
        _check(isinstance(scanner, Mapping) and set(scanner) <= {"name", "vendor", "version"}
               and all(isinstance(v, str) for v in scanner.values()), "S2",
               f"scanner must be {{name, vendor, version}} strings, got {scanner!r}")
        if "summary" in summary:
            counts = summary["summary"]
            _check(isinstance(counts, Mapping) and set(counts) <= {"total", "fixable", "summary"}
                   and _is_int(counts.get("total")) and _is_int(counts.get("fixable")), "S3",
                   f"summary must be {{total, fixable, summary}} with integers, got {counts!r}")
            per = counts.get("summary", {})
            _check(isinstance(per, Mapping) and set(per) <= SEVERITIES
                   and all(_is_int(n) for n in per.values()), "S3",
                   f"summary.summary maps Harbor severities to integers, got {per!r}")


RETENTION_KEYS = ("total", "retained", "harbor_hostname", "project_name", "retention_policy_id",
                  "retention_rule", "result", "deleted_artifact")
RULE_KEYS = frozenset({"template", "params", "tag_selectors", "scope_selectors"})
SELECTOR_KEYS = ("kind", "decoration", "pattern", "extras")
DELETED_KEYS = frozenset({"type", "status", "name_tag", "references", "fail_reason"})


def _check_retention(data: Mapping[str, Any]) -> None:
    _check(set(data) == {"retention"} and isinstance(data["retention"], Mapping), "R1",
           f"TAG_RETENTION event_data holds only the retention object, got {sorted(data)}")
    retention = data["retention"]
    keys = list(retention)
    _check(set(keys) <= set(RETENTION_KEYS), "R2",
           f"retention keys outside Harbor's struct: {sorted(set(keys) - set(RETENTION_KEYS))}")
    _check(keys == [k for k in RETENTION_KEYS if k in retention], "R2",
           f"retention keys out of the Go struct's order: {keys}")
    total, retained = retention.get("total"), retention.get("retained")
    _check(_is_int(total) and _is_int(retained) and 0 <= retained <= total, "R2",
           f"total and retained must be integers, 0 <= retained <= total: {total!r}, {retained!r}")
    if "retention_policy_id" in retention:
        _check(_is_int(retention["retention_policy_id"]) and retention["retention_policy_id"] > 0,
               "R2", "retention_policy_id is a positive integer (omitted when 0)")
    host = retention.get("harbor_hostname", "")
    _check(isinstance(host, str) and "://" not in host and ":" not in host and "/" not in host,
           "R3", f"harbor_hostname is a bare host, no scheme or port: {host!r}")
    for rule in retention.get("retention_rule", []):
        _check(isinstance(rule, Mapping) and set(rule) <= RULE_KEYS, "R4",
               f"a retention rule holds only {sorted(RULE_KEYS)}: {rule!r}")
        params = rule.get("params", {})
        _check(isinstance(params, Mapping) and all(_is_int(v) for v in params.values()), "R4",
               f"params map a template id to a number: {params!r}")
        selectors = list(rule.get("tag_selectors", []))
        for scope in rule.get("scope_selectors", {}).values():
            selectors.extend(scope)
        for selector in selectors:
            _check(isinstance(selector, Mapping) and tuple(selector) == SELECTOR_KEYS
                   and all(isinstance(v, str) for v in selector.values()), "R4",
                   f"a selector is exactly {{kind, decoration, pattern, extras}} (strings; "
                   f"extras is a JSON string): {selector!r}")
    _check(retention.get("result") == "SUCCESS", "R5",
           f"result is Harbor's literal SUCCESS, got {retention.get('result')!r}")
    deleted = retention.get("deleted_artifact", [])
    _check(isinstance(deleted, list) and len(deleted) == total - retained, "R6",
           f"deleted_artifact lists the total - retained deletions: {len(deleted)} for "
           f"{total} - {retained}")
    for item in deleted:
        _check(isinstance(item, Mapping) and set(item) <= DELETED_KEYS, "R6",
               f"deleted_artifact keys outside Harbor's ArtifactInfo: {item!r}")
        _check(item.get("type") == "image" and item.get("status") == "SUCCESS", "R6",
               f"a deleted artifact is type image, status SUCCESS: {item!r}")
        name_tag = item.get("name_tag")
        _check(isinstance(name_tag, str), "R6", f"name_tag must be a string: {name_tag!r}")
        path, at, digest = name_tag.partition("@")
        if at:
            _check(_DIGEST.fullmatch(digest) is not None, "R6", f"bad digest in {name_tag!r}")
        else:
            path, colon, tag = name_tag.rpartition(":")
            _check(bool(colon) and _TAG.fullmatch(tag) is not None, "R6",
                   f"name_tag is <repository>:<tag> or <repository>@<digest>: {name_tag!r}")
        _check(_PATH.fullmatch(path) is not None, "R6",
               f"name_tag repository {path!r} is not a repository path")


def _check_artifact(resources: list, repository: Mapping[str, Any] | None,
                    host: str | None) -> None:
    _check(len(resources) == 1, "B7",
           f"an artifact event has exactly one resource, got {len(resources)}")
    resource = resources[0]
    tag = resource.get("tag")
    _check(isinstance(tag, str) and tag != "", "B8", f"tag must be a non-empty string: {tag!r}")
    digest = resource.get("digest")
    _check(isinstance(digest, str) and _DIGEST.fullmatch(digest) is not None, "B9",
           f"digest must be sha256:<hex> of the manifest, got {digest!r}")
    _check(tag == digest or _TAG.fullmatch(tag) is not None, "B8",
           f"tag {tag!r} is neither a valid tag nor the digest")

    url = resource.get("resource_url")
    _check(isinstance(url, str) and url != "", "B10", f"resource_url missing: {url!r}")
    _check("://" not in url, "B10", f"resource_url must have no scheme: {url!r}")
    url_host, slash, rest = url.partition("/")
    _check(bool(slash) and _HOST.fullmatch(url_host) is not None, "B10",
           f"resource_url must start with a lower-case host[:port]: {url!r}")
    _check("." in url_host or ":" in url_host or url_host == "localhost", "B10",
           f"host {url_host!r} would be read as a Docker Hub path (no '.', ':' or localhost)")
    if host is not None:
        _check(url_host == host, "B11", f"resource_url host {url_host!r} is not the pull "
               f"address {host!r}")
    if tag == digest:
        path, sep, reference = rest.rpartition("@")
        _check(sep == "@", "B10", f"a digest reference is written with '@': {url!r}")
    else:
        path, sep, reference = rest.rpartition(":")
        _check(sep == ":" and "@" not in rest, "B10", f"a tag is written with ':': {url!r}")
    _check(_PATH.fullmatch(path) is not None, "B10", f"repository path {path!r} is invalid")
    _check(reference == tag, "B12", f"resource_url reference {reference!r} != tag {tag!r}")

    _check(isinstance(repository, Mapping), "B13", "an artifact event has a repository")
    full = repository.get("repo_full_name")
    namespace = repository.get("namespace")
    name = repository.get("name")
    _check(path == full, "B13", f"resource_url path {path!r} != repo_full_name {full!r}")
    _check(isinstance(namespace, str) and namespace != "" and "/" not in namespace, "B13",
           f"namespace must be the first path segment, got {namespace!r}")
    _check(isinstance(name, str) and name != "", "B13", f"name must be non-empty, got {name!r}")
    _check(full == f"{namespace}/{name}", "B13",
           f"repo_full_name {full!r} != namespace/name {namespace!r}/{name!r}")
    _check(repository.get("repo_type") in ("public", "private"), "B14",
           f"repo_type must be public or private, got {repository.get('repo_type')!r}")


def assert_request_compatible(method: str, url: str, headers: Mapping[str, str], body: bytes,
                              *, address: str, auth_header: str = "") -> None:
    """Raise AssertionError naming the first broken rule of T1-T5."""
    lower = {k.lower(): v for k, v in headers.items()}
    _check(method == "POST", "T1", f"method must be POST, got {method!r}")
    _check(lower.get("content-type") == "application/json", "T2",
           f"Content-Type must be exactly application/json, got {lower.get('content-type')!r}")
    if auth_header:
        _check(lower.get("authorization") == auth_header, "T3",
               "Authorization must be the configured secret verbatim, "
               f"got {lower.get('authorization')!r}")
    else:
        _check("authorization" not in lower, "T3", "no secret configured: no Authorization")
    _check(len(body) <= MAX_BODY, "T4", f"body of {len(body)} bytes exceeds 1 MiB")
    _check(url == address, "T5", f"URL {url!r} must be the configured address {address!r}")
