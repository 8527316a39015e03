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
from typing import Any

import sidecar.scan.summary as summary
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
