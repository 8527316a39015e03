"""The Pluggable Scanner Adapter API's messages, checked against JSON Schemas of its spec.

The schemas in tests/fixtures/scanner_spec/ were written by hand from the spec's OpenAPI
document (see their $comment), not from the sidecar's code. `strict=True` closes every object
to the members the spec names: what the sidecar sends and what our test adapter answers must
not carry anything else, while a real adapter may (OpenAPI leaves objects open).

    problems("ScanRequest", body, strict=True)  -> [] when valid
    assert_valid("HarborVulnerabilityReport", report)
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema

SCHEMAS = Path(__file__).parent / "fixtures" / "scanner_spec"
MESSAGES = ("ScannerAdapterMetadata", "ScanRequest", "ScanResponse", "ErrorResponse",
            "HarborVulnerabilityReport")

FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    """RFC 3339 with a zone (Python's parser accepts more, so insist on T and a zone)."""
    if not isinstance(value, str):
        return True
    parsed = datetime.fromisoformat(value)
    return "T" in value.upper() and parsed.tzinfo is not None


@FORMATS.checks("uri", raises=ValueError)
def _uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme) and bool(parts.netloc or parts.path)


def _closed(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {key: _closed(value) for key, value in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


@cache
def _validator(name: str, strict: bool) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    if strict:
        schema = _closed(copy.deepcopy(schema))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=FORMATS)


def problems(name: str, instance: Any, *, strict: bool = False) -> list[str]:
    """Every way `instance` breaks the schema of message `name`, as `path: message`."""
    errors = sorted(_validator(name, strict).iter_errors(instance), key=lambda e: e.path)
    return [f"{name} {'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}" for e in errors]


def assert_valid(name: str, instance: Any, *, strict: bool = False) -> None:
    found = problems(name, instance, strict=strict)
    assert not found, "\n".join(found)
