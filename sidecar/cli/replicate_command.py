"""`sidecar replicate POLICY [--wait]`: what Harbor's "Replicate" button does, from a shell.

The execution is queued in the store named by --config/--database (operator `admin`, as
through the API); a running `sidecar serve` on that store runs it. With --wait the command
follows it until it ends and prints each task's outcome. Exit 0 when it succeeded, 1 when it
failed or was stopped (or did not end in time), 2 when it could not be started.
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

#: what Harbor's API names the user of a manual run; events name it as the operator
OPERATOR = "admin"


def add_parser(sub) -> None:
    parser = sub.add_parser("replicate", help="start a run of a replication policy")
    parser.add_argument("policy", help="the policy's name (or id)")
    add_wait_arguments(parser)
    add_store_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=cmd_replicate)


def cmd_replicate(args: argparse.Namespace) -> int:
    settings = open_store(args)
    if settings is None:
        return 2
    from sidecar.replicate.manual import RunRefused
    from sidecar.replicate.manual import start_run
    from sidecar.store.executor import Executor

    executor = Executor()
    try:
        execution_id = executor.run(start_run, args.policy, operator=OPERATOR,
                                    host=settings.hostname)
    except RunRefused as exc:
        print(f"sidecar replicate: {exc.message} ({exc.status})", file=sys.stderr)
        return 2
    return report_run(
        args, "replicate", execution_id,
        ({"execution_id": execution_id},
         f"execution {execution_id} of {args.policy} queued; a running sidecar runs it"),
        lambda deadline: _follow(executor, execution_id, deadline), _text)


def _follow(executor, execution_id: int, deadline: float) -> dict[str, Any] | None:
    from sidecar.store import replication_runs as runs

    while time.monotonic() < deadline:
        view = executor.run(runs.execution, execution_id)
        if view is not None and view.status != runs.RUNNING:
            _, tasks = executor.run(runs.tasks, execution_id, limit=10_000)
            return {"execution_id": view.id, "policy": view.policy_name,
                    "status": view.status, "status_text": view.status_text,
                    "tasks": [{"id": t.id, "status": t.status, "operation": t.operation,
                               "source": t.src_resource, "destination": t.dst_resource,
                               "references": list(t.references), "bytes": t.bytes,
                               "error": t.error} for t in reversed(tasks)]}
        time.sleep(0.2)
    return None


def _text(outcome: dict[str, Any]) -> str:
    lines = [f"execution {outcome['execution_id']} of {outcome['policy']}: "
             f"{outcome['status']}" + (f" ({outcome['status_text']})"
                                       if outcome["status_text"] else "")]
    for task in outcome["tasks"]:
        line = (f"  task {task['id']}: {task['status']} {task['operation']} {task['source']} "
                f"-> {task['destination']}: {', '.join(task['references'])}, "
                f"{task['bytes']} bytes")
        if task["error"] and task["status"] != "Success":
            line += f": {task['error']}"
        lines.append(line)
    return "\n".join(lines)

