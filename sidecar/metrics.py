"""Prometheus metrics: what the proxy carried, the events it saw, how deliveries went.

Under `sidecar serve` every gunicorn worker counts into its own files in
PROMETHEUS_MULTIPROC_DIR (set by serve.py before the workers fork), and a scrape served by any
worker adds them all up. Components never import this module: app.py hands them the `observe_*`
callbacks, so the proxy's hot path pays one dict lookup and one counter increment per request.
Store-wide numbers (queue depth, deliveries by status) are read from the database at scrape
time: they are the truth for every worker and every sidecar sharing the database.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import REGISTRY
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PROXY_REQUESTS = Counter(
    "sidecar_proxy_requests", "Requests proxied to the registry, by method and response status",
    ["method", "status"],
)
EVENTS = Counter("sidecar_events", "Artifact events inferred from traffic, by type", ["type"])
DELIVERY_ATTEMPTS = Counter(
    "sidecar_delivery_attempts",
    "Webhook send attempts by outcome: delivered, retry (will be sent again), failed (gave up)",
    ["outcome"],
)
SCANS = Counter("sidecar_scans",
                "Scans by how they ended: completed, failed, stopped, skipped (not scannable)",
                ["outcome"])
REPLICATION_TASKS = Counter(
    "sidecar_replication_tasks",
    "Replication tasks by how they ended: succeeded, failed, stopped", ["outcome"])
REPLICATED_BYTES = Counter("sidecar_replication_bytes",
                           "Bytes of blobs replication uploaded to destination registries")
DELIVERY_LATENCY = Histogram(
    "sidecar_delivery_duration_seconds", "Time one webhook send attempt took, answer or not",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

log = logging.getLogger(__name__)

_request_children: dict[tuple[str, int], Any] = {}
_event_children: dict[str, Any] = {}


def observe_request(method: str, status: int) -> None:
    """ProxyApp's `observe` callback: one increment, children cached per (method, status)."""
    child = _request_children.get((method, status))
    if child is None:
        child = _request_children[(method, status)] = PROXY_REQUESTS.labels(method, str(status))
    child.inc()


def observe_events(events: Iterable[Any]) -> None:
    for event in events:
        child = _event_children.get(event.type)
        if child is None:
            child = _event_children[event.type] = EVENTS.labels(event.type)
        child.inc()


def observe_attempt(outcome: str, seconds: float) -> None:
    """The dispatcher's callback after each attempt; `outcome` is delivered, pending or failed."""
    DELIVERY_ATTEMPTS.labels("retry" if outcome == "pending" else outcome).inc()
    DELIVERY_LATENCY.observe(seconds)


def observe_scan(outcome: str) -> None:
    """The scan handler's callback when a scan ends."""
    SCANS.labels(outcome).inc()
def observe_replication_task(outcome: str) -> None:
    """The replication task handler's callback when a task ends."""
    REPLICATION_TASKS.labels(outcome).inc()


def observe_replicated_bytes(count: int) -> None:
    """Called as each blob reaches a destination (mounted and skipped blobs count 0)."""
    REPLICATED_BYTES.inc(count)


class StoreCollector(Collector):
    """Queue depth, deliveries by status and quota usage, read through `read()` at scrape
    time."""

    def __init__(self, read: Callable[[], dict[str, Any]]):
        self._read = read

    def collect(self):
        up = GaugeMetricFamily("sidecar_store_up", "1 if the store answered this scrape")
        try:
            numbers = self._read()
        except Exception:
            log.exception("reading queue numbers for a scrape failed")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily("sidecar_queue_depth",
                                  "Deliveries waiting to be sent or being sent")
        depth.add_metric([], numbers["depth"])
        yield depth
        due = GaugeMetricFamily("sidecar_queue_due", "Deliveries due for an attempt now")
        due.add_metric([], numbers["due_now"])
        yield due
        by_status = GaugeMetricFamily("sidecar_deliveries", "Deliveries in the store by status",
                                      labels=["status"])
        for status, count in numbers["deliveries"].items():
            by_status.add_metric([status], count)
        yield by_status
        if "scans" in numbers:
            scans = GaugeMetricFamily("sidecar_scan_jobs", "Scan jobs in the store by status",
                                      labels=["status"])
            for status, count in numbers["scans"].items():
                scans.add_metric([status], count)
            yield scans
        used = GaugeMetricFamily("sidecar_quota_used_bytes",
                                 "Storage a project with a quota uses (each blob once)",
                                 labels=["project"])
        limit = GaugeMetricFamily("sidecar_quota_limit_bytes",
                                  "A project's storage limit in bytes (-1: unlimited)",
                                  labels=["project"])
        for project, used_bytes, limit_bytes in numbers.get("quotas", ()):
            used.add_metric([project], used_bytes)
            limit.add_metric([project], limit_bytes)
        yield used
        yield limit


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition(read_store: Callable[[], dict[str, Any]]) -> tuple[bytes, str]:
    """The scrape body and its content type."""
    store = CollectorRegistry(auto_describe=False)
    store.register(StoreCollector(read_store))
    if multiprocess_dir():
        from prometheus_client import multiprocess

        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:
        counted = REGISTRY
    return generate_latest(counted) + generate_latest(store), CONTENT_TYPE_LATEST
