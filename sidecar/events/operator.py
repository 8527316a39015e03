"""Who did it: the operator name Harbor puts in every payload.

Attribution only. A Bearer token is decoded, never verified: the registry (or its token
service) decides what the client may do; we only report the name it presented.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

_SURROGATE = re.compile("[\ud800-\udfff]")


def operator_from_authorization(header: str | None) -> str:
    """Return the Basic-auth user, the `sub` of a Bearer JWT, or "" (Harbor's anonymous)."""
    if not header:
        return ""
    scheme, _, credentials = header.strip().partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[0]
    if scheme == "bearer":
        return _jwt_subject(credentials)
    return ""


def _jwt_subject(token: str) -> str:
    parts = token.split(".")
    if len(parts) != 3:
        return ""
    body = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(body))
    except (binascii.Error, ValueError):
        return ""
    sub = claims.get("sub") if isinstance(claims, dict) else None
    if not isinstance(sub, str):
        return ""
    # JSON can spell lone surrogates ("\\ud800"): not text, and unstorable. Go writes U+FFFD.
    return _SURROGATE.sub("\ufffd", sub)
