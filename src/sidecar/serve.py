"""Run the sidecar under gunicorn with gevent workers, configured from Settings.

Each worker builds its own application after gevent has patched it (gunicorn loads the app
in the worker), so the recorder, dispatcher and rules watcher are greenlets of that worker.
"""

from __future__ import annotations

import logging

from gunicorn.app.base import BaseApplication

from sidecar.config import Settings

log = logging.getLogger(__name__)

_runtime = None


def _worker_exit(server, worker) -> None:
    # Flush events still buffered: a graceful stop loses nothing.
    if _runtime is not None:
        try:
            _runtime.stop()
        except Exception:
            log.exception("stopping runtime failed")


class SidecarServer(BaseApplication):
    def __init__(self, settings: Settings):
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options = {
            "bind": [s.bind],
            "workers": s.workers,
            "worker_class": "gevent",
            "worker_connections": 1000,
            "timeout": 60,
            "graceful_timeout": 30,
            "keepalive": 75,
            # upload Location URLs carry a long signed _state; bearer tokens can be large
            "limit_request_line": 8190,
            "limit_request_field_size": 65536,
            "limit_request_fields": 200,
            "loglevel": s.log_level,
            "accesslog": "-" if s.access_log else None,
            "errorlog": "-",
            "proc_name": "registry-webhook-sidecar",
            "worker_exit": _worker_exit,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):
        global _runtime
        from sidecar.app import create_app

        app, _runtime = create_app(self.settings)
        return app


def run(settings: Settings) -> None:
    SidecarServer(settings).run()
