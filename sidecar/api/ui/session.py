"""The web UI's login session and its protection against cross-site request forgery.

Login is the API's (`admin` and harbor_admin_password, checked by `api.auth.check_admin`),
through a form that sets a session cookie, or HTTP Basic for tools that send it.

The session is Flask's signed cookie. Its signing key must be the same in every gunicorn
worker (a login answered by one worker is checked by another) and survive restarts, so a
random key is made once and kept in the store's Setting table (`ui_session_key`, first
writer wins). The key actually used is that value mixed with the admin password: changing
the password in harbor.yml logs every browser out. The cookie lives under /sidecar/ (read by
the UI and /sidecar/status only), HttpOnly, SameSite=Lax, Secure when the request came over
HTTPS; other paths (the API, the proxy) never open a session.

CSRF: each session carries a random token; every form posts it back and any POST without the
matching token is refused. Twenty lines of our own instead of Flask-WTF: the UI has no other
use for WTForms, and the check is easy to read and test here.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from flask import Flask
from flask import request
from flask import session
from flask.sessions import SecureCookieSessionInterface

from sidecar.api import guard
from sidecar.api.auth import ADMIN_USER
from sidecar.store import policies as policy_store

UI_PREFIX = "/sidecar/ui"
#: besides the UI, the one page that accepts the UI's session: the status page
SESSION_PATHS = (f"{UI_PREFIX}/", "/sidecar/status")
SESSION_KEY_SETTING = "ui_session_key"
SESSION_COOKIE = "sidecar_ui_session"
SESSION_LIFETIME = timedelta(hours=12)
CSRF_FIELD = "csrf_token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def session_key(stored: str, admin_password: str) -> str:
    """The signing key: the stored random value, bound to the current admin password."""
    return hmac.new(stored.encode("utf-8"), b"sidecar-ui-session\0" + admin_password.encode(),
                    hashlib.sha256).hexdigest()


class StoreKeySessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, keyed from the store, and only under the UI."""

    def open_session(self, app: Flask, request: Any):
        if not request.path.startswith(SESSION_PATHS) and request.path != UI_PREFIX:
            return None  # Flask gives a null session: nothing read, no cookie written
        if not app.secret_key:
            runtime = app.extensions["sidecar"]
            stored = runtime.executor.run(policy_store.ensure_setting, SESSION_KEY_SETTING,
                                          secrets.token_hex(32))
            app.secret_key = session_key(stored, runtime.settings.admin_password)
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        """Secure when this request came over HTTPS: the sidecar's own TLS, or a trusted front
        proxy's X-Forwarded-Proto (the worker believes it only from sidecar.trusted_proxies)."""
        return request.scheme == "https"


def configure(app: Flask) -> None:
    app.session_interface = StoreKeySessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_PATH="/sidecar/",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )


def current_user() -> str | None:
    """Who is asking: a logged-in session, or valid HTTP Basic credentials (throttled:
    raises guard.Throttled)."""
    if session.get("user") == ADMIN_USER:
        return ADMIN_USER
    login = guard.basic_login()
    if login is not None and login.retry_after:
        raise guard.Throttled(login)
    if login is not None and login.ok:
        return ADMIN_USER
    return None


def log_in(user: str, password: str) -> guard.Login:
    """The login form: a fresh session on success; throttled like Basic."""
    login = guard.log_in(user, password)
    if not login.ok:
        return login
    session.clear()  # a fresh session (and CSRF token): nothing carried over from before
    session.permanent = True
    session["user"] = ADMIN_USER
    session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return login


def log_out() -> None:
    session.clear()


def csrf_token() -> str:
    """This session's token, made on first use (the login form needs one too)."""
    token = session.get(CSRF_FIELD)
    if not token:
        token = session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return token


def csrf_ok() -> bool:
    """Whether this request may change something: safe methods always, POSTs with the token."""
    if request.method in SAFE_METHODS:
        return True
    expected = session.get(CSRF_FIELD) or ""
    given = request.form.get(CSRF_FIELD, "")
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())
