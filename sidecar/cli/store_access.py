"""How a CLI command finds its settings and opens the store, with one set of messages.

Commands that start or follow work (`scan`, `replicate`, `retention run`) read harbor.yml,
let `--database` (and what else they take on the command line) override it, and open the store
the running sidecar uses; a mistake in either ends the command with a clear message and exit 2.
They also report the same way: text, or JSON with `--json`; `--wait` follows a run to its end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from sidecar.config import ConfigError
from sidecar.config import Settings
from sidecar.config import load_settings
from sidecar.redact import database_url


def add_wait_arguments(parser: argparse.ArgumentParser, what: str = "run",
                       timeout_help: str = "seconds to wait (default 3600)",
                       default: float | None = 3600.0) -> None:
    """`--wait` and `--timeout`, as every command that starts work offers them."""
    parser.add_argument("--wait", action="store_true",
                        help=f"follow the {what} until it ends; exit 1 if it did not "
                             f"{'complete' if what == 'scan' else 'succeed'}")
    parser.add_argument("--timeout", type=float, default=default,
                        help=f"with --wait: {timeout_help}")


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="harbor.yml naming the database")
    parser.add_argument("--database", help="sqlite:///PATH or postgresql://... "
                        "(overrides --config)")


def open_store(args: argparse.Namespace, **overrides: Any) -> Settings | None:
    """The settings with `--database` and `overrides` applied, the store bound; None once
    the reason it could not be done is printed."""
    try:
        settings = load_settings(args.config).replace(database=args.database, **overrides)
    except ConfigError as exc:
        print(f"sidecar: configuration error: {exc}", file=sys.stderr)
        return None
    from sidecar.store import db as store_db

    try:
        store_db.bind(settings.database)
    except Exception as exc:
        print(f"sidecar: cannot open database {database_url(settings.database)}: {exc}",
              file=sys.stderr)
        return None
    return settings


def say(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    """`text`, or `data` as JSON with --json."""
    print(json.dumps(data, indent=2) if args.json else text)


def report_run(args: argparse.Namespace, command: str, execution_id: int,
               queued: tuple[dict[str, Any], str],
               follow: Callable[[float], dict[str, Any] | None],
               text: Callable[[dict[str, Any]], str]) -> int:
    """Once a run is queued: say so, or with --wait follow it (`follow(deadline)`, None if it
    has not ended by then) and say how it ended; exit 1 unless it succeeded in time."""
    if not args.wait:
        say(args, *queued)
        return 0
    outcome = follow(time.monotonic() + args.timeout)
    if outcome is None:
        print(f"sidecar {command}: execution {execution_id} did not end within "
              f"{args.timeout:g}s (is `sidecar serve` running on this database?)",
              file=sys.stderr)
        return 1
    say(args, outcome, text(outcome))
    return 0 if outcome["status"] == "Success" else 1
