"""The sidecar's own registry client (I/O): what it reads and writes on its own behalf.

Public API: RegistryClient (client.py) with Credential, Manifest, Descriptor, BlobReader and
the errors; features.py says what depends on the sidecar's own credential. Imports nothing
from proxy/, api/ or the CLI: they import it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Loaded when first asked for (PEP 562): `sidecar.registry.credential` is read by the settings,
# and the server's master must not import the client (requests) the workers use.
_WHERE = {
    "MANIFEST_MEDIA_TYPES": "client", "Descriptor": "client", "Manifest": "client",
    "RegistryClient": "client", "BlobReader": "content", "Credential": "credential",
    "DigestMismatch": "errors", "NotFound": "errors", "RegistryError": "errors",
    "RegistryUnavailable": "errors", "TokenError": "errors", "Unauthorized": "errors",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)


__all__ = [
    "MANIFEST_MEDIA_TYPES", "BlobReader", "Credential", "Descriptor", "DigestMismatch",
    "Manifest", "NotFound", "RegistryClient", "RegistryError", "RegistryUnavailable",
    "TokenError", "Unauthorized",
]
