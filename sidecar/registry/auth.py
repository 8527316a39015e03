"""The registry's auth as real clients speak it: Basic, Bearer tokens from its realm, or none.

On a 401 with `WWW-Authenticate: Bearer realm=...,service=...,scope=...` a token is fetched from
the realm and the request retried once. With a credential the realm is first asked with the
OAuth2 form containerd uses (POST grant_type=password, access_type=offline; later
grant_type=refresh_token with the refresh token it answered); a realm that refuses the form
(400/401/404/405, as GCR, Artifactory and ACR do) is asked as docker asks (GET with Basic) from
then on. Without a credential the realm is asked anonymously (GET), as docker does for public
pulls. Tokens are cached per scope (cache.py), their life counted from when the answer
arrived (the spec's rule without `issued_at`: a token service's clock is not ours to trust).
A registry that challenges with Basic gets the credential on every later request, as skopeo
sends it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from collections.abc import Hashable
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Protocol
from urllib.parse import urlsplit

from sidecar.lazy import lazy_module
from sidecar.registry.cache import TokenCache
from sidecar.registry.challenge import Scope
from sidecar.registry.challenge import covers
from sidecar.registry.challenge import merge
from sidecar.registry.challenge import parse_challenges
from sidecar.registry.challenge import scope_text
from sidecar.registry.credential import Credential
from sidecar.registry.errors import RegistryUnavailable
from sidecar.registry.errors import TokenError

requests = lazy_module("requests")  # the rare paths' library: see sidecar/lazy.py

CLIENT_ID = "registry-webhook-sidecar"
#: the token spec's lifetime when a token service names none
DEFAULT_LIFETIME = 60.0
#: what a realm without the OAuth2 form answers to it (containerd falls back to GET on these)
POST_UNSUPPORTED = frozenset({400, 401, 404, 405})
#: a token answer is a few KiB; a realm answering more is not a token service
MAX_TOKEN_ANSWER = 1024 * 1024


class Sender(Protocol):
    """What sends the token requests: the client's session (client._Session)."""

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response: ...


class Auth(Protocol):
    def header(self, scopes: tuple[Scope, ...]) -> str | None:
        """The Authorization to send for a request needing `scopes` (None: send none)."""

    def challenged(self, response: requests.Response, scopes: tuple[Scope, ...],
                   sent: str | None) -> bool:
        """Learn from a 401; True when sending again (with header()) can do better."""


class PassThrough:
    """Someone else's Authorization, sent verbatim: no token flow (we hold no credential)."""

    def __init__(self, authorization: str | None):
        self._authorization = authorization

    def header(self, scopes: tuple[Scope, ...]) -> str | None:
        return self._authorization

    def challenged(self, response, scopes, sent) -> bool:
        return False


@dataclass(frozen=True)
class Grant:
    token: str = field(repr=False)
    lifetime: float
    refresh_token: str = field(default="", repr=False)


class _Refused(Exception):
    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


class RegistryAuth:
    """One identity (or anonymous) toward one registry; safe to share between greenlets."""

    def __init__(self, session: Sender, credential: Credential | None,
                 timeout: tuple[float, float], clock: Callable[[], float] = time.monotonic):
        self._session = session
        self._credential = credential
        self._timeout = timeout
        self._cache = TokenCache(clock)
        self._bearer: tuple[str, str] | None = None  # (realm, service) the registry named
        self._basic = False
        self._refresh: dict[tuple[str, str], str] = {}
        self._get_only: set[str] = set()
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    @property
    def scheme(self) -> str:
        """What the registry asked for so far: "bearer", "basic" or "" (nothing yet)."""
        return "basic" if self._basic else "bearer" if self._bearer else ""

    def header(self, scopes: tuple[Scope, ...]) -> str | None:
        if self._basic and self._credential is not None:
            return self._credential.basic()
        if self._bearer is None:
            return None  # not challenged yet: the first 401 tells how to authenticate
        return "Bearer " + self._token(self._bearer, scopes)

    def challenged(self, response: requests.Response, scopes: tuple[Scope, ...],
                   sent: str | None) -> bool:
        challenges = parse_challenges(_www_authenticate(response))
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.realm), None)
        if bearer is not None:
            self._bearer = (bearer.realm, bearer.service)
            rejected = sent[7:] if sent and sent[:7].lower() == "bearer " else None
            if rejected is not None:
                self._cache.drop(self._key(self._bearer, scopes), rejected)
            self._token(self._bearer, scopes, extra=bearer.scopes, rejected=rejected)
            return True
        if self._credential is not None and any(c.scheme == "basic" for c in challenges):
            if sent == self._credential.basic():
                return False  # the credential itself was refused
            self._basic = True
            return True
        return False

    # -- tokens ----------------------------------------------------------------------------
    @staticmethod
    def _key(bearer: tuple[str, str], scopes: tuple[Scope, ...]) -> Hashable:
        return (*bearer, scope_text(scopes))

    def _lock(self, key: Hashable) -> threading.Lock:
        with self._guard:
            if len(self._locks) > 1000:
                self._locks.clear()
            return self._locks.setdefault(key, threading.Lock())

    def _token(self, bearer: tuple[str, str], scopes: tuple[Scope, ...],
               extra: Iterable[Scope] = (), rejected: str | None = None) -> str:
        key = self._key(bearer, scopes)
        extra = tuple(extra)
        reusable = covers(scopes, extra)
        if reusable:
            token = self._cache.get(key)
            if token is not None and token != rejected:
                return token
        with self._lock(key):  # one fetch per scope, however many requests wait for it
            if reusable:
                token = self._cache.get(key)
                if token is not None and token != rejected:
                    return token
            grant = self._fetch(*bearer, merge(scopes, extra))
            self._cache.put(key, grant.token, grant.lifetime)
            return grant.token

    def _fetch(self, realm: str, service: str, scopes: tuple[Scope, ...]) -> Grant:
        credential = self._credential
        if credential is None:
            return self._get(realm, service, scopes, None)
        form = {"service": service, "client_id": CLIENT_ID, "scope": scope_text(scopes)}
        refresh = self._refresh.get((realm, service))
        if refresh:
            try:
                return self._post(realm, service, {
                    **form, "grant_type": "refresh_token", "refresh_token": refresh})
            except _Refused:
                self._refresh.pop((realm, service), None)  # revoked or expired: log in again
        if realm not in self._get_only:
            try:
                return self._post(realm, service, {
                    **form, "grant_type": "password", "access_type": "offline",
                    "username": credential.username, "password": credential.password})
            except _Refused as exc:
                if exc.status not in POST_UNSUPPORTED:
                    raise self._refused(realm, exc.status) from None
                self._get_only.add(realm)
        return self._get(realm, service, scopes, credential)

    def _post(self, realm: str, service: str, form: dict[str, str]) -> Grant:
        grant = self._call("POST", realm, data=form)
        if grant.refresh_token:
            self._refresh[(realm, service)] = grant.refresh_token
        return grant

    def _get(self, realm: str, service: str, scopes: tuple[Scope, ...],
             credential: Credential | None) -> Grant:
        params: list[tuple[str, str]] = [("service", service)] if service else []
        params += [("scope", str(s)) for s in scopes]
        headers = {}
        if credential is not None:
            params.append(("account", credential.username))
            headers["Authorization"] = credential.basic()
        try:
            return self._call("GET", realm, params=params, headers=headers)
        except _Refused as exc:
            raise self._refused(realm, exc.status) from None

    def _call(self, method: str, realm: str, **kwargs) -> Grant:
        try:
            response = self._session.request(method, realm, timeout=self._timeout, stream=True,
                                             allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise RegistryUnavailable(
                f"token service {_where(realm)} unreachable: {type(exc).__name__}") from None
        with response:
            if response.status_code != 200:
                raise _Refused(response.status_code)
            body = response.raw.read(MAX_TOKEN_ANSWER + 1, decode_content=True)
        if len(body) > MAX_TOKEN_ANSWER:
            raise TokenError(f"token service {_where(realm)} answered more than a token")
        return self._grant(body, realm)

    def _grant(self, body: bytes, realm: str) -> Grant:
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise TokenError(f"token service {_where(realm)} answered something other than "
                             "a JSON object")
        token = answer.get("token") or answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise TokenError(f"token service {_where(realm)} answered without a token")
        lifetime = answer.get("expires_in")
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
            lifetime = DEFAULT_LIFETIME
        refresh = answer.get("refresh_token")
        return Grant(token, float(lifetime), refresh if isinstance(refresh, str) else "")

    def _refused(self, realm: str, status: int) -> TokenError:
        who = f"user {self._credential.username!r}" if self._credential else "anonymous"
        verb = "refused" if status in (401, 403) else "failed for"
        return TokenError(f"token service {_where(realm)} {verb} {who} ({status})",
                          status=status)


def _www_authenticate(response: requests.Response) -> list[str]:
    raw = getattr(response.raw, "headers", None)
    if raw is not None and hasattr(raw, "getlist"):
        values = raw.getlist("WWW-Authenticate")
        if values:
            return values
    value = response.headers.get("WWW-Authenticate")
    return [value] if value else []


def _where(url: str) -> str:
    """scheme://host/path of a URL: never its query or user info."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}" \
           f"{parts.path}"
