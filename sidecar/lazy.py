"""A module imported on its first use, for libraries a worker needs only on rare paths.

Every module a gunicorn worker imports stays in its memory for its whole life, once per
worker (issue 13: the process tree's RSS). `requests` with charset_normalizer and idna is
about 4 MB a worker, yet only the registry client (deletes, scans, replication, retention,
quota recalculation), the scanner client and the endpoint test use it: the proxy relays
through urllib3 and the webhook sender has its own client. `requests = lazy_module("requests")`
keeps the module's code as it was (`requests.Session()`, `except requests.RequestException`)
and imports the library the first time one of its names is read, after gevent has patched
the standard library.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for the module `name`; reading any of its attributes imports it (once)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        # only names the instance lacks reach here: the module's, never _name or _module
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        state = "imported" if self._module is not None else "not imported yet"
        return f"<lazy module {self._name!r}, {state}>"


def lazy_module(name: str) -> Any:
    """`name`, imported when first used (typed Any: it stands for the module itself)."""
    return LazyModule(name)
