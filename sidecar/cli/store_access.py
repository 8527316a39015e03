"""How a CLI command finds its settings and opens the store, with one set of messages.

Commands that start or follow work (`scan`, `replicate`, `retention run`) read harbor.yml,
let `--database` (and what else they take on the command line) override it, and open the store
the running sidecar uses; a mistake in either ends the command with a clear message and exit 2.
"""

from __future__ import annotations

import argparse
import sys
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
