"""A job kind whose handler (and the modules it needs) is built when its first job runs.

Every worker runs every kind of job, yet most never run a scan, a replication or a retention
run: their handlers, the scanner client, the copier and the retention planner are about 0.5 MB
of each worker's memory (issue 13). The runner needs only the kind up front, to claim jobs of
it; `DeferredHandler` stands for the handler until then.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import TypeVar

from sidecar.jobs.runner import JobContext
from sidecar.jobs.runner import JobHandler
from sidecar.jobs.runner import Outcome

T = TypeVar("T")


def once(build: Callable[[], T]) -> Callable[[], T]:
    """`build`'s result, built by the first call only, however many callers come at once (a
    lock: a gevent lock in a patched worker, so the others wait without blocking the loop)."""
    lock = threading.Lock()
    made: list[T] = []

    def get() -> T:
        if not made:
            with lock:
                if not made:
                    made.append(build())
        return made[0]

    return get


class DeferredHandler:
    """The handler of jobs of `kind`, built by `build` (once) when the first of them runs."""

    def __init__(self, kind: str, build: Callable[[], JobHandler]):
        self.kind = kind
        self._handler = once(build)

    def handler(self) -> JobHandler:
        handler = self._handler()
        if handler.kind != self.kind:  # a wiring mistake would run one kind's jobs as another's
            raise TypeError(f"{type(handler).__name__} handles {handler.kind!r}, "
                            f"not {self.kind!r}")
        return handler

    def run(self, ctx: JobContext) -> Outcome:
        return self.handler().run(ctx)

    def failed(self, ctx: JobContext, reason: str) -> Sequence[Any]:
        return self.handler().failed(ctx, reason)

    def stopped(self, ctx: JobContext) -> Sequence[Any]:
        return self.handler().stopped(ctx)
