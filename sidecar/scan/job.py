"""The scan job (kind "scan"): one artifact through one scanner adapter, from submit to report.

Each step is saved before the next, so a job taken over after a crash resumes where it was:

1. first run: the deadline (now + sidecar.scan.timeout_seconds) and the start are saved;
2. the adapter's metadata and the artifact's manifest say what to submit: an index queues a
   scan per child and ends; an artifact the scanner cannot scan (a Helm chart, an unknown
   type) ends skipped, and the log says why;
3. the scan is submitted and the adapter's id saved at once: from then on the job only
   polls, it never submits twice;
4. every report type the scanner produces is polled (302 + Refresh-After), stop requests
   checked between polls, each summary saved as it arrives;
5. SCANNING_COMPLETED with the summaries, recorded in the transaction that ends the job.

A refusal or a broken answer ends the scan (SCANNING_FAILED, the reason in the job); what may
pass (the adapter or the registry unreachable, a 5xx) is retried until the deadline; a stop
fires SCANNING_STOPPED once a scan was submitted.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from sidecar.events.model import SCANNING_COMPLETED
from sidecar.events.model import SCANNING_FAILED
from sidecar.events.model import SCANNING_STOPPED
from sidecar.events.scan import ScanEvent
from sidecar.jobs.backoff import RetryPolicy
from sidecar.jobs.runner import JobContext
from sidecar.jobs.runner import Outcome
from sidecar.jobs.runner import Retry
from sidecar.jobs.runner import Stopped
from sidecar.registry import Credential
from sidecar.registry import NotFound
from sidecar.registry import RegistryClient
from sidecar.registry import RegistryError
from sidecar.registry import RegistryUnavailable
from sidecar.registry import Unauthorized
from sidecar.rules.scanners import Scanner
from sidecar.scan import plan
from sidecar.scan import spec
from sidecar.scan import summary
from sidecar.scan.client import AdapterClient
from sidecar.scan.client import AdapterError
from sidecar.scan.client import Limits
from sidecar.scan.client import ScanStopped
from sidecar.scan.overview import report_id
from sidecar.scan.overview import report_types
from sidecar.scan.overview import unfinished
from sidecar.store import scans as scan_store
from sidecar.store.executor import Executor
from sidecar.store.models import FAILED
from sidecar.store.models import STOPPED
from sidecar.store.models import SUCCEEDED
from sidecar.store.scans import ScanOrder

log = logging.getLogger(__name__)

KIND = scan_store.KIND
#: scans_observed outcomes (metrics): how each scan ended
COMPLETED, SKIPPED = "completed", "skipped"


@dataclass(frozen=True)
class ScanSettings:
    timeout: float = 600.0
    #: the registry URL adapters pull from (sidecar.scan.registry_url, else the upstream)
    registry_url: str = ""
    #: sidecar.registry_credential: what the adapter is handed to pull (Basic), and what
    #: the sidecar reads manifests with
    credential: Credential | None = field(default=None, repr=False)
    limits: Limits = Limits()
    #: between attempts after a transient failure (capped by the time left)
    retry: RetryPolicy = RetryPolicy(backoff=5.0, backoff_max=60.0)


class ScanFailed(Exception):
    """The scan cannot succeed; the text is the reason (status, events, API)."""


class ScanHandler:
    """The job handler of kind "scan" (see the module's docstring)."""

    kind = KIND

    def __init__(self, executor: Executor, registry: RegistryClient, settings: ScanSettings,
                 *, observe: Callable[[str], None] = lambda outcome: None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        self._executor = executor
        self._registry = registry
        self._settings = settings
        self._observe = observe
        self._clock = clock
        self._sleep = sleep
        self._clients: dict[str, tuple[Scanner, AdapterClient]] = {}
        self._lock = threading.Lock()

    # -- JobHandler -------------------------------------------------------------------------
    def run(self, ctx: JobContext) -> Outcome:
        order = ScanOrder.from_payload(ctx.payload, ctx.job.operator)
        state = dict(ctx.state)
        try:
            scanner = self._executor.run(scan_store.scanner, order.scanner)
            if scanner is None:
                raise ScanFailed(f"scanner {order.scanner} is not registered (any more)")
            client = self._client(scanner)
            if "deadline" not in state:
                now = self._clock()
                state.update(start_time=now, deadline=now + self._settings.timeout)
                ctx.checkpoint(state)
            if not state.get("scan_id"):
                ended = self._submit(ctx, order, client, state)
                if ended is not None:
                    return ended
            return self._poll(ctx, order, client, state)
        except ScanFailed as exc:
            return self._fail(ctx, state, str(exc))
        except AdapterError as exc:
            if exc.transient:
                return self._again(ctx, state, str(exc))
            return self._fail(ctx, state, str(exc))

    def failed(self, ctx: JobContext, reason: str) -> Sequence[Any]:
        """The runner gave up (attempts used up, or the last worker died holding it)."""
        self._observe(FAILED)
        return [self._event(ctx, SCANNING_FAILED, ctx.state, self._clock())]

    def stopped(self, ctx: JobContext) -> Sequence[Any]:
        """SCANNING_STOPPED for a scan the adapter was given; a scan stopped before that
        never started, and says nothing (no report exists for it)."""
        self._observe(STOPPED)
        if not ctx.state.get("scan_id"):
            return []
        return [self._event(ctx, SCANNING_STOPPED, ctx.state, self._clock())]

    # -- steps ------------------------------------------------------------------------------
    def _submit(self, ctx: JobContext, order: ScanOrder, client: AdapterClient,
                state: dict[str, Any]) -> Outcome | None:
        """Steps 2 and 3; an Outcome when the job ends here (index, skipped)."""
        metadata = client.metadata()
        manifest = self._read(lambda: self._registry.get_manifest(order.repository,
                                                                 order.digest),
                              f"reading {order.repository}@{order.digest}")
        try:
            body = json.loads(manifest.data)
        except ValueError:
            raise ScanFailed(f"the manifest of {order.repository}@{order.digest} is not "
                             "JSON") from None
        if not isinstance(body, dict):
            raise ScanFailed(f"the manifest of {order.repository}@{order.digest} is not "
                             "a JSON object")
        media_type = str(body.get("mediaType") or manifest.media_type)
        if plan.is_index(media_type):
            return self._index(ctx, order, body)
        target = plan.plan_image(metadata, digest=order.digest, tag=order.tag,
                                 media_type=media_type, manifest=body)
        if isinstance(target, plan.Skipped):
            ctx.log(f"not scanned: {target.reason}")
            log.info("scan of %s skipped: %s", order.title, target.reason)
            self._observe(SKIPPED)
            return Outcome(SUCCEEDED, result={"skipped": target.reason})
        authorization = self._authorization(metadata, order.repository)
        state.update(report_types=list(target.report_types), media_type=target.media_type)
        ctx.checkpoint(state)  # what is being submitted: a resumed job polls the same reports
        request = spec.scan_request(
            registry_url=self._settings.registry_url, authorization=authorization,
            repository=order.repository, digest=order.digest, tag=order.tag,
            mime_type=target.media_type)
        state["scan_id"] = client.submit(request, timeout=self._left(state))
        ctx.log(f"submitted to {client.scanner.name} ({metadata.name} {metadata.version}): "
                f"scan {state['scan_id']}")
        ctx.checkpoint(state)  # from here on the job polls, never submits again
        return None

    def _index(self, ctx: JobContext, order: ScanOrder, body: dict[str, Any]) -> Outcome:
        """An index is scanned through its children: a scan job each, no event of its own."""
        children, skipped = plan.index_children(body)
        queued: list[str] = []
        for digest, _media_type in children:
            child = ScanOrder(scanner=order.scanner, repository=order.repository,
                              digest=digest, operator=order.operator, trigger=order.trigger,
                              index=order.digest, host=order.host)
            done = self._executor.run(scan_store.enqueue, child)
            if done.job_id is not None:
                queued.append(digest)
        for item in skipped:
            ctx.log(f"child {item.digest} not scanned: {item.reason}")
        ctx.log(f"an index: {len(queued)} of {len(children)} children queued for scanning "
                "(the others are scanned or being scanned already)")
        return Outcome(SUCCEEDED, result={"children": [d for d, _ in children],
                                          "queued": queued})

    def _poll(self, ctx: JobContext, order: ScanOrder, client: AdapterClient,
              state: dict[str, Any]) -> Outcome:
        scan_id = state["scan_id"]
        summaries: dict[str, Any] = dict(state.get("summaries") or {})
        wanted = report_types(state)
        for mime in wanted:
            if mime in summaries:
                continue
            try:
                answer = client.wait_for_report(
                    scan_id, mime, deadline=float(state["deadline"]), now=self._clock,
                    sleep=lambda seconds: self._wait(ctx, seconds),
                    stopped=ctx.stop_requested)
            except ScanStopped:
                raise Stopped() from None
            summaries[mime] = summary.completed(
                answer.report, report_id=report_id(ctx.job.id, mime),
                start_time=float(state["start_time"]), end_time=self._clock()).as_dict()
            if len(summaries) < len(wanted):
                state["summaries"] = summaries
                ctx.checkpoint(state)
        event = self._event(ctx, SCANNING_COMPLETED, state, self._clock(), summaries)
        worst = {s.get("severity") for s in summaries.values()}
        ctx.log(f"completed: severity {', '.join(sorted(worst))}")
        self._observe(COMPLETED)
        return Outcome(SUCCEEDED, result={"scan_id": scan_id, "scan_overview": summaries},
                       events=[event])

    # -- outcomes ---------------------------------------------------------------------------
    def _fail(self, ctx: JobContext, state: dict[str, Any], reason: str) -> Outcome:
        self._observe(FAILED)
        now = self._clock()
        overview = unfinished(ctx.job.id, FAILED, state, start_time=self._started(ctx),
                              end_time=now)
        return Outcome(FAILED, reason=reason, result={"scan_overview": overview},
                       events=[self._event(ctx, SCANNING_FAILED, state, now, overview)])

    def _again(self, ctx: JobContext, state: dict[str, Any], reason: str) -> Outcome:
        """A transient failure: try again later, unless the deadline has passed."""
        left = float(state.get("deadline", 0)) - self._clock()
        if left <= 0:
            return self._fail(ctx, state, f"no report before the scan's deadline: {reason}")
        raise Retry(reason, delay=min(self._settings.retry.delay(ctx.attempt), left))

    def _event(self, ctx: JobContext, kind: str, state: dict[str, Any], now: float,
               overview: dict[str, Any] | None = None) -> ScanEvent:
        order = ScanOrder.from_payload(ctx.payload, ctx.job.operator)
        if overview is None:
            status = STOPPED if kind == SCANNING_STOPPED else FAILED
            overview = unfinished(ctx.job.id, status, state, start_time=self._started(ctx),
                                  end_time=now)
        return ScanEvent(type=kind, repository=order.repository, digest=order.digest,
                         operator=order.operator, occur_at=int(now),
                         tags=(order.tag,) if order.tag else (), scan_overview=overview,
                         host=order.host)

    # -- helpers ----------------------------------------------------------------------------
    def _client(self, scanner: Scanner) -> AdapterClient:
        """One client per registration (it caches the metadata), new when it changed."""
        with self._lock:
            known = self._clients.get(scanner.name)
            if known is not None and known[0] == scanner:
                return known[1]
            if known is not None:
                known[1].close()
            secrets = [self._settings.credential.password] if self._settings.credential \
                else []
            client = AdapterClient(scanner, self._settings.limits, secrets=secrets)
            self._clients[scanner.name] = (scanner, client)
            return client

    def _authorization(self, metadata: spec.AdapterMetadata, repository: str) -> str:
        """What the adapter pulls with: Basic of the sidecar's credential, or (when the
        adapter asks for Bearer) a pull token for the one repository; "" = anonymous."""
        if metadata.registry_auth_type == "Bearer":
            value = self._read(lambda: self._registry.authorization_for(repository),
                               f"getting a pull token for {repository}")
            return value or ""
        credential = self._settings.credential
        return credential.basic() if credential is not None else ""

    def _read(self, call: Callable[[], Any], what: str) -> Any:
        """A registry call; transient failures become AdapterError(transient) to retry."""
        try:
            return call()
        except NotFound as exc:
            raise ScanFailed(f"{what}: not in the registry (any more): {exc}") from None
        except Unauthorized as exc:
            who = "the sidecar's registry_credential" if self._settings.credential \
                else "anonymous access (no sidecar.registry_credential)"
            raise ScanFailed(f"{what}: the registry refused {who}: {exc}") from None
        except RegistryUnavailable as exc:
            raise AdapterError(f"{what}: {exc}", transient=True) from None
        except RegistryError as exc:
            if exc.status is not None and exc.status >= 500:
                raise AdapterError(f"{what}: {exc}", transient=True) from None
            raise ScanFailed(f"{what}: {exc}") from None

    def _wait(self, ctx: JobContext, seconds: float) -> None:
        """Sleep between polls, a second at a time, so a stop request is seen promptly."""
        ends = self._clock() + seconds
        while True:
            left = ends - self._clock()
            if left <= 0:
                return
            self._sleep(min(left, 1.0))
            if ctx.stop_requested():
                raise Stopped()

    def _left(self, state: dict[str, Any]) -> float:
        return max(0.001, float(state["deadline"]) - self._clock())

    def _started(self, ctx: JobContext) -> float:
        return float(ctx.state.get("start_time") or ctx.job.started_at or self._clock())
