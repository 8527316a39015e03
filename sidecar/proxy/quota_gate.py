"""The quota gate: a push that would take its project past its storage limit is refused before
the registry sees it (issue 10), as Harbor's quota middleware refuses it: 403 with Harbor's
DENIED message, which docker, podman and skopeo print, and a QUOTA_EXCEED event.

forward.py asks `admit()` once per request and, when it gets a Ticket back, tells the ticket how
the registry answered. Which projects have a quota, the atomic check-and-hold, settling and
QUOTA_WARNING belong to the books (sidecar.quota.book, behind `Books`): the gate knows
requests, the books know the store. A pull, or any request to a project without a quota, costs
one set lookup here; a request that adds bytes costs at most one store round trip.

    POST   .../blobs/uploads/?mount=<d>&from=<r>  holds the blob's size if the store knows it
    POST   .../blobs/uploads/?digest=<d>          monolithic upload: holds Content-Length
    PUT    .../blobs/uploads/<s>?digest=<d>       holds the session's bytes + Content-Length
    PUT    .../manifests/<ref>                    holds the manifest and the blobs it brings
    DELETE .../manifests/<digest> -> 202          the books forget what only it referenced
    POST .../blobs/uploads/ -> 202, PATCH -> 202  remembered: how much each session holds

A final PUT whose session this worker did not follow (its PATCHes went to another worker) asks
the registry once (GET on the upload URL, whose `Range` says). A PUT sent chunked has no size
before its bytes pass: it goes unheld, and the manifest that references the blob counts it at
its declared size, refused there if it does not fit. If the store cannot be reached the
request passes unaccounted (logged): bookkeeping never stops a push the registry would take.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any
from typing import Protocol
from urllib.parse import parse_qs
from urllib.parse import quote

import urllib3

from sidecar.events.infer import is_digest
from sidecar.events.infer import manifest_route
from sidecar.events.operator import operator_from_authorization
from sidecar.events.quota import DENIED_CONTENT_TYPE
from sidecar.events.quota import QUOTA_EXCEED
from sidecar.events.quota import QuotaEvent
from sidecar.events.quota import denied_body
from sidecar.events.quota import manifest_refs
from sidecar.events.uploads import is_size
from sidecar.events.uploads import project_of
from sidecar.events.uploads import session_bytes
from sidecar.events.uploads import session_of
from sidecar.events.uploads import state_of
from sidecar.events.uploads import upload_route
from sidecar.events.uploads import upload_state
from sidecar.proxy.headers import lookup_headers
from sidecar.proxy.upstream import Upstream

log = logging.getLogger(__name__)

#: Distribution's own manifest limit: a larger body is passed on for the registry to refuse.
MANIFEST_LIMIT = 4 * 1024 * 1024
_READ = 64 * 1024
_WATCHED = frozenset({"PUT", "POST", "PATCH", "DELETE"})


class Held(Protocol):
    """The store's answer to a check-and-hold (store.quota_usage.Reservation)."""

    allowed: bool
    token: str
    message: str


class Books(Protocol):
    """What the gate asks of the quota books (sidecar.quota.book.QuotaBook)."""

    def tracks(self, project: str) -> bool: ...

    def reserve_blob(self, project: str, repository: str, digest: str,
                     size: int | None) -> Held: ...

    def reserve_manifest(self, project: str, repository: str, digest: str, size: int,
                         refs: Iterable[tuple[str, int]]) -> Held: ...

    def settle(self, token: str, ok: bool, *, operator: str = "", request_id: str = "",
               tag: str = "") -> None: ...

    def forget(self, project: str, repository: str, digest: str) -> None: ...


Sink = Callable[[list[Any]], None]


class Ticket:
    """What the gate decided for one request: refuse it (`denied`), or send `body` on and
    call `answered` once the registry's status is known (None: no answer came)."""

    __slots__ = ("denied", "body", "chunked", "_then")

    def __init__(self, body: Any = None, chunked: bool = False, *,
                 then: Callable[[int | None, Mapping[str, str]], None] | None = None,
                 denied: bytes | None = None):
        self.body = body
        self.chunked = chunked
        self.denied = denied
        self._then = then

    def answered(self, status: int | None, headers: Mapping[str, str] | None = None) -> None:
        then, self._then = self._then, None  # once, whichever path ends the request
        if then is not None:
            try:
                then(status, headers or {})
            except Exception:
                log.exception("quota bookkeeping after the registry's answer failed")

    def refuse(self, start_response) -> list[bytes]:
        """The 403 Harbor answers (clients print its message)."""
        start_response("403 Forbidden", [("Content-Type", DENIED_CONTENT_TYPE),
                                         ("Content-Length", str(len(self.denied or b"")))])
        return [self.denied or b""]


class Sessions:
    """How many bytes each upload session this worker followed holds (bounded memory).

    Each figure is kept with the upload URL's state (its query: distribution's signed
    `_state`) that the registry's answer handed the client. A final PUT to that very URL
    means no request this worker did not see went in between; one to a URL whose state this
    worker never issued (a PATCH went to another worker or sidecar), or a registry whose
    upload URLs carry no state, gets None: ask the registry.
    """

    def __init__(self, capacity: int = 10_000):
        self._capacity = capacity
        self._held: OrderedDict[tuple[str, str], tuple[str, int]] = OrderedDict()

    def set(self, repository: str, session: str, state: str, size: int) -> None:
        key = (repository, session)
        self._held[key] = (state, size)
        self._held.move_to_end(key)
        while len(self._held) > self._capacity:
            self._held.popitem(last=False)

    def get(self, repository: str, session: str, state: str) -> int | None:
        known = self._held.get((repository, session))
        return known[1] if known is not None and state and known[0] == state else None

    def drop(self, repository: str, session: str) -> None:
        self._held.pop((repository, session), None)


class QuotaGate:
    def __init__(self, books: Books, upstream: Upstream, sink: Sink,
                 clock: Callable[[], float] = time.time, sessions: int = 10_000):
        self._books = books
        self._upstream = upstream
        self._sink = sink
        self._clock = clock
        self.sessions = Sessions(sessions)

    def admit(self, method: str, path: str, query: str, headers: Mapping[str, str],
              body: Any, chunked: bool) -> Ticket | None:
        """None: forward as usual. A Ticket: refuse it, or forward `ticket.body` and tell the
        ticket how the registry answered. `headers` are the ones sent upstream."""
        if method not in _WATCHED or not path.startswith("/v2/"):
            return None
        if not self._books.tracks(path[4:].partition("/")[0]):
            return None
        route = manifest_route(path)
        if route is not None:
            repository, reference = route
            if not project_of(repository):
                return None
            if method == "PUT":
                return self._manifest(repository, reference, headers, body, chunked)
            if method == "DELETE" and is_digest(reference):
                return Ticket(body, chunked, then=self._deleted(repository, reference))
            return None
        upload = upload_route(path)
        if upload is None or not project_of(upload[0]):
            return None
        repository, session = upload
        params = parse_qs(query) if query else {}
        if method == "POST" and not session:
            return self._start(repository, params, headers, body, chunked)
        if not session:
            return None
        if method == "PATCH":
            sent = body is not None and body != b""

            def patched(status: int | None, answer: Mapping[str, str]) -> None:
                held = session_bytes(answer.get("Range"), sent_body=sent)
                if status == 202 and held is not None:
                    self.sessions.set(repository, session, state_of(answer), held)
            return Ticket(body, chunked, then=patched)
        if method == "PUT" and "digest" in params:
            return self._finish(repository, session, path, query, params, headers, body,
                                chunked)
        if method in ("PUT", "DELETE"):  # a PUT without digest is refused; DELETE cancels
            return Ticket(body, chunked, then=lambda *_: self.sessions.drop(repository, session))
        return None

    # -- blobs -----------------------------------------------------------------------------
    def _start(self, repository: str, params: dict[str, list[str]], headers: Mapping[str, str],
               body: Any, chunked: bool) -> Ticket:
        """POST .../uploads/: a mount, a monolithic upload, or a session's start."""
        mount, digest = _param(params, "mount"), _param(params, "digest")
        if mount and is_digest(mount):
            return self._hold_blob(repository, mount, None, headers, body, chunked,
                                   started=True)
        if digest and is_digest(digest):
            length = _header(headers, "Content-Length")
            if chunked or not is_size(length):
                return Ticket(body, chunked)  # size unknown: the manifest counts it
            return self._hold_blob(repository, digest, int(length), headers, body, chunked)
        return Ticket(body, chunked, then=self._started(repository))

    def _started(self, repository: str) -> Callable[[int | None, Mapping[str, str]], None]:
        def then(status: int | None, answer: Mapping[str, str]) -> None:
            if status == 202:
                session = session_of(answer, repository)
                if session:
                    self.sessions.set(repository, session, state_of(answer), 0)
        return then

    def _finish(self, repository: str, session: str, path: str, query: str,
                params: dict[str, list[str]], headers: Mapping[str, str], body: Any,
                chunked: bool) -> Ticket:
        """PUT .../uploads/<session>?digest=: the bytes the session holds, plus this body."""
        def forget(*_: Any) -> None:
            self.sessions.drop(repository, session)

        digest = _param(params, "digest")
        length = _header(headers, "Content-Length") or "0"
        if not digest or not is_digest(digest) or chunked or not is_size(length):
            return Ticket(body, chunked, then=forget)  # refused by the registry, or unsized
        held = self.sessions.get(repository, session, upload_state(params))
        if held is None:
            held = self._ask_session(path, query, headers)
        if held is None:
            log.info("size of upload %s to %s unknown: the manifest will count it", session,
                     repository)
            return Ticket(body, chunked, then=forget)
        return self._hold_blob(repository, digest, held + int(length), headers, body, chunked,
                               also=forget)

    def _ask_session(self, path: str, query: str, headers: Mapping[str, str]) -> int | None:
        """The registry's word on how much an upload session holds (GET: 204 + Range)."""
        target = quote(path, safe="/:@") + (f"?{query}" if query else "")
        try:
            answer = self._upstream.request("GET", target, lookup_headers(headers),
                                            preload=True)
        except urllib3.exceptions.HTTPError as exc:
            log.warning("asking the registry for upload %s's size failed: %s", path, exc)
            return None
        if answer.status not in (200, 204):
            return None
        return session_bytes(answer.headers.get("Range"))

    def _hold_blob(self, repository: str, digest: str, size: int | None,
                   headers: Mapping[str, str], body: Any, chunked: bool, *,
                   started: bool = False, also: Callable[..., None] | None = None) -> Ticket:
        project = project_of(repository)
        try:
            held = self._books.reserve_blob(project, repository, digest, size)
        except Exception:
            log.exception("quota check of %s in %s failed: passed unaccounted", digest, project)
            return Ticket(body, chunked, then=also)
        if not held.allowed:
            if also is not None:
                also()
            return self._refuse(project, repository, held.message, headers)
        on_start = self._started(repository) if started else None
        context = _context(headers)

        def then(status: int | None, answer: Mapping[str, str]) -> None:
            if also is not None:
                also()
            if held.token:
                self._books.settle(held.token, status == 201, **context)
            if on_start is not None:
                on_start(status, answer)  # a mount declined (202) starts a session
        return Ticket(body, chunked, then=then)

    # -- manifests -------------------------------------------------------------------------
    def _manifest(self, repository: str, reference: str, headers: Mapping[str, str],
                  body: Any, chunked: bool) -> Ticket | None:
        """PUT .../manifests/<ref>: read it whole (it is small), hold what it brings."""
        length = _header(headers, "Content-Length")
        if body is None or (is_size(length) and int(length) > MANIFEST_LIMIT):
            return None  # nothing to count: the registry refuses it
        try:
            data, rest = _read_upto(body, MANIFEST_LIMIT)
        except Exception as exc:  # the client left mid-body: fail upstream as before
            return Ticket(_Broken(exc), chunked)
        if rest is not None:  # a chunked body past the limit
            return Ticket(itertools.chain([data], rest), True)
        refs = manifest_refs(data)
        if refs is None:
            return Ticket(data)  # not a manifest: the registry refuses it
        digest = reference if is_digest(reference) else \
            "sha256:" + hashlib.sha256(data).hexdigest()
        tag = "" if is_digest(reference) else reference
        project = project_of(repository)
        try:
            held = self._books.reserve_manifest(project, repository, digest, len(data), refs)
        except Exception:
            log.exception("quota check of %s@%s failed: passed unaccounted", repository, digest)
            return Ticket(data)
        if not held.allowed:
            return self._refuse(project, repository, held.message, headers, digest=digest,
                                tag=tag)
        context = _context(headers, tag)

        def then(status: int | None, _answer: Mapping[str, str]) -> None:
            if held.token:
                self._books.settle(held.token, status == 201, **context)
        return Ticket(data, then=then)

    def _deleted(self, repository: str, digest: str
                 ) -> Callable[[int | None, Mapping[str, str]], None]:
        def then(status: int | None, _answer: Mapping[str, str]) -> None:
            if status == 202:
                self._books.forget(project_of(repository), repository, digest)
        return then

    # -- refusal ---------------------------------------------------------------------------
    def _refuse(self, project: str, repository: str, message: str,
                headers: Mapping[str, str], digest: str = "", tag: str = "") -> Ticket:
        context = _context(headers, tag)
        event = QuotaEvent(type=QUOTA_EXCEED, project=project, occur_at=int(self._clock()),
                           details=message, repo_name=repository, digest=digest, **context)
        log.info("quota: refused a push to %s: %s", repository, message)
        try:
            self._sink([event])
        except Exception:
            log.exception("recording QUOTA_EXCEED failed")
        return Ticket(denied=denied_body(message))


class _Broken:
    """A request body whose reading failed: sending it on fails the same way."""

    def __init__(self, error: BaseException):
        self._error = error

    def read(self, size: int = -1) -> bytes:
        raise self._error

    def __iter__(self):
        raise self._error


def _read_upto(body: Any, limit: int) -> tuple[bytes, Iterable[bytes] | None]:
    """Read a request body (bytes, file-like or chunks) to its end, or past `limit`: then
    also return the unread rest (chunks only: a sized body past the limit was not read)."""
    if isinstance(body, bytes | bytearray):
        return bytes(body), None
    parts: list[bytes] = []
    total = 0
    if hasattr(body, "read"):
        while data := body.read(_READ):
            parts.append(data)
            total += len(data)
        return b"".join(parts), None
    chunks = iter(body)
    for data in chunks:
        parts.append(data)
        total += len(data)
        if total > limit:
            return b"".join(parts), chunks
    return b"".join(parts), None


def _param(params: dict[str, list[str]], name: str) -> str:
    values = params.get(name)
    return values[0] if values else ""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lower = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lower), None)
    return value


def _context(headers: Mapping[str, str], tag: str = "") -> dict[str, str]:
    """Who pushed, for the events a push may cause (QUOTA_EXCEED now, QUOTA_WARNING later)."""
    return {"operator": operator_from_authorization(_header(headers, "Authorization")),
            "request_id": _header(headers, "X-Request-Id") or "", "tag": tag}
