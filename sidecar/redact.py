"""Every way a secret is kept out of what the sidecar shows: pages, JSON, logs, the CLI. Pure.

Auth headers and signing secrets become `***`; addresses lose their user info and their query
values (Flux and VelaUX put tokens there); error texts lose any secret their target carries (a
receiver or a TLS library may echo one back). The API, the UI, the status page and the CLI all
call these functions, so what one hides, all hide.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import unquote
from urllib.parse import urlencode
from urllib.parse import urlsplit

from sidecar.rules.target import SECRET_FIELDS
from sidecar.rules.target import Target

#: What a masked secret looks like; sent back unchanged through the API, it keeps the stored one.
MASK = "***"
_ADDRESS = re.compile(r"https?://[^\s'\"<>]+")


def redact_address(address: str) -> str:
    """An address fit to show: no user info, query values replaced by ***."""
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        return "<invalid address>"
    netloc = parts.hostname or ""
    if port:
        netloc = f"{netloc}:{port}"
    query = urlencode([(k, MASK) for k, _ in parse_qsl(parts.query, keep_blank_values=True)],
                      safe="*")
    return parts._replace(netloc=netloc, query=query, fragment="").geturl()


def database_url(url: str) -> str:
    """A database URL without its password (the user name stays: it says which account)."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", f":{MASK}@")
        return parts._replace(netloc=netloc).geturl()
    return url


def public_target(target: Target) -> dict[str, Any]:
    """A target for operators' views: redacted address, whether auth and signing are set."""
    return {
        "type": target.type,
        "address": redact_address(target.address),
        "payload_format": target.payload_format,
        "skip_cert_verify": target.skip_cert_verify,
        "auth_header": MASK if target.auth_header else "",
        "signed": bool(target.secret),
    }


def masked_target(target: Target) -> dict[str, Any]:
    """The stored form with every secret field set replaced by ***: Harbor's API answer."""
    return {key: MASK if key in SECRET_FIELDS and value else value
            for key, value in target.as_dict().items()}


def unmask_targets(targets: Sequence[Target], stored: Sequence[Target]) -> tuple[Target, ...]:
    """Secrets sent back masked (as the API and the form show them) keep their stored value.

    A target is matched by address first, then by position, so reordering targets or
    editing an address keeps each secret where it was.
    """
    by_address = {t.address: t for t in stored}
    out = []
    for index, target in enumerate(targets):
        old = by_address.get(target.address) or (stored[index] if index < len(stored) else None)
        changes = {key: getattr(old, key) if old is not None else ""
                   for key in SECRET_FIELDS if getattr(target, key) == MASK}
        out.append(dataclasses.replace(target, **changes) if changes else target)
    return tuple(out)


def secrets_of(targets: Iterable[Target]) -> list[str]:
    """Every secret-looking string the targets carry, longest first (for `scrub`)."""
    found: set[str] = set()
    for target in targets:
        if target.auth_header:
            found.add(target.auth_header)
            found.update(part for part in target.auth_header.split() if len(part) >= 4)
        if target.secret:
            found.add(target.secret)
        try:
            parts = urlsplit(target.address)
            if parts.username:
                found.add(unquote(parts.username))
            if parts.password:
                found.add(unquote(parts.password))
            found.update(value for _, value in parse_qsl(parts.query))
        except ValueError:
            pass
    return sorted((s for s in found if len(s) >= 3), key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` without the given secrets, and any address in it redacted."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return _ADDRESS.sub(lambda m: redact_address(m.group(0)), text)
