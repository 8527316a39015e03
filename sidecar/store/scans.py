"""Scanning in the store: the scanner registrations and projects' scan settings every worker
reads (synced from the rules file with the policies), and scan jobs queued once per digest.

A scan is a job (store.jobs) of kind "scan" keyed `scan:<scanner>:<digest>:<n>`, its n-th
scan of that digest by that scanner. `ArtifactScan` keeps n and the latest job, so queueing
is one read and two writes in the caller's transaction, and two workers (or sidecars) queueing
the same scan race on the job key: one job is made, the other call is a no-op.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sidecar.rules.scanners import Scanner
from sidecar.store import clock
from sidecar.store import jobs as job_store
from sidecar.store.jobs import JobView
from sidecar.store.models import FAILED
from sidecar.store.models import JOB_STATUSES
from sidecar.store.models import PENDING
from sidecar.store.models import RUNNING
from sidecar.store.models import SUCCEEDED
from sidecar.store.models import ArtifactScan
from sidecar.store.models import Job
from sidecar.store.models import Project
from sidecar.store.models import Scanner as ScannerRow
from sidecar.store.models import database

KIND = "scan"
RULES = "rules"
#: Attempts of one scan job. Transient failures are retried until the scan's deadline
#: (sidecar.scan.timeout_seconds) whatever the count; this bounds workers killed by a scan.
MAX_ATTEMPTS = 10
#: What started a scan: a push to an auto_scan project, or someone asking (API, CLI).
AUTO = "auto"
MANUAL = "manual"
_SCANNER_FIELDS = ("url", "auth", "access_credential", "skip_cert_verify", "is_default")


# -- registrations and project settings (written by the rules sync) -----------------------

def sync_scanners(scanners: Iterable[Scanner], now: float) -> int:
    """Make the rules-file registrations equal to `scanners`; returns how many changed.

    Call inside the rules sync's transaction, so workers see the scanners and the projects
    naming them together.
    """
    wanted = {s.name: {"url": s.url, "auth": s.auth, "access_credential": s.access_credential,
                       "skip_cert_verify": s.skip_cert_verify, "is_default": s.default}
              for s in scanners}
    stored = {row.name: row for row in ScannerRow.select()}
    changed = 0
    gone = [row.id for name, row in stored.items() if name not in wanted]
    if gone:
        changed += ScannerRow.delete().where(ScannerRow.id.in_(gone)).execute()
    for name, fields in wanted.items():
        row = stored.get(name)
        if row is None:
            ScannerRow.insert(name=name, source=RULES, created_at=now, updated_at=now,
                              **fields).execute()
            changed += 1
        elif any(getattr(row, key) != value for key, value in fields.items()):
            ScannerRow.update(updated_at=now, **fields).where(ScannerRow.id == row.id).execute()
            changed += 1
    return changed


def _scanner(row: ScannerRow) -> Scanner:
    return Scanner(name=row.name, url=row.url, auth=row.auth,
                   access_credential=row.access_credential,
                   skip_cert_verify=row.skip_cert_verify, default=row.is_default)


def scanners() -> tuple[Scanner, ...]:
    return tuple(_scanner(row) for row in ScannerRow.select().order_by(ScannerRow.name))


@dataclass(frozen=True)
class Registration:
    """A scanner as the API shows it: the registration and when the file declared it."""

    scanner: Scanner
    created_at: float
    updated_at: float


def registrations() -> tuple[Registration, ...]:
    return tuple(Registration(_scanner(row), row.created_at, row.updated_at)
                 for row in ScannerRow.select().order_by(ScannerRow.name))


def scanner(name: str) -> Scanner | None:
    """A registration by name; "" is the default one. None when there is no such scanner."""
    query = ScannerRow.select()
    query = query.where((ScannerRow.is_default == True) if not name  # noqa: E712
                        else (ScannerRow.name == name))
    row = query.first()
    return _scanner(row) if row is not None else None


def auto_scan_projects(names: Iterable[str]) -> dict[str, str]:
    """Of these projects, those with auto_scan on, and the scanner each names ("" = default)."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = Project.select(Project.name, Project.scanner).where(
        Project.name.in_(wanted) & (Project.auto_scan == True))  # noqa: E712 - peewee SQL
    return {row.name: row.scanner for row in rows}


def find_project(ref: str, by_name: bool = False) -> tuple[int, str] | None:
    """Harbor's `project_name_or_id`: (id, name), or None. Digits are an id unless
    `by_name` (X-Is-Resource-Name)."""
    if ref.isdigit() and not by_name:
        row = Project.get_or_none(Project.id == int(ref))
    else:
        row = Project.get_or_none(Project.name == ref)
    return (row.id, row.name) if row is not None else None


def project_scanner(project: str) -> Scanner | None:
    """The scanner a project's scans use: the one it names, else the default."""
    row = Project.select(Project.scanner).where(Project.name == project).first()
    return scanner(row.scanner if row is not None else "")


# -- queueing ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScanOrder:
    """One artifact to scan, and who asked (the operator its events name)."""

    scanner: str
    repository: str
    digest: str
    tag: str = ""
    operator: str = ""
    trigger: str = AUTO
    #: the digest of the index this artifact was reached through ("" when it was asked for)
    index: str = ""
    #: the Host the push or the API call came through (events' resource_url)
    host: str = ""

    @property
    def project(self) -> str:
        return self.repository.partition("/")[0] if "/" in self.repository else ""

    @property
    def title(self) -> str:
        where = f":{self.tag}" if self.tag else f"@{self.digest}"
        return f"{self.repository}{where}"

    def payload(self) -> dict[str, Any]:
        out = {"scanner": self.scanner, "repository": self.repository, "digest": self.digest,
               "tag": self.tag, "trigger": self.trigger}
        if self.index:
            out["index"] = self.index
        if self.host:
            out["host"] = self.host
        return out

    @classmethod
    def from_payload(cls, payload: dict[str, Any], operator: str = "") -> ScanOrder:
        return cls(scanner=payload["scanner"], repository=payload["repository"],
                   digest=payload["digest"], tag=payload.get("tag", ""), operator=operator,
                   trigger=payload.get("trigger", AUTO), index=payload.get("index", ""),
                   host=payload.get("host", ""))


@dataclass(frozen=True)
class Queued:
    """What `enqueue` did: the new job's id, or the scan that made it unnecessary."""

    job_id: int | None
    existing: JobView | None = None

    @property
    def conflict(self) -> bool:
        """A scan of this digest is already waiting or running (Harbor answers 409)."""
        return self.job_id is None and self.existing is not None and \
            self.existing.status in (PENDING, RUNNING)


def enqueue(order: ScanOrder, now: float | None = None) -> Queued:
    """Queue a scan unless one of the same digest by the same scanner is waiting or running.

    An index's child reached by an automatic scan is also left alone when it was already
    scanned successfully: its own push scanned it (one scan per pushed digest). Runs in the
    caller's transaction (a savepoint), so a PUSH and the scan it starts commit together.
    """
    now = clock.now() if now is None else now
    with database.atomic():
        row = ArtifactScan.get_or_none((ArtifactScan.scanner == order.scanner)
                                       & (ArtifactScan.digest == order.digest))
        latest = job_store.get(row.latest_job) if row and row.latest_job else None
        if latest is not None:
            if latest.status in (PENDING, RUNNING):
                return Queued(None, latest)
            if order.index and order.trigger == AUTO and latest.status == SUCCEEDED:
                return Queued(None, latest)
        number = (row.scans if row else 0) + 1
        key = f"{KIND}:{order.scanner}:{order.digest}:{number}"
        job_id = job_store.enqueue(KIND, order.payload(), key=key, project=order.project,
                                   title=order.title, operator=order.operator,
                                   max_attempts=MAX_ATTEMPTS, now=now)
        if job_id is None:  # someone queued this very scan first
            return Queued(None, job_store.find(key))
        ArtifactScan.insert(scanner=order.scanner, digest=order.digest,
                            repository=order.repository, scans=number, latest_job=job_id,
                            updated_at=now).on_conflict(
            conflict_target=[ArtifactScan.scanner, ArtifactScan.digest],
            update={ArtifactScan.scans: number, ArtifactScan.latest_job: job_id,
                    ArtifactScan.repository: order.repository,
                    ArtifactScan.updated_at: now}).execute()
    return Queued(job_id)


# -- reading ---------------------------------------------------------------------------

def latest(digest: str, scanner_name: str) -> JobView | None:
    """The newest scan of a digest by a scanner (its result is the artifact's overview)."""
    row = ArtifactScan.get_or_none((ArtifactScan.scanner == scanner_name)
                                   & (ArtifactScan.digest == digest))
    if row is None or row.latest_job is None:
        return None
    return job_store.get(row.latest_job)


def running_for(digest: str) -> list[JobView]:
    """Scans of a digest still waiting or running (by any scanner): what a stop stops."""
    ids = [row.latest_job for row in ArtifactScan.select(ArtifactScan.latest_job)
           .where(ArtifactScan.digest == digest) if row.latest_job is not None]
    if not ids:
        return []
    rows = Job.select().where(Job.id.in_(ids) & Job.status.in_([PENDING, RUNNING]))
    return [job_store.view(row) for row in rows]


def listing(*, project: str | None = None, statuses: Iterable[str] = (), limit: int = 20,
            offset: int = 0) -> tuple[int, list[JobView]]:
    """Scan jobs, newest first."""
    return job_store.listing(kinds=(KIND,), project=project, statuses=tuple(statuses),
                             limit=limit, offset=offset)


# -- status ----------------------------------------------------------------------------

def counts() -> dict[str, int]:
    """Scan jobs by status (metrics)."""
    return job_store.counts((KIND,)).get(KIND, {status: 0 for status in JOB_STATUSES})


def scan_view(job: JobView) -> dict[str, Any]:
    """One scan for status pages and the UI: what, how it went, why (no secret: reasons are
    the adapter client's and the registry client's, which quote none)."""
    result = job.result
    overview = result.get("scan_overview") or {}
    first = next(iter(overview.values()), {}) if isinstance(overview, dict) else {}
    counts = first.get("summary") or {}
    status = job.status
    reason = job.last_error
    if status == SUCCEEDED and result.get("skipped"):
        status, reason = "skipped", result["skipped"]
    elif status == SUCCEEDED and result.get("children") is not None:
        status = "index"
        reason = (f"{len(result.get('queued') or [])} of {len(result['children'])} children "
                  "queued")
    return {
        "id": job.id, "artifact": job.title, "digest": job.payload.get("digest", ""),
        "scanner": job.payload.get("scanner", ""), "status": status, "reason": reason,
        "operator": job.operator, "trigger": job.payload.get("trigger", AUTO),
        "attempts": job.attempts, "created_at": job.created_at, "started_at": job.started_at,
        "finished_at": job.finished_at,
        "severity": first.get("severity", "") if job.status == SUCCEEDED else "",
        "total": counts.get("total"), "fixable": counts.get("fixable"),
        "by_severity": counts.get("summary") or {},
    }


def status_section(limit: int = 20, project: str | None = None) -> dict[str, Any]:
    """Scans for /sidecar/status and a project's page: counts by status, the running and
    waiting ones, the latest failures (with their reasons), the most recent."""
    by_status = counts() if project is None else {}
    _, active = listing(project=project, statuses=(PENDING, RUNNING), limit=limit)
    _, failed = listing(project=project, statuses=(FAILED,), limit=limit)
    _, recent = listing(project=project, limit=limit)
    return {"counts": by_status, "active": [scan_view(j) for j in active],
            "failed": [scan_view(j) for j in failed],
            "recent": [scan_view(j) for j in recent]}
