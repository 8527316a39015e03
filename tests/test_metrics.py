"""/sidecar/metrics under `sidecar serve` with two gunicorn workers: any worker's scrape adds up
every worker's counts, and counts survive a worker being replaced."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import webhook_rules
from tests.support import clients

pytestmark = pytest.mark.e2e

MANIFEST_ACCEPT = ", ".join((
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """One scrape on a fresh connection: {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(f"{url}/sidecar/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: dict, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def pull_manifests(url: str, count: int) -> None:
    """`count` manifest GETs, each on its own connection, several at once (both workers)."""
    def one(_):
        response = requests.get(url, headers={"Accept": MANIFEST_ACCEPT}, timeout=10)
        assert response.status_code == 200

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(one, range(count)))


def workers_of(master: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            found.add(int(entry))
    return found


def settled(sidecar) -> dict:
    return sidecar.wait_status(lambda s: s["queue"]["depth"] == 0
                               and s["recorder"]["buffered"] == 0, timeout=30)


def test_counts_add_up_across_workers(sidecar_factory, receiver, image):
    sidecar = sidecar_factory(webhook_rules(receiver.url, auth_header=None), workers=2)
    layout, _ = image("v1")
    ref = f"{sidecar.netloc}/proj/app:v1"
    clients.push(layout, "v1", ref)
    receiver.wait_for(1)
    delivered = settled(sidecar)["deliveries"]["delivered"]
    before = scrape(sidecar.url)
    assert value(before, "sidecar_events_total", type="PUSH_ARTIFACT") == 1

    manifest = f"{sidecar.url}/v2/proj/app/manifests/v1"
    pull_manifests(manifest, 30)
    status = sidecar.wait_status(lambda s: s["deliveries"]["delivered"] == delivered + 30
                                 and s["queue"]["depth"] == 0, timeout=30)

    scrapes = [scrape(sidecar.url) for _ in range(8)]  # answered by either worker
    after = scrapes[0]
    for other in scrapes[1:]:
        for name in ("sidecar_proxy_requests_total", "sidecar_events_total",
                     "sidecar_delivery_attempts_total", "sidecar_delivery_duration_seconds_count"):
            assert total(other, name) == total(after, name), name

    assert value(after, "sidecar_events_total", type="PULL_ARTIFACT") - \
        value(before, "sidecar_events_total", type="PULL_ARTIFACT") == 30
    assert value(after, "sidecar_proxy_requests_total", method="GET", status="200") - \
        value(before, "sidecar_proxy_requests_total", method="GET", status="200") == 30
    # one policy with one target: every event is one delivery, every delivery one attempt
    events = total(after, "sidecar_events_total")
    assert status["deliveries"]["delivered"] == events == len(receiver.requests)
    assert value(after, "sidecar_delivery_attempts_total", outcome="delivered") == events
    assert value(after, "sidecar_delivery_duration_seconds_count") == events
    assert value(after, "sidecar_queue_depth") == 0
    assert value(after, "sidecar_deliveries", status="delivered") == events

    # Replace both workers: what they counted stays in the sums.
    master = sidecar.process.pid
    old = workers_of(master)
    assert len(old) == 2
    for pid in old:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = workers_of(master)
        if len(now) == 2 and not now & old:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"gunicorn did not replace workers {old}: {workers_of(master)}")
    sidecar.wait_status(lambda s: True)
    pull_manifests(manifest, 10)
    settled(sidecar)
    later = scrape(sidecar.url)
    assert value(later, "sidecar_events_total", type="PULL_ARTIFACT") == \
        value(after, "sidecar_events_total", type="PULL_ARTIFACT") + 10
    assert value(later, "sidecar_proxy_requests_total", method="GET", status="200") == \
        value(after, "sidecar_proxy_requests_total", method="GET", status="200") + 10
