"""An artifact's `scan_overview` from its latest scan job, whatever state the job is in. Pure.

Harbor keeps a report row per report type from the moment a scan is asked for; the sidecar
keeps the scan job, and derives the same summaries from it: the completed ones the job stored,
Harbor's `Error` / `Stopped` summaries for a job that failed or was stopped, and `Pending` /
`Running` ones (no counts, no scanner) while it waits or runs. Report ids are derived from the
job, so a scan resumed after a crash, its events and the API all name the same ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sidecar.scan.summary as summary
from sidecar.scan.report import rank
from sidecar.scan.spec import GENERIC_REPORT

#: Job statuses (store.models) -> Harbor's report status words.
_STATUS = {"pending": "Pending", "running": "Running", "succeeded": summary.SUCCESS,
           "failed": summary.ERROR, "stopped": summary.STOPPED}
_NAMESPACE = uuid.UUID("6f1d7a52-3c1b-4b43-9c33-5c1f3e0e7a11")


def report_id(job_id: int, mime_type: str) -> str:
    """The id of one report of one scan: the same on every attempt of the job."""
    return str(uuid.uuid5(_NAMESPACE, f"{job_id}:{mime_type}"))


def report_types(state: Mapping[str, Any]) -> tuple[str, ...]:
    """The reports a scan makes; before the adapter's metadata was read, the generic one."""
    return tuple(state.get("report_types") or (GENERIC_REPORT,))


def unfinished(job_id: int, status: str, state: Mapping[str, Any], *, start_time: float,
               end_time: float) -> dict[str, dict[str, Any]]:
    """Harbor's summaries of a scan that did not (or did not yet) succeed, per report type.

    `status` is a job status: failed -> Error, stopped -> Stopped, pending/running as is.
    """
    word = _STATUS[status]
    start = float(state.get("start_time") or start_time)
    end = start if status in ("pending", "running") else max(start, end_time)
    return {mime: summary.NativeReportSummary(
                report_id=report_id(job_id, mime), scan_status=word, severity="",
                start_time=start, end_time=end).as_dict()
            for mime in report_types(state)}


def scan_overview(job_id: int, status: str, state: Mapping[str, Any],
                  result: Mapping[str, Any], *, start_time: float,
                  end_time: float) -> dict[str, dict[str, Any]]:
    """The overview the artifact API answers for a scan job (empty for one that was
    skipped or walked an index: nothing of its own was scanned)."""
    if result.get("skipped") or result.get("children") is not None:
        return {}
    stored = result.get("scan_overview")
    if isinstance(stored, Mapping) and stored:
        return {mime: dict(value) for mime, value in stored.items()}
    if status == "succeeded":
        return {}
    return unfinished(job_id, status, state, start_time=start_time, end_time=end_time)


def _seconds_between(start: str, end: str) -> int:
    try:
        return max(0, int(datetime.fromisoformat(end).timestamp())
                   - int(datetime.fromisoformat(start).timestamp()))
    except ValueError:
        return 0


#: Which status a merged summary shows: the one furthest from done wins.
_MERGE_ORDER = ("Running", "Pending", "Error", "Stopped", "Success")


def merge(summaries: list[Mapping[str, Any]], report: str) -> dict[str, Any]:
    """An index's summary from its children's (Harbor merges them for the artifact API):
    counts added, the highest severity, the earliest start and latest end, the status of the
    child furthest from done. `report` is the merged summary's report id."""
    statuses = [s.get("scan_status", "") for s in summaries]
    status = next((word for word in _MERGE_ORDER if word in statuses), "Success")
    severities = [s["severity"] for s in summaries if s.get("severity")]
    starts = [s["start_time"] for s in summaries if s.get("start_time")]
    ends = [s["end_time"] for s in summaries if s.get("end_time")]
    out: dict[str, Any] = {
        "report_id": report, "scan_status": status,
        "severity": max(severities, key=rank) if severities and status == "Success" else "",
    }
    counted = [s["summary"] for s in summaries if isinstance(s.get("summary"), Mapping)]
    start, end = min(starts, default=""), max(ends, default="")
    out["duration"] = _seconds_between(start, end)
    if status == "Success" and counted:
        per: dict[str, int] = {}
        for item in counted:
            for severity, number in (item.get("summary") or {}).items():
                per[severity] = per.get(severity, 0) + number
        out["summary"] = {"total": sum(c.get("total", 0) for c in counted),
                          "fixable": sum(c.get("fixable", 0) for c in counted),
                          "summary": dict(sorted(per.items()))}
    out["start_time"], out["end_time"] = start, end
    scanner = next((s["scanner"] for s in summaries if s.get("scanner")), None)
    if scanner is not None and status == "Success":
        out["scanner"] = dict(scanner)
    done = sum(1 for word in statuses if word == "Success")
    out["complete_percent"] = 100 * done // len(summaries) if summaries else 0
    return out
