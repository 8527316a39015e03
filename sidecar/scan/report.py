"""An adapter's vulnerability report (HarborVulnerabilityReport, spec v1.1), checked as Harbor
reads it. Pure.

Harbor decodes the report into Go structs: a field of the wrong JSON type fails the whole
report, a missing or null one is its zero value. That is what "parses" means here, with one
addition: an item's severity must be one of Harbor's seven, because strict receivers (the
Jenkins plugin reads severities into an enum) refuse a summary keyed by anything else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: Harbor's severities, lowest first (src/pkg/scan/vuln/severity.go); None and Unknown rank 0.
SEVERITIES = ("None", "Unknown", "Negligible", "Low", "Medium", "High", "Critical")
_RANK = {"None": 0, "Unknown": 0, "Negligible": 1, "Low": 2, "Medium": 3, "High": 4,
         "Critical": 5}


class ReportError(ValueError):
    """The report does not parse; the text says where (never quotes the whole body)."""


@dataclass(frozen=True)
class Vulnerability:
    id: str
    package: str
    version: str
    fix_version: str
    severity: str

    @property
    def key(self) -> tuple[str, str, str]:
        """Harbor counts one item per id, package and version, however often it is listed."""
        return (self.id, self.package, self.version)


@dataclass(frozen=True)
class ScannerInfo:
    name: str
    vendor: str
    version: str


@dataclass(frozen=True)
class VulnerabilityReport:
    vulnerabilities: tuple[Vulnerability, ...]
    scanner: ScannerInfo | None
    generated_at: str = ""


def rank(severity: str) -> int:
    return _RANK[severity]


def _string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ReportError(f"{where} must be a string, not {type(value).__name__}")
    return value


def _typed(value: Any, kinds: tuple[type, ...], what: str, where: str) -> None:
    # JSON true/false decode as bool, which Python counts as an int: Go would refuse them
    if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
        raise ReportError(f"{where} must be {what}, not {type(value).__name__}")


def parse_report(body: bytes | str) -> VulnerabilityReport:
    """Decode and check a report body; ReportError says what is wrong and where."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportError(f"the report is not JSON ({exc})") from None
    return report_from(data)


def report_from(data: Any) -> VulnerabilityReport:
    if not isinstance(data, dict):
        raise ReportError(f"the report must be a JSON object, not {type(data).__name__}")
    generated_at = _string(data.get("generated_at"), "generated_at")
    _string(data.get("severity"), "severity")
    scanner = None
    raw_scanner = data.get("scanner")
    if raw_scanner is not None:
        if not isinstance(raw_scanner, dict):
            raise ReportError("scanner must be an object")
        scanner = ScannerInfo(*(_string(raw_scanner.get(k), f"scanner.{k}")
                                for k in ("name", "vendor", "version")))
    raw_items = data.get("vulnerabilities")
    if raw_items is None:
        raw_items = []
    if not isinstance(raw_items, list):
        raise ReportError("vulnerabilities must be a list")
    return VulnerabilityReport(
        vulnerabilities=tuple(_item(raw, f"vulnerabilities[{i}]")
                              for i, raw in enumerate(raw_items)),
        scanner=scanner, generated_at=generated_at)


def _item(raw: Any, where: str) -> Vulnerability:
    if not isinstance(raw, dict):
        raise ReportError(f"{where} must be an object")
    fields = {k: _string(raw.get(k), f"{where}.{k}")
              for k in ("id", "package", "version", "fix_version", "description")}
    severity = raw.get("severity")
    if severity not in _RANK:
        raise ReportError(f"{where}.severity {severity!r} is not one of Harbor's severities "
                          f"({', '.join(SEVERITIES)})")
    links = raw.get("links")
    _typed(links, (list,), "a list", f"{where}.links")
    for index, link in enumerate(links or []):
        _string(link, f"{where}.links[{index}]")
    cwe_ids = raw.get("cwe_ids")
    _typed(cwe_ids, (list,), "a list", f"{where}.cwe_ids")
    for index, cwe in enumerate(cwe_ids or []):
        _string(cwe, f"{where}.cwe_ids[{index}]")
    _typed(raw.get("vendor_attributes"), (dict,), "an object", f"{where}.vendor_attributes")
    cvss = raw.get("preferred_cvss")
    _typed(cvss, (dict,), "an object", f"{where}.preferred_cvss")
    for key in ("score_v3", "score_v2"):
        _typed((cvss or {}).get(key), (int, float), "a number", f"{where}.preferred_cvss.{key}")
    for key in ("vector_v3", "vector_v2"):
        _string((cvss or {}).get(key), f"{where}.preferred_cvss.{key}")
    return Vulnerability(id=fields["id"], package=fields["package"], version=fields["version"],
                         fix_version=fields["fix_version"], severity=severity)
