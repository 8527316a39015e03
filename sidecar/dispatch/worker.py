"""Deliveries as one kind of job: render, send, decide, and record outcomes in batches.

Claiming and the worker threads are the generic lane's (jobs.lane); the atomic claim in
store.jobqueue is what keeps two workers or sidecars from sending the same attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sidecar.dispatch.addresses import AddressPolicy
from sidecar.dispatch.ratelimit import IntervalLimiter
from sidecar.dispatch.render import Context
from sidecar.dispatch.render import min_interval
from sidecar.dispatch.render import needs_project_id
from sidecar.dispatch.render import render
from sidecar.dispatch.retry import FAILED
from sidecar.dispatch.retry import Decision
from sidecar.dispatch.retry import RetryPolicy
from sidecar.dispatch.retry import decide
from sidecar.dispatch.retry import parse_retry_after
from sidecar.dispatch.sender import Answer
from sidecar.dispatch.sender import Sender
from sidecar.jobs.lane import Lane
from sidecar.rules.target import Target
from sidecar.store import clock
from sidecar.store import delivery_queue as queue
from sidecar.store import pacing
from sidecar.store import policies as policy_store
from sidecar.store import target_health
from sidecar.store.executor import Executor
from sidecar.store.models import DELIVERED
from sidecar.store.models import Delivery

log = logging.getLogger(__name__)

#: Slack accepts one message per second per incoming-webhook URL.
SLACK_INTERVAL = 1.0


@dataclass(frozen=True)
class DispatchSettings:
    concurrency: int = 10
    timeout: float = 3.0
    retry: RetryPolicy = RetryPolicy()
    idle_poll: float = 1.0
    #: Outcomes are written together after gathering this long: one commit for many sends.
    #: A killed worker loses at most this window's outcomes, and those are sent again.
    finish_window: float = 0.02
    #: After a slot frees up, how long the claimer waits for others before claiming.
    claim_window: float = 0.01
    #: Where deliveries may go (network.allow_private_network_access and its allow-list).
    addresses: AddressPolicy = AddressPolicy()
    #: A target whose every attempt failed this long is disabled (0: never; store.target_health)
    auto_disable_after: float = 0.0

    @property
    def lease(self) -> float:
        """Long enough for one send; a dead worker's claim is taken over after this."""
        return 2 * self.timeout + 10


class Dispatcher:
    """The delivery kind of job: a lane that claims deliveries and `deliver`s each."""

    def __init__(self, executor: Executor, settings: DispatchSettings,
                 observe: Callable[[str, float], None] | None = None):
        self._executor = executor
        self._settings = settings
        self._observe = observe  # (outcome, seconds) after each attempt: metrics
        self._sender = Sender(settings.timeout, settings.addresses)
        self.sent = 0
        # one pace per URL for every worker and sidecar: the slots come from the store
        self._slack = IntervalLimiter(
            interval=SLACK_INTERVAL, max_wait=SLACK_INTERVAL,
            schedule=lambda key, now: executor.run(pacing.reserve, key, SLACK_INTERVAL, now),
            push=lambda key, until: executor.run(pacing.defer, key, until))
        self._project_ids: dict[tuple[int | None, str], int | None] = {}
        #: stored target JSON -> (its dict, its Target): the same few targets come back with
        #: every delivery, and parsing them each time was a good part of rendering
        self._targets: dict[str, tuple[dict, Target | None]] = {}
        self._outcomes: list[tuple[Delivery, queue.Outcome]] = []
        self._outcomes_lock = threading.Lock()  # guards the list
        self._writing = threading.Lock()  # held while a batch is taken and written
        self._outcome_ready = threading.Event()
        self._finisher_running = False
        self.lane = Lane(
            "sender",
            claim=lambda n: executor.run(queue.claim, n, settings.lease),
            run=self.deliver,
            release=lambda items: executor.run(queue.release, items),
            concurrency=settings.concurrency,
            idle_poll=settings.idle_poll,
            claim_window=settings.claim_window,
            describe=lambda delivery: f"delivery {delivery.id}",
        )

    def wake(self, _count: int = 0) -> None:
        """Called when new deliveries were recorded in this process."""
        self.lane.wake()

    # -- deliveries claimed by the recorder that created them (no claim query, no poll) ----
    @property
    def lease(self) -> float:
        return self._settings.lease

    def reserve(self, limit: int) -> int:
        return self.lane.reserve(limit)

    def take(self, deliveries: list, reserved: int) -> None:
        self.lane.hand(deliveries, reserved)

    def start(self) -> None:
        self.lane.start()
        self._finisher_running = True
        threading.Thread(target=self._finish_loop, name="finisher", daemon=True).start()

    def stop(self, grace: float | None = None) -> None:
        """Stop claiming; give back claims not yet sent; let sends under way finish."""
        if grace is None:  # within gunicorn's graceful_timeout (30 s), after which it kills
            grace = min(self._settings.timeout + 2, 20.0)
        self.lane.stop(grace)
        self._finisher_running = False
        self._outcome_ready.set()
        self._write_outcomes()  # what the finisher has not written yet
        self._sender.close()  # idle kept-alive connections: the receivers need not time out

    def deliver(self, delivery: Delivery) -> None:
        """One attempt: render, send, decide, record."""
        target, typed = self._target(delivery)
        slack = min_interval(typed or target) > 0  # the formats table says who is paced (Slack)
        if slack:
            requeue_at = self._slack.turn(target.get("address", ""), delivery.uid,
                                          clock=clock.now)
            if requeue_at is not None:  # its turn is further off: back to the queue, no attempt
                self._executor.run(queue.postpone, delivery, requeue_at)
                return
        context = self._context(delivery, typed or target)
        attempt = delivery.attempts + 1
        try:
            request = render(delivery.event.payload, typed or target, context)
        except Exception as exc:
            # Final: the same row renders the same way next time. Left unrecorded, it would be
            # taken over after every lease expiry, for ever.
            log.exception("delivery %s: cannot build the request", delivery.id)
            answer = Sender.failed(time.time(), f"cannot build the request: {exc!r}"[:300])
            decision = Decision(FAILED, None, answer.error)
        else:
            answer = self._sender.send(request)
            if slack and answer.status_code == 429:  # every send to that URL waits, not just this
                paused = parse_retry_after(answer.retry_after, time.time()) or SLACK_INTERVAL
                self._slack.defer(target.get("address", ""), clock.now() + paused)
            retry = RetryPolicy(
                max_attempts=delivery.max_attempts,
                backoff=self._settings.retry.backoff,
                backoff_max=self._settings.retry.backoff_max,
            )
            now = time.time()
            decision = decide(
                retry, attempt, answer.status_code, answer.error,
                parse_retry_after(answer.retry_after, now), now, final=answer.final,
            )
        outcome = queue.Outcome(
            status=decision.status,
            status_code=answer.status_code,
            error=decision.reason,
            started_at=answer.started_at,
            duration_ms=answer.duration_ms,
            response_excerpt=answer.excerpt,
            retry_at=decision.retry_at,
        )
        self._log(delivery, attempt, answer, decision.status, decision.reason)
        if self._observe is not None:
            self._observe(decision.status, answer.duration_ms / 1000)
        if self._finisher_running:
            with self._outcomes_lock:
                self._outcomes.append((delivery, outcome))
            self._outcome_ready.set()
        elif not self._executor.run(self._record, [(delivery, outcome)])[0]:
            log.warning("delivery %s: claim was taken over; outcome not recorded", delivery.id)
        self.sent += 1

    def _finish_loop(self) -> None:
        while self._finisher_running:
            self._outcome_ready.wait(timeout=1.0)
            self._outcome_ready.clear()
            if not self._finisher_running:
                return  # stop() writes the rest
            time.sleep(self._settings.finish_window)  # gather the outcomes of a batch
            self._write_outcomes()

    def _write_outcomes(self) -> None:
        with self._writing:
            with self._outcomes_lock:
                batch, self._outcomes = self._outcomes, []
            if not batch:
                return
            try:
                recorded = self._executor.run(self._record, batch)
            except Exception:
                log.exception("recording %d outcomes failed; their leases will expire and "
                              "they are retried", len(batch))
                return
            for (delivery, _outcome), ok in zip(batch, recorded, strict=True):
                if not ok:
                    log.warning("delivery %s: claim was taken over; outcome not recorded",
                                delivery.id)

    def _record(self, batch: list[tuple[Delivery, queue.Outcome]]) -> list[bool]:
        """Write a batch of outcomes, then what they say about each target's health (on a
        database thread). A health write that fails never loses the outcomes."""
        recorded = queue.finish_many(batch)
        observed = [target_health.Observed(delivery.policy_id, self._target(delivery)[0],
                                           outcome.status == DELIVERED, outcome.error)
                    for (delivery, outcome), ok in zip(batch, recorded, strict=True) if ok]
        try:
            disabled = target_health.observe(observed, self._settings.auto_disable_after)
        except Exception:
            log.exception("recording the targets' health failed")
            return recorded
        for address in disabled:
            log.warning("target %s disabled: every delivery to it failed for %g s "
                        "(sidecar.delivery.auto_disable_after); its new deliveries are skipped "
                        "until it is re-enabled", address, self._settings.auto_disable_after)
        return recorded

    def _target(self, delivery: Delivery) -> tuple[dict, Target | None]:
        """The delivery's target as stored (a dict: pacing and health read it) and typed
        (None when it does not convert: `render` then says why), parsed once per target."""
        raw = getattr(delivery, "target_json", None)
        known = self._targets.get(raw) if raw is not None else None
        if known is not None:
            return known
        target = delivery.target
        try:
            typed: Target | None = Target.from_dict(target)
        except Exception:
            typed = None
        if raw is not None:
            if len(self._targets) >= 1024:
                self._targets.clear()
            self._targets[raw] = (target, typed)
        return target, typed

    def _context(self, delivery: Delivery, target: dict | Target) -> Context:
        project_id = None
        if needs_project_id(target):  # the CloudEvents source names it; cached, ids never move
            key = (delivery.policy_id, delivery.project)
            if key not in self._project_ids:
                self._project_ids[key] = self._executor.run(policy_store.project_id_for, *key)
            project_id = self._project_ids[key]
        return Context(delivery_uid=delivery.uid, now=time.time(), policy_id=delivery.policy_id,
                       project_id=project_id, request_id=delivery.event.request_id)

    @staticmethod
    def _log(delivery: Delivery, attempt: int, answer: Answer, status: str, reason: str) -> None:
        # Never the target's auth header or the body: only what identifies the attempt.
        level = logging.INFO if status == "delivered" else logging.WARNING
        log.log(
            level,
            "delivery %s %s policy=%s attempt=%d/%d -> %s%s",
            delivery.id, delivery.event_type, delivery.policy_name, attempt,
            delivery.max_attempts, status, f" ({reason})" if reason else "",
        )
