"""What can go wrong talking to a registry, in messages fit for a log or a status page.

No message carries a credential: not the password, not a token, not an Authorization header,
not a token service's answer body (it holds tokens). Registry error bodies are quoted (their
`code` and `message`), as they name what was refused and hold nothing secret.
"""

from __future__ import annotations


class RegistryError(Exception):
    """The registry answered, but not what the operation needed."""

    def __init__(self, message: str, status: int | None = None, code: str = ""):
        super().__init__(message)
        self.status = status
        self.code = code


class NotFound(RegistryError):
    """404: no such repository, manifest, tag or blob."""


class Unauthorized(RegistryError):
    """401/403 even with the credential (or without one): this identity may not do that."""


class TokenError(Unauthorized):
    """The token service refused the credential, or answered without a usable token."""


class RegistryUnavailable(RegistryError):
    """The registry (or its token service) could not be reached, or broke the exchange off."""


class DigestMismatch(RegistryError):
    """Content read or written does not match its digest."""
