"""How a route of any audience reaches this worker's runtime and its database threads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app

from sidecar.store.views import StoreError


def runtime() -> Any:
    """The `app.Runtime` of this worker (settings, executor, dispatcher, ...)."""
    return current_app.extensions["sidecar"]


def on_db(fn: Callable[..., Any], *args: Any,
          refused: Callable[[StoreError], Exception], **kwargs: Any) -> Any:
    """Run store work on a database thread, never on the event loop; a refusal of the store
    is raised as what `refused` makes of it (a Harbor error, a 404 page, ...)."""
    try:
        return runtime().executor.run(fn, *args, **kwargs)
    except StoreError as exc:
        raise refused(exc) from None
