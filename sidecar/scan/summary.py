"""Harbor's NativeReportSummary of one report: what `scan_overview` carries. Pure.

As Harbor 2.10 computes it (src/pkg/scan/report/summary.go GenerateNativeSummary): items
counted once per id/package/version; the overall severity is the highest item's (None
when there are none); `summary.summary` holds only the severities present; a scan that did
not succeed has no counts, no scanner, severity "" and complete_percent 0.

One departure: where Harbor writes `"summary": null` for a failed or stopped scan, the key
is left out (no null on our wire: typed receivers such as pydantic's refuse it, and every
decoder reads a missing key as Harbor's nil).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from typing import Any

from sidecar.scan.report import ScannerInfo
from sidecar.scan.report import VulnerabilityReport
from sidecar.scan.report import rank

#: Harbor's job statuses a finished scan ends in, and the event each one fires.
SUCCESS = "Success"
ERROR = "Error"
STOPPED = "Stopped"


@dataclass(frozen=True)
class Counts:
    total: int
    fixable: int
    by_severity: tuple[tuple[str, int], ...]  # sorted by name, only those present


@dataclass(frozen=True)
class NativeReportSummary:
    report_id: str
    scan_status: str
    severity: str
    start_time: float  # unix seconds
    end_time: float
    counts: Counts | None = None
    scanner: ScannerInfo | None = None
    complete_percent: int = 0

    @property
    def duration(self) -> int:
        """Whole seconds, as Harbor subtracts Unix() values (never negative)."""
        return max(0, math.floor(self.end_time) - math.floor(self.start_time))

    def as_dict(self) -> dict[str, Any]:
        """Harbor's JSON, keys in its Go field order."""
        out: dict[str, Any] = {
            "report_id": self.report_id,
            "scan_status": self.scan_status,
            "severity": self.severity,
            "duration": self.duration,
        }
        if self.counts is not None:
            out["summary"] = {"total": self.counts.total, "fixable": self.counts.fixable,
                              "summary": dict(self.counts.by_severity)}
        out["start_time"] = go_time(self.start_time)
        out["end_time"] = go_time(self.end_time)
        if self.scanner is not None:
            out["scanner"] = {"name": self.scanner.name, "vendor": self.scanner.vendor,
                              "version": self.scanner.version}
        out["complete_percent"] = self.complete_percent
        return out


def count(report: VulnerabilityReport) -> tuple[str, Counts]:
    """(overall severity, counts) of a report, items de-duplicated as Harbor does."""
    seen: set[tuple[str, str, str]] = set()
    per: dict[str, int] = {}
    fixable = 0
    severity = "None"
    for item in report.vulnerabilities:
        if item.key in seen:
            continue
        seen.add(item.key)
        per[item.severity] = per.get(item.severity, 0) + 1
        if rank(item.severity) > rank(severity):
            severity = item.severity
        if item.fix_version:
            fixable += 1
    return severity, Counts(total=len(seen), fixable=fixable,
                            by_severity=tuple(sorted(per.items())))


def completed(report: VulnerabilityReport, *, report_id: str, start_time: float,
              end_time: float) -> NativeReportSummary:
    """The summary of a successful scan."""
    severity, counts = count(report)
    return NativeReportSummary(report_id=report_id, scan_status=SUCCESS, severity=severity,
                               start_time=start_time, end_time=end_time, counts=counts,
                               scanner=report.scanner, complete_percent=100)


def unfinished(status: str, *, report_id: str, start_time: float,
               end_time: float) -> NativeReportSummary:
    """The summary of a scan that failed (`Error`) or was stopped (`Stopped`)."""
    if status not in (ERROR, STOPPED):
        raise ValueError(f"not a final unsuccessful status: {status!r}")
    return NativeReportSummary(report_id=report_id, scan_status=status, severity="",
                               start_time=start_time, end_time=end_time)


def go_time(timestamp: float) -> str:
    """RFC 3339 in UTC as Go's time.Time marshals it: fractions only when there are any,
    trailing zeros dropped (`2020-11-06T09:07:52.12667Z`), microseconds as Harbor stores."""
    moment = datetime.fromtimestamp(round(timestamp, 6), UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"
