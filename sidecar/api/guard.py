"""What every admin surface (the API, the UI, /sidecar/status, /sidecar/metrics) checks first.

- While harbor_admin_password is still Harbor's published default, anyone who can reach the
  port could log in and point webhooks anywhere: until it is changed, those surfaces answer
  only loopback clients, with a message saying how to set a password.
- Logins (the UI form, HTTP Basic on any surface) are throttled per client address and user
  through the store (store.login_throttle), so every worker and sidecar counts the same
  failures; a refused attempt is answered 429 with Retry-After.

The client address is the one the WSGI entry settled (app.SidecarApp: the peer, or what a
trusted front proxy reports), found in REMOTE_ADDR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flask import request

from sidecar.api.auth import basic_credentials
from sidecar.api.auth import check_admin
from sidecar.api.runtime import runtime
from sidecar.clientaddr import is_loopback
from sidecar.store import login_throttle

DEFAULT_PASSWORD_MESSAGE = (
    "harbor_admin_password is still Harbor's published default, so the sidecar's API, web UI "
    "and status answer only clients on its own host (loopback). Set a password of your own in "
    "harbor.yml (harbor_admin_password: ..., or ${VARIABLE} from an env file or secret) and "
    "restart the sidecar.")


@dataclass(frozen=True)
class Login:
    """The outcome of one login: ok, or refused (retry_after > 0: throttled)."""

    ok: bool
    retry_after: float = 0.0

    @property
    def retry_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after)))


class Throttled(Exception):
    """A login refused by the throttle; the surface answers 429 with Retry-After."""

    def __init__(self, login: Login):
        super().__init__(f"too many failed logins; try again in {login.retry_header} seconds")
        self.login = login


def client_address() -> str:
    return request.remote_addr or ""


def default_password_refusal() -> str | None:
    """The message for a non-loopback client while the password is the default, else None."""
    if runtime().settings.default_password and not is_loopback(client_address()):
        return DEFAULT_PASSWORD_MESSAGE
    return None


def log_in(user: str, password: str) -> Login:
    """Check a login and count it against this client address and user."""
    settings = runtime().settings
    ok = check_admin(user, password, settings.admin_password)
    key = login_throttle.key_of(client_address(), user)
    wait = runtime().executor.run(login_throttle.attempt, key, ok)
    if wait > 0:
        return Login(False, wait)
    return Login(ok)


def basic_login() -> Login | None:
    """The request's HTTP Basic credentials checked, or None when it sends none."""
    credentials = basic_credentials(request.headers.get("Authorization"))
    if credentials is None:
        return None
    return log_in(*credentials)
