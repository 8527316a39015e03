"""`sidecar quota`: storage quotas per project, and `sidecar quota recalc [PROJECT]`.

Reads and writes the store named by --database or --config, as the other operator commands
do. A recalculation is a job: a running sidecar's workers walk the registry with its
`sidecar.registry_credential`; `--wait` follows it to the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

BAR_WIDTH = 20


def add_parser(sub, store_args: Callable[[argparse.ArgumentParser], None],
               open_store: Callable[[argparse.Namespace], bool]) -> None:
    """Register `quota` on `sidecar`'s subparsers; `store_args`/`open_store` are the CLI's
    own --config/--database/--json handling."""
    parser = sub.add_parser("quota", help="storage quotas per project (used / limit)")
    store_args(parser)
    parser.set_defaults(func=lambda args: cmd_quota(args, open_store))
    actions = parser.add_subparsers(dest="quota_command")
    recalc = actions.add_parser(
        "recalc", help="rebuild usage from the registry (a background job of the sidecar)")
    recalc.add_argument("project", nargs="?", help="one project (default: every project "
                        "with a quota)")
    recalc.add_argument("--wait", action="store_true",
                        help="wait until the recalculation ends and print the new usage")
    recalc.add_argument("--timeout", type=float, default=600.0,
                        help="seconds --wait waits at most (default 600)")
    store_args(recalc)
    recalc.set_defaults(func=lambda args: cmd_recalc(args, open_store))


def bar(percent: float | None, width: int = BAR_WIDTH) -> str:
    """`[#######-------------]`: a usage bar read at a glance (full past the limit)."""
    if percent is None:
        return "[" + " " * width + "]"
    filled = min(width, round(percent * width / 100))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def quota_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no project has a quota (set one in the rules file or through the API)"
    name_width = max(len("PROJECT"), *(len(row["project"]) for row in rows))
    lines = [f"{'PROJECT':<{name_width}}  {'USED':>10}  {'LIMIT':>10}  {'':{BAR_WIDTH + 2}}  "
             f"{'%':>4}  STATE"]
    for row in rows:
        percent = "" if row["percent"] is None else f"{row['percent']:.0f}"
        state = {"warning": f"over {row['warning_percent']}%", "ok": ""}.get(row["state"],
                                                                          row["state"])
        if row["recalculating"]:
            state = ", ".join(filter(None, [state, "recalculating"]))
        lines.append(f"{row['project']:<{name_width}}  {row['used_text']:>10}  "
                     f"{row['limit_text']:>10}  {bar(row['percent'])}  {percent:>4}  "
                     f"{state}".rstrip())
    return "\n".join(lines)


def cmd_quota(args: argparse.Namespace, open_store: Callable[[argparse.Namespace], bool]
              ) -> int:
    if not open_store(args):
        return 2
    from sidecar.api.ops.report import quota_json
    from sidecar.store import quota_limits

    rows = [quota_json(usage) for usage in quota_limits.all_usage()]
    print(json.dumps(rows, indent=2) if args.json else quota_table(rows))
    return 0


def cmd_recalc(args: argparse.Namespace, open_store: Callable[[argparse.Namespace], bool]
               ) -> int:
    if not open_store(args):
        return 2
    from sidecar.api.ops.report import quota_json
    from sidecar.store import jobs as job_store
    from sidecar.store import quota_limits
    from sidecar.store import quota_recalc

    if args.project:
        found = quota_recalc.request_recalc(args.project, operator="sidecar quota recalc")
        if found is None:
            print(f"sidecar quota recalc: project {args.project!r} has no quota",
                  file=sys.stderr)
            return 1
        recalcs = [found]
    else:
        recalcs = quota_recalc.request_all(operator="sidecar quota recalc")
        if not recalcs:
            print("sidecar quota recalc: no project has a quota", file=sys.stderr)
            return 1
    for recalc in recalcs:
        what = "queued as job" if recalc.queued else "already queued as job"
        if not args.json:
            print(f"{recalc.project}: recalculation {what} {recalc.job_id}")
    if not args.wait:
        if args.json:
            print(json.dumps([{"project": r.project, "job": r.job_id, "queued": r.queued}
                              for r in recalcs], indent=2))
        return 0
    deadline = time.monotonic() + args.timeout
    pending = {r.job_id: r.project for r in recalcs}
    ended: dict[str, Any] = {}
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            job = job_store.get(job_id)
            if job is None or job.finished:
                ended[pending.pop(job_id)] = job
        if pending:
            time.sleep(0.5)
    failed = [project for project, job in ended.items()
              if job is None or job.status != "succeeded"]
    rows = [quota_json(u) for u in quota_limits.all_usage() if u.project in ended]
    if args.json:
        print(json.dumps({"usage": rows, "pending": sorted(pending.values()),
                          "failed": {p: (ended[p].last_error if ended[p] else "gone")
                                     for p in failed}}, indent=2))
    else:
        print(quota_table(rows))
        for project in failed:
            job = ended[project]
            print(f"{project}: recalculation {job.status if job else 'vanished'}"
                  f"{': ' + job.last_error if job and job.last_error else ''}",
                  file=sys.stderr)
        for project in sorted(pending.values()):
            print(f"{project}: still recalculating after {args.timeout:g}s (is a sidecar "
                  "running on this store?)", file=sys.stderr)
    return 1 if failed or pending else 0
