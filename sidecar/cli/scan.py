"""`sidecar scan REPO:TAG|REPO@DIGEST [--wait]`: what Harbor's scan API does, from a shell.

The scan is queued in the store named by --config/--database (operator `admin`, as through
the API); a running `sidecar serve` on that store runs it. With --wait the command follows the
scan (an index: each child's) until it ends and prints the outcome. Exit 0 when every scan
completed, 1 when one failed or was stopped, 2 when the scan could not be asked for.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from sidecar.cli.store_access import add_wait_arguments
from sidecar.cli.store_access import open_store
from sidecar.cli.store_access import say

#: what Harbor's API names the user of a manual scan; events name it as the operator
OPERATOR = "admin"


def add_parser(sub) -> None:
    parser = sub.add_parser("scan", help="scan an artifact with its project's scanner")
    parser.add_argument("reference", metavar="REPO:TAG|REPO@DIGEST",
                        help="e.g. library/app:1.0 or library/app@sha256:...")
    add_wait_arguments(parser, "scan", default=None,
                       timeout_help="seconds to wait (default: the scan deadline, "
                                    "sidecar.scan.timeout_seconds, plus a minute)")
    parser.add_argument("--config", help="harbor.yml naming the upstream, the database and "
                        "sidecar.registry_credential")
    parser.add_argument("--database", help="sqlite:///PATH or postgresql://... "
                        "(overrides --config)")
    parser.add_argument("--upstream", help="registry URL (overrides --config)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=cmd_scan)


def split_reference(text: str) -> tuple[str, str] | None:
    """`repo:tag` or `repo@digest` -> (repository, reference); None if neither."""
    if "@" in text:
        repository, _, reference = text.partition("@")
    else:
        head, sep, tag = text.rpartition(":")
        if not sep or "/" in tag:
            return None
        repository, reference = head, tag
    if not repository or not reference or "/" not in repository:
        return None
    return repository, reference


def cmd_scan(args: argparse.Namespace) -> int:
    parsed = split_reference(args.reference)
    if parsed is None:
        print(f"sidecar scan: {args.reference!r} is not PROJECT/REPO:TAG or "
              "PROJECT/REPO@DIGEST", file=sys.stderr)
        return 2
    settings = open_store(args, upstream=args.upstream)
    if settings is None:
        return 2
    from sidecar.registry import RegistryClient
    from sidecar.scan.manual import ScanRefused
    from sidecar.scan.manual import request_scan
    from sidecar.store.executor import Executor

    executor = Executor()
    registry = RegistryClient(settings.upstream, settings.registry_credential)
    repository, reference = parsed
    try:
        artifact, job = request_scan(executor, registry, repository, reference,
                                     operator=OPERATOR)
    except ScanRefused as exc:
        print(f"sidecar scan: {exc.message} ({exc.status})", file=sys.stderr)
        return 2
    where = f"{repository}@{artifact.digest}"
    if not args.wait:
        say(args, {"queued": job.id, "artifact": where},
             f"scan of {where} queued (job {job.id}); a running sidecar scans it")
        return 0
    timeout = args.timeout if args.timeout is not None else settings.scan_timeout_seconds + 60
    outcome = _follow(executor, job.id, time.monotonic() + timeout)
    if outcome is None:
        print(f"sidecar scan: {where} was not scanned within {timeout:g}s (is `sidecar "
              "serve` running on this database?)", file=sys.stderr)
        return 1
    ok = all(item["status"] == "succeeded" for item in outcome)
    say(args, {"artifact": where, "scans": outcome},
         "\n".join(_line(item) for item in outcome))
    return 0 if ok else 1


def _follow(executor, job_id: int, deadline: float) -> list[dict[str, Any]] | None:
    """Wait for the job (and, for an index, its children's jobs); their outcomes."""
    from sidecar.store import jobs as job_store
    from sidecar.store import scans as scan_store

    pending = [job_id]
    done: list[dict[str, Any]] = []
    while pending:
        if time.monotonic() > deadline:
            return None
        job = executor.run(job_store.get, pending[0])
        if job is None or not job.finished:
            time.sleep(0.5)
            continue
        pending.pop(0)
        children = job.result.get("children")
        if children is not None:  # an index: follow each child's latest scan
            scanner = job.payload["scanner"]
            for digest in children:
                child = executor.run(scan_store.latest, digest, scanner)
                if child is not None:
                    pending.append(child.id)
            continue
        done.append({"digest": job.payload["digest"], "status": job.status,
                     "reason": job.last_error, "skipped": job.result.get("skipped", ""),
                     "scan_overview": job.result.get("scan_overview") or {}})
    return done


def _line(item: dict[str, Any]) -> str:
    digest = item["digest"]
    if item["skipped"]:
        return f"{digest}: not scanned ({item['skipped']})"
    if item["status"] != "succeeded":
        return f"{digest}: {item['status']}: {item['reason']}"
    parts = []
    for mime, summary in sorted(item["scan_overview"].items()):
        counts = summary.get("summary") or {}
        per = ", ".join(f"{k} {v}" for k, v in sorted((counts.get("summary") or {}).items()))
        parts.append(f"{digest}: {summary.get('severity')} ({counts.get('total', 0)} "
                     f"vulnerabilities, {counts.get('fixable', 0)} fixable"
                     f"{': ' + per if per else ''}) [{mime}]")
    return "\n".join(parts) or f"{digest}: completed"

