"""The `sidecar` command (`commands`) and its helpers: `endpoint_check` (test-endpoint), `scan`
(scan an artifact) and `report_text` (the operators' tables)."""

from sidecar.cli.commands import build_parser as build_parser
from sidecar.cli.commands import main as main

__all__ = ["build_parser", "main"]
