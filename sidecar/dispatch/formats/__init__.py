"""The payload formats: one module each, and the table they form. Pure.

Every module of this package that defines `FORMAT` (a `base.Format`) is a row of the table,
found when the package is imported: adding a format (Teams, Discord, ...) is its module plus
its golden body in tests/fixtures/formats/. Rules validation, the renderer, the REST API, the
web UI, the CLI and the dispatcher's pacing read names, fields and behaviour from here, so
none of them tests for a format by name.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from sidecar.dispatch.formats.base import Context
from sidecar.dispatch.formats.base import Format

__all__ = ["FORMATS", "Context", "Format", "UnknownFormat", "default_payload_format",
           "format_for", "lookup", "option_owners", "payload_formats", "target_types"]


class UnknownFormat(ValueError):
    """A target no format renders (validation refuses these; a stored row may still have one)."""


def _discover() -> tuple[Format, ...]:
    found: dict[tuple[str, str], Format] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        row = getattr(module, "FORMAT", None)
        if not isinstance(row, Format):
            continue
        if row.key in found:
            raise RuntimeError(f"two formats claim {row.name}: {info.name} and another module")
        found[row.key] = row
    return tuple(sorted(found.values(), key=lambda f: (f.rank, f.type, f.payload_format)))


#: Every format, in the order lists show them (Harbor's Default first).
FORMATS: tuple[Format, ...] = _discover()
_BY_KEY = {row.key: row for row in FORMATS}


def target_types() -> tuple[str, ...]:
    """Harbor's notify types: http, slack, ..."""
    return tuple(dict.fromkeys(row.type for row in FORMATS))


def payload_formats(target_type: str | None = None) -> tuple[str, ...]:
    """The payload formats a target type may name (none for Slack); every one if no type."""
    return tuple(dict.fromkeys(row.payload_format for row in FORMATS if row.payload_format
                               and target_type in (None, row.type)))


def default_payload_format(target_type: str) -> str:
    """What a target of this type gets when it names no format ("" if it may name none)."""
    return next((row.payload_format for row in FORMATS if row.type == target_type), "")


def lookup(target_type: str, payload_format: str) -> Format | None:
    return _BY_KEY.get((target_type, payload_format or default_payload_format(target_type)))


def option_owners() -> dict[str, tuple[Format, ...]]:
    """Each format-specific option field and the formats that have it."""
    out: dict[str, tuple[Format, ...]] = {}
    for row in FORMATS:
        for name in row.options:
            out[name] = (*out.get(name, ()), row)
    return out


def format_for(target: Any) -> Format:
    """The format of a target: a `rules.target.Target`, or the stored dict of one."""
    if isinstance(target, Mapping):
        kind, chosen = target.get("type") or "http", target.get("payload_format") or ""
    else:
        kind, chosen = target.type, target.payload_format
    row = lookup(kind, chosen)
    if row is None:
        raise UnknownFormat(f"no payload format {chosen or '(default)'} for {kind} targets")
    return row
