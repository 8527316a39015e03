"""Send one rendered request and describe what came back. The only network code of delivery
is the client it uses (dispatch.client)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sidecar.dispatch.addresses import AddressPolicy
from sidecar.dispatch.addresses import AddressRefused
from sidecar.dispatch.client import ClientError
from sidecar.dispatch.client import WebhookClient
from sidecar.dispatch.render import Request

#: How much of an answer is kept for the status page and the attempt history.
EXCERPT = 512
#: Read this much more of an answer to keep its connection; a longer one closes it (a new
#: connection per delivery was most of its CPU, bench/deliveries.py).
DRAIN = 65536


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    error: str
    retry_after: str | None
    excerpt: str
    started_at: float
    duration_ms: int
    #: Retrying cannot help: the address policy refused the target (see dispatch.addresses).
    final: bool = False


class Sender:
    """One pool of kept-alive connections; `timeout` covers connect and each read, in seconds.

    Every connection, redirect hops included, goes only where `addresses` allows.
    """

    def __init__(self, timeout: float, addresses: AddressPolicy):
        self._client = WebhookClient(timeout, addresses, limit=EXCERPT + DRAIN, excerpt=EXCERPT)
        self._timeout = timeout

    def send(self, request: Request) -> Answer:
        """POST `request`; never raises for what the network or the receiver did."""
        started = time.time()
        clock = time.monotonic()
        try:
            reply = self._client.post(request.url, request.body, request.headers,
                                      request.verify_tls)
        except AddressRefused as exc:
            return self._fail(started, clock, str(exc), final=True)
        except ClientError as exc:
            return self._fail(started, clock, str(exc))
        return Answer(
            status_code=reply.status,
            error="",
            retry_after=reply.headers.get("retry-after"),
            excerpt=reply.body.decode("utf-8", "replace"),
            started_at=started,
            duration_ms=int((time.monotonic() - clock) * 1000),
        )

    def close(self) -> None:
        """Close the idle connections (a stopping dispatcher)."""
        self._client.close()

    @staticmethod
    def _fail(started: float, clock: float, error: str, final: bool = False) -> Answer:
        return Answer(None, error, None, "", started, int((time.monotonic() - clock) * 1000),
                      final)

    @staticmethod
    def failed(started: float, error: str) -> Answer:
        """An attempt that ended before anything was sent."""
        return Answer(None, error, None, "", started, 0)
