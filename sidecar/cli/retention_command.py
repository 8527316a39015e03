"""`sidecar retention run PROJECT [--dry-run] [--wait]`: Harbor's "Run now" / "Dry run" buttons
of a project's tag retention, from a shell.

The execution is queued in the store named by --config/--database (operator `admin`, as
through the API); a running `sidecar serve` on that store runs it. With --wait the command
follows it to its end and prints each repository's counts. Exit 0 when it succeeded, 1 when it
failed (or did not end in time), 2 when it could not be started.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from sidecar.cli.store_access import add_store_arguments
from sidecar.cli.store_access import add_wait_arguments
from sidecar.cli.store_access import open_store
from sidecar.cli.store_access import report_run

OPERATOR = "admin"


def add_parser(sub) -> None:
    parser = sub.add_parser("retention", help="tag retention runs of a project")
    actions = parser.add_subparsers(dest="retention_command", required=True)
    run = actions.add_parser("run", help="run the project's retention policy now")
    run.add_argument("project")
    run.add_argument("--dry-run", action="store_true",
                     help="evaluate and report what would be deleted; delete nothing")
    add_wait_arguments(run)
    add_store_arguments(run)
    run.add_argument("--json", action="store_true", help="print JSON")
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    settings = open_store(args)
    if settings is None:
        return 2
    from sidecar.store import retention_runs as runs
    from sidecar.store import tag_retention
    from sidecar.store.executor import Executor

    executor = Executor()
    policy = executor.run(tag_retention.policy_for_project, args.project)
    if policy is None:
        print(f"sidecar retention: project {args.project!r} has no retention policy "
              "(add `retention:` to it in the rules file)", file=sys.stderr)
        return 2
    execution_id = executor.run(runs.start_execution, policy, runs.TRIGGER_MANUAL,
                                dry_run=args.dry_run, operator=OPERATOR)
    what = "dry run" if args.dry_run else "run"
    return report_run(
        args, "retention", execution_id,
        ({"execution_id": execution_id, "policy_id": policy.id},
         f"retention {what} {execution_id} of {args.project} queued; a running sidecar runs it"),
        lambda deadline: _follow(executor, execution_id, deadline), _text)


def _follow(executor, execution_id: int, deadline: float) -> dict[str, Any] | None:
    from sidecar.store import retention_runs as runs

    while time.monotonic() < deadline:
        view = executor.run(runs.execution, execution_id)
        if view is not None and view.status != runs.RUNNING:
            _, tasks = executor.run(runs.tasks, execution_id)
            return {**vars(view), "task_list": [
                {"id": t.id, "repository": t.repository, "status": t.status,
                 "total": t.total, "retained": t.retained, "deleted": t.deleted,
                 "error": t.error} for t in tasks]}
        time.sleep(0.3)
    return None


def _text(outcome: dict[str, Any]) -> str:
    verb = "would delete" if outcome["dry_run"] else "deleted"
    lines = [f"execution {outcome['id']} of {outcome['project']}: {outcome['status']}"
             + (f" ({outcome['status_text']})" if outcome["status_text"] else "")]
    for task in outcome["task_list"]:
        deleted = task["total"] - task["retained"] if outcome["dry_run"] else task["deleted"]
        lines.append(f"  {task['repository']}: {task['status']}, {task['total']} artifacts, "
                     f"{task['retained']} retained, {verb} {deleted}"
                     + (f": {task['error']}" if task["error"] else ""))
    return "\n".join(lines)

