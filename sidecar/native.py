"""The standard library's own objects, also after gevent patched them in a worker.

A few places need what the OS gives, not gevent's cooperative stand-in: a zero-timeout poll
(keepalive), fork, waitpid and select around the rules child (preload), a lock that greenlets
and database threads both take (store.db). gevent keeps the originals; where gevent was never
imported (the master, the CLI, tests) nothing is patched and the module's own object is it.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


def original(module: str, name: str) -> Any:
    """`module.name` as the standard library has it, whether or not gevent patched it."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None:
        return getattr(importlib.import_module(module), name)
    return monkey.get_original(module, name)
