"""The sidecar's own registry client (I/O): what it reads and writes on its own behalf.

Public API: RegistryClient (client.py) with Credential, Manifest, Descriptor, BlobReader and
the errors; features.py says what depends on the sidecar's own credential. Imports nothing
from proxy/, api/ or the CLI: they import it.
"""

from sidecar.registry.client import MANIFEST_MEDIA_TYPES
from sidecar.registry.client import Descriptor
from sidecar.registry.client import Manifest
from sidecar.registry.client import RegistryClient
from sidecar.registry.content import BlobReader
from sidecar.registry.credential import Credential
from sidecar.registry.errors import DigestMismatch
from sidecar.registry.errors import NotFound
from sidecar.registry.errors import RegistryError
from sidecar.registry.errors import RegistryUnavailable
from sidecar.registry.errors import TokenError
from sidecar.registry.errors import Unauthorized

__all__ = [
    "MANIFEST_MEDIA_TYPES", "BlobReader", "Credential", "Descriptor", "DigestMismatch",
    "Manifest", "NotFound", "RegistryClient", "RegistryError", "RegistryUnavailable",
    "TokenError", "Unauthorized",
]
