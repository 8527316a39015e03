"""HTTP Basic for the Harbor-compatible API: the one `admin` user, password from harbor.yml.

Harbor's API has many users and roles; the sidecar has one administrator, which is what
scripts and the Terraform provider log in as. Comparison is constant-time, and a failure says
only "unauthorized", as Harbor does.
"""

from __future__ import annotations

import base64
import binascii
import hmac

ADMIN_USER = "admin"


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password


def is_admin(header: str | None, admin_password: str) -> bool:
    credentials = basic_credentials(header)
    if credentials is None:
        return False
    return check_admin(*credentials, admin_password)


def check_admin(user: str, password: str, admin_password: str) -> bool:
    """The one login check, for Basic headers and the web UI's login form alike."""
    # both compared in full, so timing tells nothing about which one was wrong
    user_ok = hmac.compare_digest(user.encode("utf-8"), ADMIN_USER.encode("utf-8"))
    password_ok = hmac.compare_digest(password.encode("utf-8"), admin_password.encode("utf-8"))
    return user_ok and password_ok and bool(admin_password)
