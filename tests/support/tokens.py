"""A token service as CNCF Distribution's `auth: token` wants one, and registries that use it.

The service signs JWTs (ES256) with a key whose self-signed certificate the registry trusts
(`rootcertbundle`), naming the key the way Distribution 2.8 accepts it: the certificate itself
in the `x5c` header (default), or its libtrust fingerprint as `kid`. It grants exactly the
requested actions a user's table allows (the intersection, as the Docker token spec says; an
unknown user or a wrong password is a 401), over both token endpoints: GET with Basic (docker,
skopeo) and POST with the OAuth2 form (containerd: grant_type=password / refresh_token). Every
answer is recorded (`issued`), so tests can see who asked for what, and `secrets()` lists every
password and token to grep logs for.

`token_registry(workdir, accounts)` starts a service and a Distribution registry that trusts it;
replication tests use it as a destination too.
"""

from __future__ import annotations

import base64
import datetime
import fnmatch
import hashlib
import http.server
import json
import secrets as random_secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.ports import free_port
from tests.support.registry import Registry
from tests.support.registry import TokenAuth


@dataclass
class Account:
    """A user of the token service: its password and what it may do.

    `access` maps `type:name-glob` to actions: {"repository:acc/*": ["pull", "push"],
    "registry:catalog": ["*"]}; "*" as an action grants whatever is asked.
    """

    password: str
    access: dict[str, Iterable[str]] = field(default_factory=dict)


@dataclass
class Issued:
    """One answer of the token service."""

    method: str                 # GET or POST
    grant_type: str             # "" for GET, else password / refresh_token
    subject: str                # the user, "" for anonymous
    requested: list[str]        # scopes as asked
    access: list[dict]          # the JWT's access claim (what was granted)
    token: str
    lifetime: int
    at: float                   # time.time() when issued
    refresh_token: str = ""


class TokenService:
    def __init__(self, workdir: Path, accounts: dict[str, Account], *, lifetime: int = 300,
                 key_id: str = "x5c", oauth: bool = True,
                 anonymous: dict[str, Iterable[str]] | None = None,
                 service: str = "test-registry", issuer: str = "test-token-service"):
        self.workdir = workdir
        self.accounts = accounts
        self.lifetime = lifetime          # may be changed while running
        self.key_id = key_id              # "x5c" or "kid"
        self.oauth = oauth                # False: POST answers 404, as GCR's does
        self.anonymous = anonymous or {}  # what a client without credentials may do
        self.service = service
        self.issuer = issuer
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self.issued: list[Issued] = []
        self.refused: list[tuple[str, str]] = []  # (method, user) answered 401
        self._refresh_tokens: dict[str, str] = {}  # refresh token -> user
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._cert = _self_signed(self._key)
        self.cert_path = workdir / "token-signer.pem"

    # -- what tests read -------------------------------------------------------------------
    def auth_config(self) -> TokenAuth:
        return TokenAuth(realm=self.realm, service=self.service, issuer=self.issuer,
                         rootcertbundle=self.cert_path)

    def issued_to(self, subject: str) -> list[Issued]:
        with self._lock:
            return [i for i in self.issued if i.subject == subject]

    def secrets(self) -> list[str]:
        """Every password, token and refresh token this service knows or handed out."""
        with self._lock:
            found = [a.password for a in self.accounts.values()]
            found += [i.token for i in self.issued] + list(self._refresh_tokens)
        return found

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> TokenService:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                service._answer(self, "GET")

            def do_POST(self):  # noqa: N802
                service._answer(self, "POST")

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- the endpoint ----------------------------------------------------------------------
    def _answer(self, handler: http.server.BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        if url.path != "/token":
            return _reply(handler, 404, {"error": "not found"})
        if method == "POST":
            if not self.oauth:
                length = int(handler.headers.get("Content-Length") or 0)
                handler.rfile.read(length)
                return _reply(handler, 404, {"error": "POST not supported"})
            return self._post(handler)
        return self._get(handler, parse_qs(url.query))

    def _get(self, handler, query: dict[str, list[str]]) -> None:
        if not self._right_service(query):
            return _reply(handler, 400, {"error": "invalid_request", "detail": "service"})
        user = self._basic_user(handler.headers.get("Authorization", ""))
        if user is None:
            self.refused.append(("GET", _basic_name(handler.headers.get("Authorization", ""))))
            return _reply(handler, 401, {"details": "invalid credentials"},
                          {"WWW-Authenticate": 'Basic realm="token"'})
        issued = self._issue("GET", "", user, query.get("scope", []))
        _reply(handler, 200, {"token": issued.token, "access_token": issued.token,
                              "expires_in": issued.lifetime,
                              "issued_at": _rfc3339(issued.at)})

    def _post(self, handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        form = parse_qs(handler.rfile.read(length).decode())
        one = {key: values[0] for key, values in form.items()}
        if not self._right_service(form) or not one.get("client_id"):
            return _reply(handler, 400, {"error": "invalid_request"})
        grant = one.get("grant_type", "")
        if grant == "password":
            account = self.accounts.get(one.get("username", ""))
            if account is None or account.password != one.get("password"):
                self.refused.append(("POST", one.get("username", "")))
                return _reply(handler, 401, {"error": "invalid_grant"})
            user = one["username"]
        elif grant == "refresh_token":
            with self._lock:
                user = self._refresh_tokens.get(one.get("refresh_token", ""))
            if user is None:
                return _reply(handler, 401, {"error": "invalid_grant"})
        else:
            return _reply(handler, 400, {"error": "unsupported_grant_type"})
        refresh = ""
        if grant == "password" and one.get("access_type") == "offline":
            refresh = "rt-" + random_secrets.token_urlsafe(24)
        elif grant == "refresh_token":
            refresh = one["refresh_token"]
        scopes = one.get("scope", "").split()
        issued = self._issue("POST", grant, user, scopes, refresh)
        body = {"access_token": issued.token, "expires_in": issued.lifetime,
                "scope": " ".join(scopes), "issued_at": _rfc3339(issued.at)}
        if refresh:
            body["refresh_token"] = refresh
        _reply(handler, 200, body)

    def _right_service(self, fields: dict[str, list[str]]) -> bool:
        return fields.get("service", [self.service])[0] == self.service

    def _basic_user(self, header: str) -> str | None:
        """The authenticated user, "" for anonymous, None for bad credentials."""
        if not header:
            return ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None
        account = self.accounts.get(user)
        return user if account is not None and account.password == password else None

    # -- tokens ----------------------------------------------------------------------------
    def _issue(self, method: str, grant: str, user: str, scopes: list[str],
               refresh: str = "") -> Issued:
        allowed = self.accounts[user].access if user else self.anonymous
        access = [a for a in (_grant(scope, allowed) for s in scopes for scope in s.split())
                  if a is not None]
        now = int(time.time())
        lifetime = int(self.lifetime)
        claims = {"iss": self.issuer, "sub": user, "aud": self.service, "exp": now + lifetime,
                  "nbf": now, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        if self.key_id == "kid":
            headers = {"kid": libtrust_key_id(self._key.public_key())}
        else:
            der = self._cert.public_bytes(serialization.Encoding.DER)
            headers = {"x5c": [base64.b64encode(der).decode()]}
        token = jwt.encode(claims, self._key, algorithm="ES256", headers=headers)
        issued = Issued(method, grant, user, scopes, access, token, lifetime, time.time(),
                        refresh)
        with self._lock:
            self.issued.append(issued)
            if refresh:
                self._refresh_tokens[refresh] = user
        return issued


def _grant(scope: str, allowed: dict[str, Iterable[str]]) -> dict | None:
    """The access entry for one requested scope: requested actions the table allows."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        return None
    permitted: set[str] = set()
    for pattern, granted in allowed.items():
        pattern_kind, _, pattern_name = pattern.partition(":")
        if pattern_kind == kind and fnmatch.fnmatchcase(name, pattern_name):
            permitted.update(granted)
    wanted = [a for a in actions.split(",") if a]
    given = sorted(a for a in wanted if a in permitted or "*" in permitted)
    return {"type": kind, "name": name, "actions": given} if given else None


def _reply(handler, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(data)


def _basic_name(header: str) -> str:
    try:
        return base64.b64decode(header.partition(" ")[2]).decode().partition(":")[0]
    except ValueError:
        return ""


def _rfc3339(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test token signer")])
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))


def libtrust_key_id(public_key) -> str:
    """The `kid` Distribution looks a signing key up by: libtrust's fingerprint (SHA-256 of the
    DER SubjectPublicKeyInfo, first 240 bits, base32, in groups of four joined by colons)."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


@dataclass
class TokenRegistry:
    """A Distribution registry with `auth: token` and the token service it trusts."""

    registry: Registry
    tokens: TokenService

    @property
    def url(self) -> str:
        return self.registry.url

    @property
    def netloc(self) -> str:
        return self.registry.netloc

    def stop(self) -> None:
        self.registry.stop()
        self.tokens.stop()


def token_registry(workdir: Path, accounts: dict[str, Account],
                   tls: tuple[str, str] | None = None, **options) -> TokenRegistry:
    """Start a token service (options: TokenService's) and a registry that trusts it (served
    over HTTPS with `tls` = (certificate, key))."""
    tokens = TokenService(workdir / "tokens", accounts, **options).start()
    try:
        registry = Registry(workdir / "registry", token=tokens.auth_config(), tls=tls).start()
    except BaseException:
        tokens.stop()
        raise
    return TokenRegistry(registry, tokens)
