"""Run the sidecar under gunicorn with gevent workers, configured from Settings.

Each worker builds its own application after gevent has patched it (gunicorn loads the app
in the worker), so the recorder, dispatcher and rules watcher are greenlets of that worker.
"""

from __future__ import annotations

import gc
import glob
import logging
import os
import re
import shutil
import sys
import tempfile

from gunicorn.app.base import BaseApplication

from sidecar.config import Settings

log = logging.getLogger(__name__)

_runtime = None
#: what the master loads: the gevent workers behind them are imported in each worker
#: (sidecar/server/lean.py), so the master holds no gevent
WORKER_CLASSES = {"sidecar": "sidecar.server.lean.SidecarWorker",
                  "gunicorn": "sidecar.server.lean.StockGeventWorker"}


def _worker_exit(server, worker) -> None:
    # Flush events still buffered: a graceful stop loses nothing.
    if _runtime is not None:
        try:
            _runtime.stop()
        except Exception:
            log.exception("stopping runtime failed")


def prepare_metrics_dir() -> str | None:
    """Give the workers a clean PROMETHEUS_MULTIPROC_DIR before they fork.

    Must run before anything imports prometheus_client (it picks its storage at import).
    Returns the directory to remove at exit, if we made it.
    """
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        os.makedirs(given, exist_ok=True)
        for stale in glob.glob(os.path.join(given, "*.db")):  # counts of an earlier run
            os.unlink(stale)
        return None
    _remove_orphaned_metrics_dirs()
    made = tempfile.mkdtemp(prefix=f"{METRICS_DIR_PREFIX}{os.getpid()}-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    return made


METRICS_DIR_PREFIX = "sidecar-metrics-"


def _remove_orphaned_metrics_dirs() -> None:
    """Directories of sidecars that were killed (no chance to clean up): their master is gone."""
    pattern = os.path.join(tempfile.gettempdir(), f"{METRICS_DIR_PREFIX}*-*")
    for path in glob.glob(pattern):
        owner = os.path.basename(path)[len(METRICS_DIR_PREFIX):].split("-", 1)[0]
        if not owner.isdigit():
            continue
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass  # alive, owned by someone else


def _child_exit(server, worker) -> None:
    # In the master: a dead worker's live gauges go; its counters stay in the sums.
    try:
        remove_live_gauges(worker.pid)
    except Exception:
        log.exception("cleaning metrics of worker %s failed", worker.pid)


def remove_live_gauges(pid: int, path: str | None = None) -> None:
    """prometheus_client's `multiprocess.mark_process_dead`, without importing the library.

    The master runs this whenever a worker exits (a restart after `max_requests` too): the
    import would add prometheus_client to the master for good, and so to every worker forked
    after it (issue 13: memory). Its files are `gauge_<live mode>_<pid>.db`.
    """
    directory = path or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    for stale in glob.glob(os.path.join(directory, f"gauge_live*_{pid}.db")):
        os.remove(stale)


class SidecarServer(BaseApplication):
    def __init__(self, settings: Settings, preloaded=None):
        self.settings = settings
        self.preloaded = preloaded  # app.PreloadedRules, read and stored by the master
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options = {
            "bind": [s.bind],
            "workers": s.workers,
            # ours: gunicorn's gevent worker with a lean loop for the proxied paths
            "worker_class": WORKER_CLASSES[s.http_worker],
            "worker_connections": 1000,
            "timeout": 60,
            "graceful_timeout": 30,
            # An idle keep-alive connection holds a worker's graceful stop until it times out:
            # 5 s keeps connections alive through a client's push or pull, and a SIGTERM
            # (Kubernetes gives 30 s) ends in seconds, recorder flushed.
            "keepalive": 5,
            # upload Location URLs carry a long signed _state; bearer tokens can be large
            "limit_request_line": 8190,
            "limit_request_field_size": 65536,
            "limit_request_fields": 200,
            "loglevel": s.log_level,
            # X-Forwarded-Proto (the scheme, the UI cookie's Secure) only from these front
            # proxies: none unless sidecar.trusted_proxies names them
            "forwarded_allow_ips": ",".join(s.trusted_proxies),
            "accesslog": "-" if s.access_log else None,
            "errorlog": "-",
            "proc_name": "registry-webhook-sidecar",
            "worker_exit": _worker_exit,
            "child_exit": _child_exit,
        }
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn >= 25.1 opens ~/.gunicorn/gunicorn.ctl by default: every sidecar on a host
            # would fight over that one path, and nothing of ours uses it.
            options["control_socket_disable"] = True
        for key, value in options.items():
            self.cfg.set(key, value)
        # gunicorn's own tuning knob (e.g. GUNICORN_CMD_ARGS="--http-parser python"): lets an
        # operator or bench/ try a setting without a new sidecar option for each one.
        env_args = self.cfg.parser().parse_args(self.cfg.get_cmd_args_from_env())
        for key, value in vars(env_args).items():
            if value is not None and key != "args":
                self.cfg.set(key.lower(), value)

    def load(self):
        global _runtime
        native_logging_locks()
        _without_postgres_driver(self.settings)
        from sidecar.app import create_app

        app, _runtime = create_app(self.settings, preloaded=self.preloaded)
        return app


def native_logging_locks() -> None:
    """Give logging's locks back their native kind, in a gevent-patched worker.

    gevent's patching turns the logging module's locks and every handler's into gevent locks,
    which are not safe between OS threads: the database threads (store.executor) log too, and
    a greenlet waiting for a handler lock that such a thread holds (or the other way round)
    can miss its wake-up and wait for ever, with every request that logs after it (seen with
    debug logging, where every query is logged from those threads). A native lock is held
    only while a line is written to a stream, which never yields to another greenlet.
    """
    from gevent import monkey

    if not monkey.is_module_patched("threading"):
        return
    native = monkey.get_original("_thread", "RLock")

    def create_lock(handler: logging.Handler) -> None:
        handler.lock = native()

    logging.Handler.createLock = create_lock  # handlers made from now on
    logging._lock = native()  # the module's own (logger creation, configuration)
    loggers = [logging.getLogger(), *(item for item in logging.Logger.manager.loggerDict.values()
                                      if isinstance(item, logging.Logger))]
    for logger in loggers:
        for handler in logger.handlers:
            handler.lock = native()


def _without_postgres_driver(settings: Settings) -> None:
    """In a worker of a SQLite sidecar, keep psycopg2 unloaded (about 5 MB of each worker).

    peewee imports it whenever it is installed; marking it absent (None in sys.modules) makes
    that import fail the way peewee expects of a missing driver. A PostgreSQL sidecar loads it.
    """
    if _SCHEME_SQLITE.match(settings.database) and "psycopg2" not in sys.modules:
        sys.modules["psycopg2"] = None


_SCHEME_SQLITE = re.compile(r"sqlite:", re.IGNORECASE)


def _freeze_for_fork() -> None:
    """Keep the master's objects out of the workers' garbage collections (gc.freeze).

    A worker's collector walks every tracked object, and writing their GC headers copied the
    master's pages into each worker (copy-on-write): frozen, they stay shared. bench/memory.py
    measured the tree's PSS 96 -> 91-92 MB; RSS, which counts shared pages in every process,
    hardly moves. Collected first, so no garbage of the master is kept for good.
    """
    gc.collect()
    gc.freeze()


def run(settings: Settings, preloaded=None, metrics_dir: str | None = None) -> None:
    """Serve until stopped; `metrics_dir` is prepare_metrics_dir()'s, removed at exit."""
    made = metrics_dir
    master = os.getpid()
    try:
        _freeze_for_fork()
        SidecarServer(settings, preloaded).run()
    finally:
        # workers leave through here too (gunicorn exits them with SystemExit): master only
        if made and os.getpid() == master:
            shutil.rmtree(made, ignore_errors=True)
