"""A webhook target (Harbor's WebhookTargetObject): typed once, checked against the formats table.

Which types and payload formats exist, and which fields each accepts, come from
`dispatch.formats`, so a new format is validated, stored and rendered without a change here.
Messages are Harbor's where Harbor has one.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

from sidecar.dispatch import formats
from sidecar.events.scan import PAYLOAD_VERSIONS

SECRET_PREFIX = "whsec_"
#: Standard Webhooks: a symmetric secret is 24 to 64 random bytes.
SECRET_BYTES = (24, 64)
#: Fields that hold a secret: never shown, masked as *** in answers.
SECRET_FIELDS = ("auth_header", "secret")
#: Fields every target has, whatever its format.
COMMON_FIELDS = ("type", "address", "skip_cert_verify", "payload_format")
#: Beyond Harbor, any format: which Harbor release's payload shape (events.scan); "" = 2.10's
PAYLOAD_VERSION = "payload_version"


@dataclass(frozen=True)
class Target:
    type: str
    address: str
    auth_header: str = field(default="", repr=False)  # a log or traceback must not carry it
    skip_cert_verify: bool = False
    payload_format: str = "Default"
    #: Standard Webhooks signing secret (`whsec_...`); never shown, like auth_header.
    secret: str = field(default="", repr=False)
    #: the format's own fields (CloudEvents' `cloudevents_mode`), only those set
    options: tuple[tuple[str, str], ...] = ()
    #: Harbor's payload shape of this release ("2.11": scan events carry event_data.scan)
    payload_version: str = ""

    def option(self, name: str) -> str:
        return dict(self.options).get(name, "")

    def as_dict(self) -> dict[str, Any]:
        """The stored form; Harbor's keys only, unless one of ours is set."""
        out: dict[str, Any] = {"type": self.type, "address": self.address}
        if self.auth_header:
            out["auth_header"] = self.auth_header
        out["skip_cert_verify"] = self.skip_cert_verify
        if self.payload_format:
            out["payload_format"] = self.payload_format
        out.update(self.options)
        if self.secret:
            out["secret"] = self.secret
        if self.payload_version:
            out[PAYLOAD_VERSION] = self.payload_version
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Target:
        """From the stored form (validated before it was stored)."""
        return cls(
            type=raw.get("type") or "http",
            address=raw["address"],
            auth_header=raw.get("auth_header") or "",
            skip_cert_verify=bool(raw.get("skip_cert_verify", False)),
            payload_format=raw.get("payload_format") or "",
            secret=raw.get("secret") or "",
            options=tuple((name, str(raw[name])) for name in formats.option_owners()
                          if raw.get(name)),
            payload_version=raw.get(PAYLOAD_VERSION) or "",
        )


def target_keys() -> tuple[str, ...]:
    """Every key a target may have: the common ones, secrets, and each format's options."""
    return (*COMMON_FIELDS, *SECRET_FIELDS, PAYLOAD_VERSION, *formats.option_owners())


def check_url(address: Any) -> str | None:
    """Return Harbor's complaint about a target address, or None when it is usable."""
    if not isinstance(address, str) or not address.strip():
        return "empty URL"
    candidate = address.strip()
    if "://" not in candidate:
        # Harbor would store it and fail at delivery; say what is missing instead
        return "invalid scheme: the address must start with http:// or https://"
    try:
        parts = urlsplit(candidate)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        return f'parse "{candidate}": {exc}'
    if parts.scheme not in ("http", "https"):
        return f"invalid scheme: {parts.scheme}"
    if not parts.hostname or " " in parts.netloc:
        return f'parse "{candidate}": invalid host'
    return None


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret; ValueError (never quoting it) if malformed."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"secret must start with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"secret must be {SECRET_PREFIX} followed by base64") from None
    low, high = SECRET_BYTES
    if not low <= len(key) <= high:
        raise ValueError(f"secret must encode {low} to {high} bytes, not {len(key)}")
    return key


Problems = list[tuple[tuple[str, ...], str]]


def parse_target(raw: Any, policy_name: str, *,
                 allow_unknown: bool = False) -> tuple[Target | None, Problems]:
    """Validate one target mapping; the problems' paths are relative to the target."""
    if not isinstance(raw, Mapping):
        return None, [((), "a target must be a mapping")]
    problems: Problems = []
    if not allow_unknown:
        known = target_keys()
        problems += [((str(key),), f"unknown key '{key}' in target")
                     for key in raw if key not in known]
    kind = raw.get("type", "http")
    if kind not in formats.target_types():
        problems.append((("type",), f"unsupported target type {kind} with policy {policy_name}"))
    problem = check_url(raw.get("address"))
    if problem:
        problems.append((("address",), problem))
    payload_format = raw.get("payload_format") or ""
    named = formats.payload_formats(kind) if kind in formats.target_types() else None
    if payload_format and named == ():
        problems.append((("payload_format",), f"set payload format is not allowed for {kind}"))
    elif payload_format and payload_format not in (named or formats.payload_formats()):
        problems.append((("payload_format",),
                         f"unsupported payload format type: {payload_format}"))
    payload_format = payload_format or default_format(kind)
    row = formats.lookup(kind, payload_format) if named is not None else None
    options = _options(raw, kind, row, problems)
    secret = raw.get("secret") or ""
    if secret and row is not None and not row.accepts("secret"):
        problems.append((("secret",), f"set secret is not allowed for {kind}"))
    elif secret:
        try:
            secret_key(secret)
        except ValueError as exc:
            problems.append((("secret",), f"{exc} (make one with: echo whsec_$(openssl rand "
                             "-base64 32))"))
    auth_header = raw.get("auth_header") or ""
    if not isinstance(auth_header, str):
        problems.append((("auth_header",), "auth_header must be a string"))
    elif auth_header and row is not None and not row.accepts("auth_header"):
        problems.append((("auth_header",), f"set auth_header is not allowed for {kind}"))
    skip = raw.get("skip_cert_verify", False)
    if not isinstance(skip, bool):
        problems.append((("skip_cert_verify",), "skip_cert_verify must be true or false"))
    version = raw.get(PAYLOAD_VERSION) or ""
    if not isinstance(version, str):
        problems.append(((PAYLOAD_VERSION,), f"payload_version must be a string: quote it "
                         f"(\"2.10\"; YAML reads 2.10 as the number {version!r})"))
    elif version and version not in PAYLOAD_VERSIONS:
        problems.append(((PAYLOAD_VERSION,), f"unsupported payload_version {version} "
                         f"(expected {' or '.join(PAYLOAD_VERSIONS)})"))
    if problems:
        return None, problems
    return Target(type=kind, address=raw["address"].strip(), auth_header=auth_header,
                  skip_cert_verify=skip, payload_format=payload_format, secret=secret,
                  options=options, payload_version=version), []


def default_format(kind: Any) -> str:
    return formats.default_payload_format(kind) if isinstance(kind, str) else ""


def _options(raw: Mapping[str, Any], kind: Any, row: formats.Format | None,
             problems: Problems) -> tuple[tuple[str, str], ...]:
    """The format's own fields; one set on a format that lacks it says which format has it."""
    out = []
    for name, owners in formats.option_owners().items():
        value = raw.get(name) or ""
        if not value:
            continue
        if row is None or name not in row.options:
            named = [o.payload_format for o in owners if o.payload_format]
            message = (f"{name} needs payload_format {' or '.join(named)}" if named
                       else f"set {name} is not allowed for {kind}")
            problems.append(((name,), message))
        elif value not in row.options[name]:
            problems.append(((name,), f"unsupported {name} {value} "
                             f"(expected {' or '.join(row.options[name])})"))
        else:
            out.append((name, value))
    return tuple(out)
