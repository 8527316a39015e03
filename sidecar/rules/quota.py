"""A project's `quota` section: its storage limit and when QUOTA_WARNING fires.

    quota:
      storage: 10GiB            # B, KiB, MiB, GiB, TiB or plain bytes; -1 = unlimited
      warning: 85%              # Harbor's fixed threshold, configurable here
      warning_repeat: once      # once per crossing; every_push = Harbor's behaviour

Binary units only: `10GB` is refused rather than guessed, because a quota that is 7% off is a
surprise nobody notices until a push fails. Limits Harbor's API would refuse (0, below -1, over
1024 TiB) are refused here too, in Harbor's words, so a file and the API agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from decimal import InvalidOperation
from typing import Any

from sidecar.rules.policy import Problem

QUOTA_KEYS = ("storage", "warning", "warning_repeat")
UNLIMITED = -1
#: Harbor's upper bound for a storage limit (lib.ValidateQuotaLimit): 1024 TiB.
MAX_STORAGE = 1024 ** 5
DEFAULT_WARNING_PERCENT = 85
ONCE = "once"
EVERY_PUSH = "every_push"
WARNING_REPEATS = (ONCE, EVERY_PUSH)

UNITS = {"b": 1, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4}
_SIZE = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[A-Za-z]*)")
_DECIMAL_UNITS = {"kb": "KiB", "mb": "MiB", "gb": "GiB", "tb": "TiB",
                  "k": "KiB", "m": "MiB", "g": "GiB", "t": "TiB"}
_PERCENT = re.compile(r"(?P<number>[0-9]+)\s*%?")


@dataclass(frozen=True)
class QuotaRule:
    """A project's quota as the rules file sets it (read-only through the API)."""

    storage: int  # bytes; UNLIMITED (-1) counts usage without refusing anything
    warning_percent: int = DEFAULT_WARNING_PERCENT
    warning_repeat: str = ONCE

    @property
    def unlimited(self) -> bool:
        return self.storage == UNLIMITED


def parse_size(value: Any) -> int:
    """Bytes from `10GiB`, `1.5 TiB`, `512B`, `1048576` or -1; ValueError says what is wrong.

    A fraction of a unit is rounded down to whole bytes (`0.1KiB` is 102 bytes).
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"storage must be a size such as 10GiB or a number of bytes, "
                         f"got {value!r}")
    if isinstance(value, int):
        number = value
    else:
        text = value.strip()
        if text == "-1":
            return UNLIMITED
        match = _SIZE.fullmatch(text)
        if match is None:
            raise ValueError(f"storage {value!r} is not a size: use a number with B, KiB, MiB, "
                             "GiB or TiB (10GiB), plain bytes, or -1 for unlimited")
        unit = match["unit"].lower()
        if unit in _DECIMAL_UNITS:
            raise ValueError(f"storage {value!r}: use binary units ({_DECIMAL_UNITS[unit]}, "
                             "1024-based), as Harbor shows sizes")
        if unit not in UNITS and unit != "":
            raise ValueError(f"storage {value!r}: unknown unit {match['unit']!r} "
                             "(use B, KiB, MiB, GiB or TiB)")
        try:
            number = int(Decimal(match["number"]) * UNITS.get(unit, 1))
        except InvalidOperation as exc:  # pragma: no cover - the pattern admits only decimals
            raise ValueError(f"storage {value!r} is not a size") from exc
        if unit in ("", "b") and "." in match["number"]:
            raise ValueError(f"storage {value!r}: bytes must be a whole number")
    if number == UNLIMITED:
        return UNLIMITED
    if number <= 0:
        raise ValueError(f"invalid non-positive value for quota limit, value={number} "
                         "(use -1 for unlimited)")
    if number > MAX_STORAGE:
        raise ValueError(f"exceeded 1024TB, which is {MAX_STORAGE} Bytes, value={number}")
    return number


def harbor_limit(value: int) -> int:
    """A storage limit as Harbor's API takes it (lib.ValidateQuotaLimit): -1 (unlimited) or
    1 byte to 1024 TiB; ValueError in Harbor's words otherwise."""
    if value == UNLIMITED:
        return value
    if value <= 0:
        raise ValueError(f"invalid non-positive value for quota limit, value={value}")
    if value > MAX_STORAGE:
        raise ValueError(f"exceeded 1024TB, which is {MAX_STORAGE} Bytes, value={value}")
    return value


def parse_percent(value: Any) -> int:
    """A warning threshold `85%` (or 85): a whole percent from 1 to 100."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"warning must be a percentage such as 85%, got {value!r}")
    if isinstance(value, str):
        match = _PERCENT.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"warning {value!r} is not a whole percentage such as 85%")
        value = int(match["number"])
    if not 1 <= value <= 100:
        raise ValueError(f"warning must be between 1% and 100%, got {value}%")
    return value


def parse_quota(raw: Any) -> tuple[QuotaRule | None, list[Problem]]:
    """Validate a project's `quota` mapping; problems carry key paths inside it."""
    if not isinstance(raw, dict):
        return None, [Problem((), "quota must be a mapping with 'storage' (and optionally "
                                  "'warning' and 'warning_repeat')")]
    problems = [Problem((key,), f"unknown key '{key}' in quota (expected "
                                f"{', '.join(QUOTA_KEYS)})")
                for key in raw if key not in QUOTA_KEYS]
    storage = warning = None
    if "storage" not in raw:
        problems.append(Problem((), "quota needs 'storage': a size such as 10GiB, or -1"))
    else:
        try:
            storage = parse_size(raw["storage"])
        except ValueError as exc:
            problems.append(Problem(("storage",), str(exc)))
    try:
        warning = parse_percent(raw.get("warning", DEFAULT_WARNING_PERCENT))
    except ValueError as exc:
        problems.append(Problem(("warning",), str(exc)))
    repeat = raw.get("warning_repeat", ONCE)
    if repeat not in WARNING_REPEATS:
        problems.append(Problem(("warning_repeat",), f"warning_repeat must be once or "
                                                     f"every_push, got {repeat!r}"))
    if problems or storage is None or warning is None:
        return None, problems
    return QuotaRule(storage=storage, warning_percent=warning, warning_repeat=repeat), []
