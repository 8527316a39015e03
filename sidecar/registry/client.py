"""The one client for what the sidecar reads and writes on its own behalf in a registry.

Pre-delete lookups, and later scanning, quota recalculation, replication (source reads and
destination writes) and retention all call this; each client is one registry and one identity
(a Credential, or anonymous), with its own `requests` Session (keep-alive pool, TLS settings,
no proxy or .netrc from the environment: only the configured identity ever authenticates).
Every request has a connect and a read timeout. Auth is auth.py's: Bearer tokens per scope,
Basic, or anonymous, retried once after a 401.

Errors are errors.py's: NotFound (404), Unauthorized (401/403 even after the auth flow),
RegistryUnavailable (transport), RegistryError (any other answer), none carrying a secret.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote
from urllib.parse import urljoin
from urllib.parse import urlsplit

from sidecar.lazy import lazy_module
from sidecar.registry.answers import failure
from sidecar.registry.answers import length
from sidecar.registry.answers import media_type
from sidecar.registry.answers import reason
from sidecar.registry.answers import where
from sidecar.registry.auth import PassThrough
from sidecar.registry.auth import RegistryAuth
from sidecar.registry.challenge import CATALOG
from sidecar.registry.challenge import Scope
from sidecar.registry.challenge import merge
from sidecar.registry.challenge import repository as repo_scope
from sidecar.registry.content import BlobReader
from sidecar.registry.content import Sized
from sidecar.registry.content import check_digest
from sidecar.registry.content import digest_of
from sidecar.registry.content import is_digest
from sidecar.registry.content import pieces
from sidecar.registry.content import read_limited
from sidecar.registry.credential import Credential
from sidecar.registry.errors import NotFound
from sidecar.registry.errors import RegistryError
from sidecar.registry.errors import RegistryUnavailable
from sidecar.registry.errors import Unauthorized

requests = lazy_module("requests")  # the rare paths' library: see sidecar/lazy.py

USER_AGENT = "registry-webhook-sidecar"
#: what real clients accept (skopeo, containerd): OCI and Docker, images and indexes
MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
)
#: Distribution's own manifest limit
MANIFEST_LIMIT = 4 * 1024 * 1024
#: one page of tags/list or _catalog
PAGE_LIMIT = 16 * 1024 * 1024


@dataclass(frozen=True)
class Manifest:
    data: bytes          # exactly the registry's bytes (their digest is the manifest's)
    media_type: str
    digest: str


@dataclass(frozen=True)
class Descriptor:
    digest: str
    media_type: str
    size: int | None


class _Session:
    """The client's `requests` Session, made by its first request.

    Every worker builds the upstream's client at start, but most never send it a request
    (deletes, scans, replication, retention and quota recalculation do): `requests` stays
    unimported until then (sidecar/lazy.py).
    """

    def __init__(self, verify: bool | str, pool_size: int):
        self._verify = verify
        self._pool_size = pool_size
        self._made: requests.Session | None = None

    def _session(self) -> requests.Session:
        # No lock: greenlets do not switch in here (no I/O); two native threads racing
        # would each make a working session, the last one kept.
        session = requests.Session()
        session.trust_env = False  # no environment proxy or .netrc sees or adds credentials
        session.verify = self._verify
        session.headers["User-Agent"] = USER_AGENT
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=2, pool_maxsize=self._pool_size, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._made = session
        return session

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        made = self._made
        return (made or self._session()).request(method, url, **kwargs)

    def close(self) -> None:
        if self._made is not None:
            self._made.close()


class RegistryClient:
    """One registry (`url`), one identity (`credential`, or None for anonymous)."""

    def __init__(self, url: str, credential: Credential | None = None, *,
                 verify: bool | str = True, timeout: float = 30.0,
                 connect_timeout: float = 5.0, pool_size: int = 10,
                 clock: Callable[[], float] = time.monotonic):
        """`verify`: check TLS (True), don't (False: an `insecure` registry), or the path of
        a CA bundle. `timeout` is per read, so a long blob streams as long as bytes flow."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"registry URL must be http(s)://host[:port], got {url!r}")
        if parts.username or parts.password:
            raise ValueError("registry URL must not carry user info: give a credential")
        self.url = url.rstrip("/")
        self._credential = credential
        self._timeout = (connect_timeout, timeout)
        self._session = _Session(verify, pool_size)  # shared by as_client's views
        self._auth = RegistryAuth(self._session, credential, self._timeout, clock)

    @property
    def has_credential(self) -> bool:
        return self._credential is not None

    def as_client(self, authorization: str | None) -> RegistryClient:
        """This client sending someone else's Authorization verbatim (no token flow): the
        fallback when the sidecar has no credential of its own. Shares the connection pool."""
        view = copy.copy(self)
        view._credential = None
        view._auth = PassThrough(authorization)
        return view

    def close(self) -> None:
        self._session.close()

    # -- base ------------------------------------------------------------------------------
    def ping(self) -> None:
        """`GET /v2/`: reachable, and this identity is let in (raises otherwise)."""
        self._request("GET", "/v2/", (), expect=(200,)).close()

    def authorization_for(self, repository: str, actions: tuple[str, ...] = ("pull",)
                          ) -> str | None:
        """The Authorization value granting `actions` on `repository` (a Bearer token, or the
        Basic credential; None for an open registry): what a scanner adapter is handed."""
        scopes = (repo_scope(repository, *actions),)
        if isinstance(self._auth, RegistryAuth) and not self._auth.scheme:
            self.ping()  # learn how this registry authenticates
        return self._auth.header(scopes)

    # -- manifests -------------------------------------------------------------------------
    def get_manifest(self, repository: str, reference: str,
                     accept: tuple[str, ...] = MANIFEST_MEDIA_TYPES) -> Manifest:
        what = f"manifest {repository}:{reference}"
        response = self._request("GET", _manifest_path(repository, reference),
                                 _pull(repository), expect=(200,), stream=True,
                                 headers={"Accept": ", ".join(accept)})
        with response:
            data = read_limited(response, MANIFEST_LIMIT, what)
        if is_digest(reference):
            check_digest(data, reference, what)
        digest = response.headers.get("Docker-Content-Digest") or digest_of(data)
        return Manifest(data, media_type(response), digest)

    def head_manifest(self, repository: str, reference: str,
                      accept: tuple[str, ...] = MANIFEST_MEDIA_TYPES) -> Descriptor | None:
        """The manifest's digest, type and size, or None when there is no such manifest."""
        try:
            response = self._request("HEAD", _manifest_path(repository, reference),
                                     _pull(repository), expect=(200,),
                                     headers={"Accept": ", ".join(accept)})
        except NotFound:
            return None
        response.close()
        return Descriptor(response.headers.get("Docker-Content-Digest", ""),
                          media_type(response), length(response))

    def put_manifest(self, repository: str, reference: str, data: bytes,
                     media_type: str) -> str:
        """Store `data` byte for byte under a tag or its digest; returns the digest."""
        expected = digest_of(data, reference.partition(":")[0]) if is_digest(reference) \
            else digest_of(data)
        if is_digest(reference) and expected != reference:
            raise ValueError(f"manifest bytes do not match {reference}")
        response = self._request("PUT", _manifest_path(repository, reference),
                                 _push(repository), expect=(201,), body=bytes(data),
                                 headers={"Content-Type": media_type})
        response.close()
        digest = response.headers.get("Docker-Content-Digest") or expected
        if digest != expected and digest.partition(":")[0] == expected.partition(":")[0]:
            raise RegistryError(f"manifest {repository}:{reference}: the registry stored "
                                f"{digest}, not {expected}")
        return digest

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete a manifest by digest (with every tag pointing at it)."""
        if not is_digest(digest):
            raise ValueError(f"delete needs a digest, got {digest!r}")
        self._request("DELETE", _manifest_path(repository, digest), _delete(repository),
                      expect=(202,)).close()

    # -- listings --------------------------------------------------------------------------
    def tags(self, repository: str, page_size: int = 1000) -> Iterator[str]:
        """Every tag of `repository`, page after page (the registry's `Link: rel="next"`)."""
        yield from self._pages(f"/v2/{repository}/tags/list", "tags", _pull(repository),
                               page_size)

    def catalog(self, page_size: int = 1000) -> Iterator[str]:
        """Every repository name (`registry:catalog:*`), page after page."""
        yield from self._pages("/v2/_catalog", "repositories", (CATALOG,), page_size)

    def _pages(self, path: str, key: str, scopes: tuple[Scope, ...],
               page_size: int) -> Iterator[str]:
        target: str | None = f"{self.url}{path}?n={page_size}"
        seen: set[str] = set()
        while target and target not in seen:
            seen.add(target)
            response = self._request("GET", target, scopes, expect=(200,), stream=True)
            with response:
                body = read_limited(response, PAGE_LIMIT, f"GET {urlsplit(target).path}")
                following = response.links.get("next", {}).get("url")
            try:
                items = json.loads(body).get(key) or []
            except (ValueError, AttributeError):
                raise RegistryError(f"GET {urlsplit(target).path}: not a JSON listing") from None
            yield from (item for item in items if isinstance(item, str))
            target = urljoin(target, following) if following else None

    # -- blobs -----------------------------------------------------------------------------
    def head_blob(self, repository: str, digest: str) -> int | None:
        """The blob's size, or None when this repository has no such blob."""
        try:
            response = self._request("HEAD", f"/v2/{repository}/blobs/{digest}",
                                     _pull(repository), expect=(200,))
        except NotFound:
            return None
        response.close()
        return length(response)

    def open_blob(self, repository: str, digest: str, verify: bool = True) -> BlobReader:
        """The blob as a stream (bounded memory); with `verify` its end checks the digest."""
        response = self._request("GET", f"/v2/{repository}/blobs/{digest}",
                                 _pull(repository), expect=(200,), stream=True,
                                 headers={"Accept-Encoding": "identity"})
        return BlobReader(response, digest, verify)

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Cross-repository mount; False when the registry would not (nothing is left open)."""
        response = self._start_upload(repository, digest, from_repository)
        if response.status_code == 201:
            return True
        self._cancel(self._location(response))
        return False

    def upload_blob(self, repository: str, digest: str, data, *, size: int | None = None,
                    chunk_size: int | None = None, mount_from: str | None = None) -> None:
        """Upload a blob: `data` is bytes, a file-like or an iterable of bytes (a BlobReader
        from another registry streams straight through). Monolithic (one PUT) by default;
        `chunk_size` PATCHes it in chunks of that size; `mount_from` tries a cross-repository
        mount first and uploads only if the registry declines."""
        response = self._start_upload(repository, digest, mount_from)
        if response.status_code == 201:
            return  # mounted
        location = self._location(response)
        scopes = _push(repository)
        try:
            body = None
            if chunk_size:
                location = self._patch(location, data, chunk_size, scopes)
            elif isinstance(data, bytes | bytearray | memoryview):
                body = bytes(data)
            else:
                body = Sized(data, size) if size is not None else data
            final = location + ("&" if "?" in location else "?") + "digest=" + quote(digest)
            self._request("PUT", final, scopes, expect=(201,), body=body,
                          headers={"Content-Type": "application/octet-stream"}).close()
        except BaseException:
            self._cancel(location)
            raise

    def _start_upload(self, repository: str, digest: str,
                      from_repository: str | None) -> requests.Response:
        scopes = _push(repository)
        target = f"/v2/{repository}/blobs/uploads/"
        if from_repository:
            try:
                response = self._request(
                    "POST", f"{target}?mount={quote(digest)}&from="
                    f"{quote(from_repository, safe='')}",
                    merge(scopes, _pull(from_repository)), expect=(201, 202))
                response.close()
                return response
            except Unauthorized:
                pass  # Distribution wants pull on the source for the whole POST: upload instead
        response = self._request("POST", target, scopes, expect=(202,))
        response.close()
        return response

    def _patch(self, location: str, data, chunk_size: int, scopes: tuple[Scope, ...]) -> str:
        offset = 0
        for piece in pieces(data, chunk_size):
            response = self._request(
                "PATCH", location, scopes, expect=(202,), body=piece,
                headers={"Content-Type": "application/octet-stream",
                         "Content-Range": f"{offset}-{offset + len(piece) - 1}"})
            response.close()
            location = self._location(response, location)
            offset += len(piece)
        return location

    def _location(self, response: requests.Response, default: str | None = None) -> str:
        location = response.headers.get("Location")
        if not location:
            if default is None:
                raise RegistryError(f"{response.request.method} {urlsplit(response.url).path}:"
                                    f" {response.status_code} without a Location")
            return default
        return urljoin(self.url + "/", location)

    def _cancel(self, location: str) -> None:
        try:
            self._request("DELETE", location, (), expect=(204, 202, 404)).close()
        except RegistryError:
            pass  # the registry purges abandoned uploads itself

    # -- transport -------------------------------------------------------------------------
    def _request(self, method: str, target: str, scopes: tuple[Scope, ...], *,
                 expect: tuple[int, ...], headers: dict[str, str] | None = None,
                 body=None, stream: bool = False) -> requests.Response:
        url = target if "://" in target else self.url + target
        replay = _replay(body)
        response = None
        for attempt in range(2):
            sent = self._auth.header(scopes)
            send = dict(headers or {})
            if sent:
                send["Authorization"] = sent
            try:
                response = self._session.request(method, url, headers=send, data=body,
                                                 stream=stream, timeout=self._timeout)
            except requests.RequestException as exc:
                raise RegistryUnavailable(f"{method} {where(url)}: {reason(exc)}") from exc
            if response.status_code != 401 or attempt or replay is None:
                break
            if not self._auth.challenged(response, scopes, sent):
                break
            response.close()
            replay()
        if response.status_code not in expect:
            raise failure(response, method, url, stream)
        return response


def _pull(repository: str) -> tuple[Scope, ...]:
    return (repo_scope(repository, "pull"),)


def _push(repository: str) -> tuple[Scope, ...]:
    return (repo_scope(repository, "pull", "push"),)


def _delete(repository: str) -> tuple[Scope, ...]:
    return (repo_scope(repository, "delete"),)


def _manifest_path(repository: str, reference: str) -> str:
    return f"/v2/{repository}/manifests/{reference}"


def _replay(body) -> Callable[[], None] | None:
    """How to send `body` again after a 401, or None when it cannot be (a consumed stream)."""
    if body is None or isinstance(body, bytes | str):
        return lambda: None
    if hasattr(body, "seek") and hasattr(body, "tell"):
        try:
            position = body.tell()
        except OSError:
            return None
        return lambda: body.seek(position)
    return None
