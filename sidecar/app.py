"""Assemble the sidecar: one explicit place that wires proxy -> record -> store -> dispatch.

`create_app` returns the WSGI application a gunicorn worker serves: requests under /sidecar/
and Harbor's /api/v2.0/ go to Flask (the admin plane), everything else to the proxy.

The admin plane is built on its first request, not when the worker starts: Flask with Jinja2,
Werkzeug and click, the Harbor API, the UI and the status page are about 8 MB of each worker
that a sidecar only proxying and probed for health never uses (issue 13). Health probes and an
unauthenticated /sidecar/metrics are answered without it (api.ops.probes).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

from sidecar import metrics
from sidecar.api.ops import probes
from sidecar.clientaddr import TrustedProxies
from sidecar.config import Settings
from sidecar.dispatch.addresses import AddressPolicy
from sidecar.dispatch.retry import RetryPolicy
from sidecar.dispatch.worker import Dispatcher
from sidecar.dispatch.worker import DispatchSettings
from sidecar.events.model import DELETE_ARTIFACT
from sidecar.events.model import PUSH_ARTIFACT
from sidecar.jobs.lane import Lane
from sidecar.jobs.runner import JobRunner
from sidecar.jobs.runner import RunnerSettings
from sidecar.jobs.scheduler import Scheduler
from sidecar.preload import PreloadedRules
from sidecar.preload import preload_rules  # noqa: F401 - `sidecar.app.preload_rules` as before
from sidecar.preload import stored_verdict
from sidecar.preload import sync_rules_apart
from sidecar.proxy.forward import ProxyApp
from sidecar.proxy.quota_gate import QuotaGate
from sidecar.proxy.upstream import Upstream
from sidecar.quota.book import QuotaBook
from sidecar.quota.recalc import RecalcHandler
from sidecar.record.late import LateEvents
from sidecar.record.recorder import Recorder
from sidecar.record.recorder import RecorderSettings
from sidecar.registry import RegistryClient
from sidecar.replicate.destinations import Destinations
from sidecar.replicate.execution import ExecutionHandler
from sidecar.replicate.schedules import replication_schedules
from sidecar.replicate.task import TaskHandler
from sidecar.replicate.trigger import event_replications
from sidecar.retain import job as retention_job
from sidecar.retain import recording
from sidecar.retain.schedules import retention_schedules
from sidecar.rules.load import RulesError
from sidecar.scan.job import ScanHandler
from sidecar.scan.job import ScanSettings
from sidecar.scan.trigger import auto_scans
from sidecar.store import clock
from sidecar.store import db as store_db
from sidecar.store import policies as policy_store
from sidecar.store import sweep
from sidecar.store.executor import Executor

if TYPE_CHECKING:
    from flask import Flask

    from sidecar.proxy.charts import ChartProxy

log = logging.getLogger(__name__)

SIDECAR_PREFIX = "/sidecar/"
HARBOR_API_PREFIX = "/api/v2.0/"
CHARTREPO_PREFIX = "/api/v2.0/chartrepo/"  # Helm chart routes, handled elsewhere
BUSY_POLL_SECONDS = 0.25


class Runtime:
    """Everything one worker process runs besides request handling."""

    def __init__(self, settings: Settings, preloaded: PreloadedRules | None = None):
        self.settings = settings
        self._preloaded = preloaded
        self.executor = Executor(size=4 if settings.database.startswith("postgres") else 2)
        # a large rules file is read in a child process (seconds of parsing, none of it on
        # this interpreter); the wait for it on a thread of its own
        self.rules_executor = Executor(size=1)
        self.upstream = Upstream(settings.upstream, read_timeout=settings.upstream_read_timeout)
        # the sidecar's own identity toward the upstream (sidecar.registry_credential)
        self.registry = RegistryClient(settings.upstream, settings.registry_credential)
        self.chart_upstream = (
            Upstream(settings.chart_upstream, read_timeout=settings.upstream_read_timeout)
            if settings.chart_upstream else None)
        # deliveries and the test endpoint: the same rule for every webhook request
        self.addresses = AddressPolicy.of(settings.allow_private_network_access,
                                          settings.webhook_allowed_networks)
        self.dispatcher = Dispatcher(
            self.executor,
            DispatchSettings(
                concurrency=settings.max_job_workers,
                timeout=settings.webhook_job_http_client_timeout,
                retry=RetryPolicy(
                    max_attempts=settings.webhook_job_max_retry,
                    backoff=settings.backoff_seconds,
                    backoff_max=settings.backoff_max_seconds,
                ),
                addresses=self.addresses,
                auto_disable_after=settings.auto_disable_after,
            ),
            observe=metrics.observe_attempt,
        )
        self.recorder = Recorder(
            self.executor,
            RecorderSettings(hostname=settings.hostname,
                             max_attempts=settings.webhook_job_max_retry,
                             keep_unmatched=settings.record_unmatched_events),
            notifications_enabled=self.notifications_enabled,
            on_recorded=self.dispatcher.wake,
            handoff=self.dispatcher,  # its deliveries go straight to this process's senders
        )
        # background jobs: one lane for every kind this sidecar runs (scans, replication
        # tasks, retention runs), on the same claims and leases as deliveries; create_app
        # adds each family's handler and schedules
        self.jobs = JobRunner(
            self.executor, (), record=self.recorder.write_now,
            recorded=self.dispatcher.wake, enqueued=lambda: self.job_lane.wake(),
            settings=RunnerSettings(lease=settings.job_lease_seconds,
                                    backoff=settings.job_backoff_seconds,
                                    backoff_max=settings.job_backoff_max_seconds))
        self.job_lane = Lane("jobs", claim=self.jobs.claim, run=self.jobs.run,
                             release=self.jobs.release, concurrency=settings.job_workers,
                             describe=lambda job: f"job {job.id} ({job.kind})")
        self.scheduler = Scheduler(self.executor, queued=self.job_lane.wake)
        self._rules_mtime: float | None = None
        self._rules_loaded_at: float | None = None
        self._rules_error = ""
        self._rules_busy = False  # another worker was reading the file when last asked
        self._stopping = False
        self.quota: QuotaBook | None = None  # storage quotas' books (create_app sets them)

    # -- rules -----------------------------------------------------------------------------
    def reload_rules(self) -> bool:
        """Load the rules file if it changed; a broken file leaves the last good rules."""
        path = self.settings.rules
        if not path:
            return False
        try:
            mtime = os.stat(path).st_mtime
        except OSError as exc:
            self._rules_error = f"{path}: cannot read rules file: {exc.strerror}"
            return False
        if mtime == self._rules_mtime:
            return False
        self._rules_mtime = mtime
        preloaded, self._preloaded = self._preloaded, None
        if preloaded is not None and (preloaded.path, preloaded.mtime) == (path, mtime):
            self._rules_error = ""
            self._rules_loaded_at = preloaded.loaded_at
            log.info("rules loaded from %s: %d projects (read before the workers started)",
                     path, preloaded.projects)
            return True
        try:
            done = self.executor.run(stored_verdict, path)
            if done is None:  # to be read: in a child process, this worker only waits
                done = self.rules_executor.call(sync_rules_apart, self.settings.database, path)
        except RulesError as exc:
            if self._rules_error != str(exc):
                log.error("rules file refused, previous rules stay in force:\n%s", exc)
            self._rules_error = str(exc)
            return False
        except Exception:
            self._rules_mtime = None  # not in the store (database down, a racing sync): retry
            raise
        if done.outcome == "busy":  # another worker is reading it: look again soon
            self._rules_mtime = None
            self._rules_busy = True
            return False
        self._rules_busy = False
        self._rules_error = ""
        self._rules_loaded_at = time.time()
        log.info("rules loaded from %s: %d projects (%s)", path, done.projects, done)
        if self.quota is not None:
            self.quota.refresh()  # a quota the file added is enforced from now on
        return True

    def rules_state(self) -> dict[str, Any]:
        return {
            "file": self.settings.rules or None,
            "loaded_at": self._rules_loaded_at,
            "error": self._rules_error or None,
        }

    def _watch_rules(self) -> None:
        while not self._stopping:
            # while another worker reads an edit, ask often: its rules are in force here
            # (quotas, the status page) as soon as they are stored, not a poll later
            poll = self.settings.rules_poll_seconds
            time.sleep(min(poll, BUSY_POLL_SECONDS) if self._rules_busy else poll)
            try:
                self.reload_rules()
            except Exception:
                log.exception("reloading rules failed")
            try:
                self.executor.run(clock.refresh_if_stale)
            except Exception:
                log.exception("reading the database server's clock failed")

    def _sweep_old_records(self) -> None:
        days = self.settings.retention_days
        keep = self.settings.history_per_policy
        while not self._stopping and (days > 0 or keep > 0):
            time.sleep(self.settings.retention_sweep_seconds)
            now = time.time()
            cutoff = now - days * 86400 if days > 0 else 0.0  # 0 days: no age limit
            try:
                swept = self.executor.run(sweep.sweep, cutoff, now, keep)
            except Exception:
                log.exception("sweeping old deliveries and events failed")
                continue
            if swept.deliveries or swept.events or swept.jobs:
                log.info("sweep: deleted %d deliveries, %d events and %d finished jobs (older "
                         "than %g days, or beyond a policy's newest %d)", swept.deliveries,
                         swept.events, swept.jobs, days, self.settings.history_per_policy)

    # -- switches --------------------------------------------------------------------------
    def notifications_enabled(self) -> bool:
        value = policy_store.get_setting(
            "notification_enable", "true" if self.settings.notification_enable else "false")
        return value == "true"

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self.executor.run(clock.measure)
        except Exception:
            log.exception("reading the database server's clock failed; using this host's")
        self._rules_mtime = None
        try:
            self.reload_rules()
        except Exception:
            log.exception("loading rules failed")
        if self.quota is not None:
            self.quota.start()
        self.recorder.start()
        self.dispatcher.start()
        if self.jobs.kinds:
            self.job_lane.start()
        self.scheduler.start()
        threading.Thread(target=self._watch_rules, name="rules-watch", daemon=True).start()
        threading.Thread(target=self._sweep_old_records, name="sweep", daemon=True).start()

    def stop(self) -> None:
        self._stopping = True
        self.scheduler.stop()
        if self.jobs.kinds:
            self.job_lane.stop(grace=5.0)  # a job cut short resumes from its checkpoint
        self.dispatcher.stop()
        if self.quota is not None:
            self.quota.stop()  # settles first: they may add QUOTA_WARNINGs to record
        self.recorder.stop()


class SidecarApp:
    """WSGI entry: /sidecar/* and Harbor's /api/v2.0/* -> Flask; everything else -> the proxy.

    Flask is built by `build_flask` on first use (`flask_app`), once however many requests
    arrive together; health probes and an open /sidecar/metrics never build it.
    """

    def __init__(self, build_flask: Callable[[], Flask], proxy: ProxyApp,
                 charts: ChartProxy | None = None, proxies: TrustedProxies | None = None,
                 runtime: Runtime | None = None):
        self._build_flask = build_flask
        self._flask: Flask | None = None
        # a gevent lock in a patched worker: a greenlet waiting for another's build yields
        self._flask_lock = threading.Lock()
        self.proxy = proxy
        self.charts = charts  # chart routes (/chartrepo/..., ChartMuseum's) when configured
        # sidecar.trusted_proxies: whose X-Forwarded-For names the client (the worker's access
        # log reads it here too)
        self.proxies = proxies or TrustedProxies()
        self.runtime = runtime  # for the probes answered without Flask

    @property
    def flask_app(self) -> Flask:
        """The admin plane's Flask application, imported and built at the first call."""
        app = self._flask
        if app is None:
            with self._flask_lock:
                app = self._flask
                if app is None:
                    started = time.monotonic()
                    app = self._flask = self._build_flask()
                    log.info("admin plane (Flask, API, UI) loaded in %.0f ms",
                             (time.monotonic() - started) * 1000)
        return app

    @property
    def admin_loaded(self) -> bool:
        """Whether the admin plane has been built (the first API, UI or status request)."""
        return self._flask is not None

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if self.charts is not None and self.charts.handles(path):
            return self.charts(environ, start_response)
        if path.startswith(SIDECAR_PREFIX) or (
                path.startswith(HARBOR_API_PREFIX) and not path.startswith(CHARTREPO_PREFIX)):
            # the client's address for the login throttle, the default-password lock-down and
            # the access log: a trusted front proxy's X-Forwarded-For, else the peer
            environ["REMOTE_ADDR"] = self.proxies.client(environ.get("REMOTE_ADDR", ""),
                                                         environ.get("HTTP_X_FORWARDED_FOR"))
            method = environ.get("REQUEST_METHOD", "GET")
            if self.runtime is not None and probes.serves(path, method, self.runtime):
                return probes.serve(path, method, self.runtime, start_response)
            return self.flask_app(environ, start_response)
        return self.proxy(environ, start_response)

    def proxy_for(self, path: str):
        """The proxy serving `path` (its `serve(ProxyRequest, start_response)`), or None when
        the WSGI call does (Flask, the probes): the sidecar's own worker sends proxied requests
        there without an environ."""
        if self.charts is not None and self.charts.handles(path):
            return self.charts.serve
        if path.startswith(SIDECAR_PREFIX) or (
                path.startswith(HARBOR_API_PREFIX) and not path.startswith(CHARTREPO_PREFIX)):
            return None
        return self.proxy.serve


def create_flask(runtime: Runtime) -> Flask:
    """The admin plane: status, metrics, Harbor's API and the UI on one Flask application.

    Flask and the blueprints are imported here, not with this module, so a worker loads them
    with its first admin request (SidecarApp.flask_app).
    """
    from flask import Flask

    from sidecar.api import harbor as harbor_api
    from sidecar.api import ui as ui_api
    from sidecar.api.ops import metrics as metrics_api
    from sidecar.api.ops import status as status_api

    app = Flask("sidecar")
    app.extensions["sidecar"] = runtime
    app.json.sort_keys = False
    app.register_blueprint(status_api.bp)
    app.register_blueprint(harbor_api.bp)
    app.register_blueprint(metrics_api.bp)
    app.register_blueprint(ui_api.bp)
    return app


def add_scanning(runtime: Runtime) -> None:
    """Scans: the scan job, started by pushes to projects with auto_scan (and by the API)."""
    settings = runtime.settings
    runtime.jobs.add(ScanHandler(
        runtime.executor, runtime.registry,
        ScanSettings(timeout=settings.scan_timeout_seconds,
                     registry_url=settings.scan_registry,
                     credential=settings.registry_credential),
        observe=metrics.observe_scan))
    runtime.recorder.add_trigger({PUSH_ARTIFACT}, auto_scans, started=runtime.job_lane.wake)


def add_replication(runtime: Runtime) -> None:
    """Replication: executions (planning) and their tasks (copies, deletions), started by
    pushes and deletes matching event-based policies, by the schedules of scheduled ones, and
    by the API, the UI and the CLI."""
    destinations = Destinations()
    runtime.jobs.add(ExecutionHandler(runtime.executor, runtime.registry, destinations))
    runtime.jobs.add(TaskHandler(runtime.executor, runtime.registry, destinations,
                                 observe=metrics.observe_replication_task,
                                 observe_bytes=metrics.observe_replicated_bytes))
    runtime.recorder.add_trigger({PUSH_ARTIFACT, DELETE_ARTIFACT}, event_replications,
                                 started=runtime.job_lane.wake)
    runtime.scheduler.add(replication_schedules)


def add_retention(runtime: Runtime) -> None:
    """Tag retention: push/pull activity kept from every recorded artifact event, and runs
    (an execution planning one task per repository) started by the API, the UI, the CLI and
    each policy's schedule."""
    runtime.jobs.add(retention_job.ExecutionHandler(runtime.registry))
    runtime.jobs.add(retention_job.TaskHandler(runtime.registry))
    pulls = LateEvents(recording.LATE_TYPES, key=recording.gathered_by,
                       seconds=recording.LATE_SECONDS)  # pull times gathered, written later
    runtime.recorder.add_trigger(recording.EVENT_TYPES, recording.record_activity, late=pulls)
    runtime.scheduler.add(retention_schedules)


def add_quotas(runtime: Runtime, sink) -> QuotaGate:
    """Storage quotas: the books the proxy's gate keeps (settles, QUOTA_WARNING, expired
    holds) and the recalculation job; returns the gate for the proxy."""
    runtime.jobs.add(RecalcHandler(runtime.registry))
    runtime.quota = QuotaBook(runtime.executor, runtime.recorder.write_now,
                              recorded=runtime.dispatcher.wake, observe=metrics.observe_events,
                              refresh_seconds=runtime.settings.rules_poll_seconds)
    return QuotaGate(runtime.quota, runtime.upstream, sink)


def create_app(settings: Settings, start: bool = True,
               preloaded: PreloadedRules | None = None) -> tuple[SidecarApp, Runtime]:
    """Build a worker's application; `start` launches recorder, dispatcher and rules watcher."""
    store_db.bind(settings.database)
    runtime = Runtime(settings, preloaded=preloaded)
    add_scanning(runtime)
    submit = runtime.recorder.submit

    def sink(events):
        metrics.observe_events(events)
        submit(events)

    proxy = ProxyApp(runtime.upstream, sink, observe=metrics.observe_request,
                     registry=runtime.registry,
                     blob_redirect=settings.blob_redirect,
                     quota=add_quotas(runtime, sink))
    charts = None
    if runtime.chart_upstream is not None:
        # only a sidecar with a chart upstream loads the chart routes and upload inspection
        from sidecar.proxy.charts import ChartProxy

        charts = ChartProxy(runtime.chart_upstream, sink, depth=settings.chart_depth,
                            project=settings.chart_project,
                            inspect_limit=settings.chart_inspect_bytes,
                            observe=metrics.observe_request)
    add_replication(runtime)
    add_retention(runtime)
    app = SidecarApp(lambda: create_flask(runtime), proxy, charts,
                     TrustedProxies(settings.trusted_proxies), runtime)
    if start:
        runtime.start()
    return app, runtime
