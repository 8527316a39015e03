"""Send one sample event to a target and say how it answered: the safe "test endpoint".

Harbor removed its test button because it let users make the server POST anywhere (#11982).
Here it is admin-only and bounded: one request per target, a hard timeout, no proxy from the
environment, redirects followed only to the same scheme, host and port (and only 307/308,
which keep the method and body), and nothing of the answer but its status code comes back,
so the endpoint cannot be used to read internal services. Every connection obeys the same
address policy as deliveries (`network.allow_private_network_access`). The auth header is
sent, as a real delivery would, and never logged or echoed.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin
from urllib.parse import urlsplit

from sidecar.dispatch.addresses import AddressPolicy
from sidecar.dispatch.addresses import AddressRefused
from sidecar.dispatch.outbound import guard
from sidecar.dispatch.render import Context
from sidecar.dispatch.render import Request
from sidecar.dispatch.render import render
from sidecar.events.model import PUSH_ARTIFACT
from sidecar.events.model import ArtifactEvent
from sidecar.events.payload import artifact_payload
from sidecar.lazy import lazy_module
from sidecar.neterrors import request_failure

requests = lazy_module("requests")  # the rare paths' library: see sidecar/lazy.py

MAX_TIMEOUT = 10.0
MAX_REDIRECTS = 3


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    status_code: int | None
    latency_ms: int
    error: str


def sample_event(project: str = "library", hostname: str = "registry.example.com",
                 operator: str = "admin", now: int | None = None) -> dict[str, Any]:
    """A realistic PUSH_ARTIFACT payload, marked as a test in `custom_attributes`."""
    now = int(time.time()) if now is None else now
    digest = "sha256:" + hashlib.sha256(f"sidecar-test-{now}".encode()).hexdigest()
    event = ArtifactEvent(
        type=PUSH_ARTIFACT, repository=f"{project}/hello-world", digest=digest,
        operator=operator, occur_at=now, tags=("latest",), size=2457,
        media_type="application/vnd.oci.image.manifest.v1+json",
        extra={"test": "true"},
    )
    return artifact_payload(event, hostname=hostname, public=False, date_created=now)


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def send_probe(request: Request, timeout: float, *, addresses: AddressPolicy) -> ProbeResult:
    """POST `request`, following only same-origin 307/308 redirects; 2xx is success."""
    timeout = min(max(timeout, 0.1), MAX_TIMEOUT)
    session = guard(requests.Session(), addresses)
    session.trust_env = False  # an environment proxy must not see the auth header
    url = request.url
    clock = time.monotonic()
    try:
        for _ in range(MAX_REDIRECTS + 1):
            left = timeout - (time.monotonic() - clock)
            if left <= 0:
                return _result(None, clock, f"timeout after {timeout:g}s")
            try:
                response = session.post(
                    url, data=request.body, headers=request.headers, timeout=left,
                    verify=request.verify_tls, allow_redirects=False, stream=True,
                )
            except AddressRefused as exc:
                return _result(None, clock, str(exc))
            except requests.exceptions.RequestException as exc:
                return _result(None, clock, request_failure(exc, timeout))
            status = response.status_code
            location = response.headers.get("Location", "")
            try:  # drained (bounded) so the connection closes cleanly; never returned
                response.raw.read(65536)
            except Exception:
                pass
            finally:
                response.close()
            if status in (307, 308) and location:
                target = urljoin(url, location)
                if _same_origin(url, target):
                    url = target
                    continue
                return _result(status, clock, "redirect to another host not followed")
            if 300 <= status < 400:
                return _result(status, clock, f"redirect ({status}) not followed")
            if not 200 <= status < 300:
                return _result(status, clock, f"abnormal response code: {status}")
            return _result(status, clock, "", ok=True)
        return _result(None, clock, f"more than {MAX_REDIRECTS} redirects")
    finally:
        session.close()


def probe(target: dict[str, Any], payload: dict[str, Any], timeout: float,
          project_id: int | None = None, *, addresses: AddressPolicy) -> ProbeResult:
    """Render `payload` for `target` exactly as a delivery would (format, auth, signature),
    and send it once, only to an address `addresses` allows."""
    context = Context(delivery_uid=f"msg_test_{uuid.uuid4().hex}", now=time.time(),
                      project_id=project_id, request_id=str(uuid.uuid4()))
    return send_probe(render(payload, target, context), timeout, addresses=addresses)


def _result(status: int | None, clock: float, error: str, ok: bool = False) -> ProbeResult:
    return ProbeResult(ok, status, int((time.monotonic() - clock) * 1000), error)
