"""Send one rendered request and describe what came back. The only network code of delivery."""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests
from requests.structures import CaseInsensitiveDict

from sidecar.dispatch.addresses import AddressPolicy
from sidecar.dispatch.addresses import AddressRefused
from sidecar.dispatch.outbound import guard
from sidecar.dispatch.render import Request
from sidecar.neterrors import request_failure

EXCERPT = 512
#: Read this much more of an answer to keep its connection; a longer one closes it.
DRAIN = 65536


def _drained(raw) -> bool:
    """Read the rest of a small answer, so that its connection can carry the next request.

    Closing the response (what requests does with an unread streamed body) closed the
    connection too: every delivery paid for a new one, most of its CPU (bench/deliveries.py).
    """
    left = DRAIN
    while left > 0:
        chunk = raw.read(min(left, 16384), decode_content=False)
        if not chunk:
            return True
        left -= len(chunk)
    return False


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
    """One pooled HTTP session; `timeout` covers connect and each read, in seconds.

    Every connection, redirect hops included, goes only where `addresses` allows.
    """

    def __init__(self, timeout: float, addresses: AddressPolicy):
        self._session = guard(requests.Session(), addresses)
        self._session.trust_env = False  # a proxy from the environment must not see the secret
        self._timeout = timeout

    def send(self, request: Request) -> Answer:
        started = time.time()
        clock = time.monotonic()
        try:
            response = self._session.send(
                self._prepare(request),
                timeout=self._timeout,
                verify=request.verify_tls,
                stream=True,
                allow_redirects=True,
                proxies={},
                cert=None,
            )
        except AddressRefused as exc:
            return self._fail(started, clock, str(exc), final=True)
        except requests.exceptions.RequestException as exc:
            return self._fail(started, clock, request_failure(exc, self._timeout))
        excerpt, reusable = b"", False
        try:
            excerpt = response.raw.read(EXCERPT, decode_content=True) or b""
            reusable = _drained(response.raw)
        except Exception:  # the status is what matters; a broken body is not a failure
            pass
        finally:
            if reusable:  # back to the session's pool: the next delivery skips a connect
                response.raw.release_conn()
            else:
                response.close()
        return Answer(
            status_code=response.status_code,
            error="",
            retry_after=response.headers.get("Retry-After"),
            excerpt=excerpt.decode("utf-8", "replace"),
            started_at=started,
            duration_ms=int((time.monotonic() - clock) * 1000),
        )

    def _prepare(self, request: Request) -> requests.PreparedRequest:
        """What `session.post` would send, without merging the session's settings each time.

        That merge was a good part of the CPU of a delivery. The session's cookie jar is not
        applied (as Harbor, whose client keeps no cookies); its default headers are.
        """
        headers = CaseInsensitiveDict(self._session.headers)
        headers.update(request.headers)
        prepared = requests.PreparedRequest()
        prepared.prepare(method="POST", url=request.url, headers=headers, data=request.body,
                         hooks=self._session.hooks)
        return prepared

    @staticmethod
    def _fail(started: float, clock: float, error: str, final: bool = False) -> Answer:
        return Answer(None, error, None, "", started, int((time.monotonic() - clock) * 1000),
                      final)

    @staticmethod
    def failed(started: float, error: str) -> Answer:
        """An attempt that ended before anything was sent."""
        return Answer(None, error, None, "", started, 0)
