"""The worker classes gunicorn's master loads: gevent and the worker's code load in the child.

gunicorn imports the worker class in the master (`cfg.worker_class`) and builds each worker
object there before it forks. Importing our gevent worker (and gevent with it, patched) made
gevent, greenlet, zope.interface and the proxy's request code part of the master: about 9 MB
that the master held for nothing and that every forked worker counted again in its own RSS
(issue 13: the process tree's memory). These classes are plain gunicorn workers to the master;
in the child, `init_process` patches the standard library with gevent first, then imports the
real class and becomes it, so the worker runs exactly as the class named runs.
"""

from __future__ import annotations

from gunicorn.util import load_class
from gunicorn.workers.base_async import AsyncWorker


class _Deferred(AsyncWorker):
    """A worker whose class (`real`, "module.Class") is imported in the child process."""

    real = ""

    def init_process(self) -> None:
        # Before anything imports urllib3 or requests: they must capture gevent's ssl and
        # socket. gunicorn's GeventWorker.patch() repeats it (a no-op by then).
        from gevent import monkey

        monkey.patch_all()
        real = load_class(self.real)
        self.__class__ = real  # built by AsyncWorker.__init__, as the real class would be
        real.init_process(self)


class SidecarWorker(_Deferred):
    """sidecar.server.worker.SidecarWorker, loaded in the worker (`sidecar.http_worker`)."""

    real = "sidecar.server.worker.SidecarWorker"


class StockGeventWorker(_Deferred):
    """gunicorn's own gevent worker (`sidecar.http_worker: gunicorn`), loaded in the worker."""

    real = "gunicorn.workers.ggevent.GeventWorker"
