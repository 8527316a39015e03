"""The sidecar's client of one scanner adapter: metadata, submit a scan, fetch its report.

Every way an adapter can misbehave (refuses, errors, answers garbage or the wrong media
type, a report that does not parse, a redirect, an endless body, silence) ends in an
AdapterError whose text is a plain sentence for the status page: it never carries a secret
(the adapter credential, the registry authorization, nor anything echoing them).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote
from urllib.parse import urlsplit

from sidecar.lazy import lazy_module
from sidecar.rules.scanners import Scanner
from sidecar.scan import spec
from sidecar.scan.report import ReportError
from sidecar.scan.report import VulnerabilityReport
from sidecar.scan.report import parse_report

requests = lazy_module("requests")  # the rare paths' library: see sidecar/lazy.py

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    #: connect, and each read of the socket (Harbor's adapter client allows 5 s)
    request_timeout: float = 5.0
    #: one whole exchange, body included (a body that trickles in ends here)
    exchange_seconds: float = 60.0
    #: metadata, scan responses and error bodies
    max_message_bytes: int = 1 << 20
    #: a report (Trivy's for a large image is some MB)
    max_report_bytes: int = 64 << 20
    #: metadata is fetched again after this long (Harbor caches it 30 s)
    metadata_ttl: float = 30.0
    #: the shortest wait between polls, whatever Refresh-After says (0 would spin)
    min_poll_seconds: float = 1.0


class AdapterError(Exception):
    """The adapter could not do what was asked; `str()` is the reason, free of secrets.

    `transient` marks what may work on a later try (the adapter unreachable or busy) as
    opposed to an answer that will not change (a refusal, a broken report).
    """

    def __init__(self, reason: str, *, transient: bool = False):
        super().__init__(reason)
        self.transient = transient


class ScanStopped(Exception):
    """Waiting for a report ended because the scan was asked to stop."""


@dataclass(frozen=True)
class NotReady:
    refresh_after: int  # seconds the adapter asked to wait (Refresh-After)


@dataclass(frozen=True)
class Report:
    mime_type: str
    report: VulnerabilityReport
    size: int


class AdapterClient:
    """One scanner registration's adapter. Keep one per scanner: it caches the metadata."""

    def __init__(self, scanner: Scanner, limits: Limits | None = None, *,
                 secrets: Iterable[str] = (), clock: Callable[[], float] = time.monotonic):
        self.scanner = scanner
        self.limits = limits or Limits()
        self._clock = clock
        self._session = requests.Session()
        self._session.trust_env = False  # a proxy from the environment must not see secrets
        self._session.verify = not scanner.skip_cert_verify
        self._headers = scanner.adapter_headers()
        self._secrets: set[str] = set()
        self.add_secrets([scanner.access_credential, *self._headers.values(), *secrets])
        self._metadata: tuple[float, spec.AdapterMetadata] | None = None

    def close(self) -> None:
        self._session.close()

    def add_secrets(self, values: Iterable[str]) -> None:
        """Values no reason may quote, with the parts of Basic credentials."""
        for value in values:
            if not value:
                continue
            self._secrets.add(value)
            kind, _, token = value.partition(" ")
            if token:
                self._secrets.add(token)
            if kind == "Basic" and token:
                try:
                    user_pass = base64.b64decode(token, validate=True).decode()
                except ValueError:
                    continue
                self._secrets.update({user_pass, user_pass.partition(":")[2]})

    # -- the three calls ------------------------------------------------------------------

    def metadata(self, *, refresh: bool = False) -> spec.AdapterMetadata:
        """The adapter's metadata, fetched at most once per `metadata_ttl`."""
        now = self._clock()
        if self._metadata and not refresh and now - self._metadata[0] < self.limits.metadata_ttl:
            return self._metadata[1]
        response = self._send("GET", "/api/v1/metadata", "the metadata request",
                              headers={"Accept": spec.METADATA_TYPE})
        with response:
            if response.status_code != 200:
                raise self._refusal(response, "the metadata request")
            body = self._read(response, self.limits.max_message_bytes, "the metadata")
        try:
            metadata = spec.parse_metadata(self._json(body, "the metadata"))
        except spec.SpecError as exc:
            raise AdapterError(self._clean(f"the adapter's metadata is not usable: {exc}")) \
                from None
        self._metadata = (now, metadata)
        return metadata

    def submit(self, request: dict[str, Any], *, timeout: float | None = None) -> str:
        """POST /scan: the adapter's id for the scan (poll it, never submit twice)."""
        self.add_secrets([request.get("registry", {}).get("authorization", "")])
        body = json.dumps(request, separators=(",", ":")).encode()
        response = self._send("POST", "/api/v1/scan", "the scan request", data=body,
                              timeout=timeout, headers={"Content-Type": spec.SCAN_REQUEST_TYPE,
                                                        "Accept": spec.SCAN_RESPONSE_TYPE})
        with response:
            if response.status_code != 202:
                raise self._refusal(response, "the scan request")
            data = self._read(response, self.limits.max_message_bytes, "the scan response")
        try:
            scan_id = spec.parse_scan_response(self._json(data, "the scan response"))
        except spec.SpecError as exc:
            raise AdapterError(self._clean(f"the adapter accepted the scan but {exc}")) \
                from None
        artifact = request.get("artifact", {})
        log.info("scanner %s accepted the scan of %s@%s (id %s)", self.scanner.name,
                 artifact.get("repository"), artifact.get("digest"), scan_id)
        return scan_id

    def poll_report(self, scan_id: str, mime_type: str, *,
                    timeout: float | None = None) -> Report | NotReady:
        """GET /scan/{id}/report once: the report, or how long to wait before asking again."""
        path = f"/api/v1/scan/{quote(scan_id, safe='')}/report"
        response = self._send("GET", path, "the report request", timeout=timeout,
                              headers={"Accept": mime_type})
        with response:
            if response.status_code == 302:
                self._check_not_ready(response, path)
                return NotReady(spec.refresh_seconds(response.headers.get("Refresh-After")))
            if response.status_code == 404:
                raise AdapterError(f"the adapter does not know scan {scan_id} (HTTP 404)")
            if response.status_code != 200:
                raise self._refusal(response, "the report request")
            content_type = response.headers.get("Content-Type", "")
            if not spec.same_media_type(content_type, mime_type):
                got = f"as {content_type!r}" if content_type else "without a Content-Type"
                raise AdapterError(self._clean(f"the adapter sent the report {got}, not the "
                                               f"requested {mime_type!r}"))
            body = self._read(response, self.limits.max_report_bytes, "the report")
        try:
            report = parse_report(body)
        except ReportError as exc:
            raise AdapterError(self._clean(f"the report does not parse: {exc}")) from None
        return Report(mime_type=mime_type, report=report, size=len(body))

    def wait_for_report(self, scan_id: str, mime_type: str, *, deadline: float,
                        now: Callable[[], float] = time.time,
                        sleep: Callable[[float], None] = time.sleep,
                        stopped: Callable[[], bool] = lambda: False) -> Report:
        """Poll until the report is there, the `deadline` (a `now()` time) passes, or
        `stopped()`. A transient failure is retried until the deadline."""
        last_problem = ""
        while True:
            if stopped():
                raise ScanStopped()
            left = deadline - now()
            if left <= 0:
                raise AdapterError(_deadline_reason(last_problem or "the adapter kept "
                                                    "answering 302 (report not ready)"))
            wait = float(spec.DEFAULT_REFRESH_SECONDS)
            try:
                answer = self.poll_report(scan_id, mime_type,
                                          timeout=min(self.limits.request_timeout, left))
            except AdapterError as exc:
                if not exc.transient:
                    raise
                last_problem = str(exc)
            else:
                if isinstance(answer, Report):
                    return answer
                wait = answer.refresh_after
                last_problem = ""
            left = deadline - now()
            if left <= 0:
                continue
            sleep(min(max(wait, self.limits.min_poll_seconds), left))

    # -- plumbing -------------------------------------------------------------------------

    def _send(self, method: str, path: str, what: str, *, headers: dict[str, str],
              data: bytes | None = None, timeout: float | None = None) -> requests.Response:
        url = self.scanner.url + path
        read = self.limits.request_timeout if timeout is None else max(timeout, 0.001)
        try:
            response = self._session.request(
                method, url, data=data, headers={**self._headers, **headers},
                timeout=(min(read, self.limits.request_timeout), read),
                allow_redirects=False, stream=True)
        except requests.exceptions.Timeout:
            raise AdapterError(f"{what} to {self.scanner.url} timed out after {read:g}s",
                               transient=True) from None
        except requests.exceptions.SSLError as exc:
            raise AdapterError(self._clean(f"{what} to {self.scanner.url} failed TLS "
                                           f"verification: {_short(exc)}")) from None
        except requests.exceptions.RequestException as exc:
            raise AdapterError(self._clean(f"cannot reach the adapter at {self.scanner.url}: "
                                           f"{_short(exc)}"), transient=True) from None
        return response

    def _read(self, response: requests.Response, limit: int, what: str) -> bytes:
        """The body, refused past `limit` bytes or `exchange_seconds` of transfer."""
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > limit:
            raise AdapterError(f"{what} is {int(length)} bytes, more than the {limit} allowed")
        ends = self._clock() + self.limits.exchange_seconds
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise AdapterError(f"{what} is larger than the {limit} bytes allowed")
                if self._clock() > ends:
                    raise AdapterError(f"{what} took longer than "
                                       f"{self.limits.exchange_seconds:g}s to arrive",
                                       transient=True)
                chunks.append(chunk)
        except requests.exceptions.RequestException as exc:
            raise AdapterError(self._clean(f"{what} broke off: {_short(exc)}"),
                               transient=True) from None
        return b"".join(chunks)

    def _refusal(self, response: requests.Response, what: str) -> AdapterError:
        """An unexpected status, with the adapter's ErrorResponse message when it sent one."""
        status = response.status_code
        try:
            body = self._read(response, self.limits.max_message_bytes, "the error body")
        except AdapterError:
            body = b""
        message = None
        try:
            message = spec.error_message(json.loads(body)) if body else None
        except ValueError:
            pass
        detail = f": {message}" if message else ""
        if not message and body:
            detail = " (its body is not an error message)"
        if status == 302:
            detail = f" (a redirect to {_where(response)}; redirects are not followed)"
        transient = status in (429, 502, 503, 504)
        return AdapterError(self._clean(f"the adapter answered HTTP {status} to {what}"
                                        f"{detail}"), transient=transient)

    def _check_not_ready(self, response: requests.Response, path: str) -> None:
        """A 302 means "not ready" for the report's own URL; elsewhere it is a redirect."""
        location = response.headers.get("Location")
        if location and urlsplit(location).path.rstrip("/") not in ("", path):
            raise AdapterError(self._clean(
                f"the adapter redirected the report request to {_where(response)} instead of "
                "saying 'not ready' (redirects are not followed)"))

    def _clean(self, text: str) -> str:
        return spec.redact(text, self._secrets)[:500]

    def _json(self, body: bytes, what: str) -> Any:
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            start = body[:40].decode("utf-8", "replace")
            raise AdapterError(self._clean(f"{what} is not JSON (it starts {start!r})")) \
                from None


def _where(response: requests.Response) -> str:
    """The Location of a redirect without its query (which may carry a token)."""
    location = urlsplit(response.headers.get("Location", ""))
    return location._replace(query="", fragment="").geturl() or "nowhere"


def _deadline_reason(last: str) -> str:
    return f"no report before the scan's deadline: {last}"


def _short(exc: Exception) -> str:
    text = str(exc)
    # urllib3 nests the useful part: "... (Caused by NewConnectionError('...: [Errno 111] ...'))"
    if "Errno" in text:
        text = text[text.index("[Errno"):].split("'")[0].rstrip(')"')
    return text[:300]
