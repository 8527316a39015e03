"""Bodies in and out: blobs streamed with bounded memory, checked against their digest.

A blob is read in pieces (`BlobReader`: iterate it, or `read(n)` it like a file) and hashed as
it goes; its end checks size and digest, so a copy never passes on bytes that are not what the
digest names. An upload body is bytes, a file-like or an iterable of bytes; `pieces` cuts any of
them into chunks of a fixed size for a chunked upload.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from collections.abc import Iterator

import urllib3

from sidecar.lazy import lazy_module
from sidecar.registry.errors import DigestMismatch
from sidecar.registry.errors import RegistryError
from sidecar.registry.errors import RegistryUnavailable

requests = lazy_module("requests")  # the rare paths' library: see sidecar/lazy.py

READ_CHUNK = 1024 * 1024
_ALGORITHMS = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}


def is_digest(reference: str) -> bool:
    algorithm, sep, encoded = reference.partition(":")
    return bool(sep and algorithm and encoded)


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{_ALGORITHMS[algorithm](data).hexdigest()}"


def check_digest(data: bytes, digest: str, what: str) -> None:
    """Raise DigestMismatch when `data` is not what `digest` names (unknown algorithms pass)."""
    algorithm = digest.partition(":")[0]
    if algorithm in _ALGORITHMS and digest_of(data, algorithm) != digest:
        raise DigestMismatch(f"{what}: content does not match {digest}")


def read_limited(response: requests.Response, limit: int, what: str) -> bytes:
    """The whole body, refusing (not truncating) one longer than `limit` bytes."""
    parts: list[bytes] = []
    total = 0
    try:
        for chunk in response.iter_content(64 * 1024):
            total += len(chunk)
            if total > limit:
                raise RegistryError(f"{what}: answer larger than {limit} bytes")
            parts.append(chunk)
    except requests.RequestException as exc:
        raise RegistryUnavailable(f"{what}: reading the answer failed: {type(exc).__name__}"
                                  ) from exc
    return b"".join(parts)


class BlobReader:
    """A blob as it streams from the registry; close it (or use `with`) when done."""

    def __init__(self, response: requests.Response, digest: str, verify: bool = True):
        self.digest = digest
        length = response.headers.get("Content-Length")
        self.size: int | None = int(length) if length and length.isdigit() else None
        self.media_type = response.headers.get("Content-Type", "")
        self._response = response
        algorithm = digest.partition(":")[0]
        self._hash = _ALGORITHMS[algorithm]() if verify and algorithm in _ALGORITHMS else None
        self._seen = 0
        self._done = False

    def read(self, amount: int = READ_CHUNK) -> bytes:
        if self._done:
            return b""
        try:
            data = self._response.raw.read(amount, decode_content=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self.close()
            raise RegistryUnavailable(
                f"blob {self.digest}: reading failed after {self._seen} bytes: "
                f"{type(exc).__name__}") from exc
        if data:
            self._seen += len(data)
            if self._hash is not None:
                self._hash.update(data)
            return data
        self._finish()
        return b""

    def __iter__(self) -> Iterator[bytes]:
        while data := self.read(READ_CHUNK):
            yield data

    def _finish(self) -> None:
        self._done = True
        self.close()
        if self.size is not None and self._seen != self.size:
            raise RegistryUnavailable(
                f"blob {self.digest}: {self._seen} of {self.size} bytes arrived")
        if self._hash is not None:
            algorithm = self.digest.partition(":")[0]
            if f"{algorithm}:{self._hash.hexdigest()}" != self.digest:
                raise DigestMismatch(f"blob {self.digest}: content does not match its digest")

    def close(self) -> None:
        self._response.close()

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Sized:
    """An iterable body of known length: `requests` sends Content-Length, not chunked."""

    def __init__(self, chunks: Iterable[bytes], size: int):
        self._chunks = chunks
        self._size = size

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def __len__(self) -> int:
        return self._size


def pieces(data, size: int) -> Iterator[bytes]:
    """`data` (bytes, a file-like with read(), or an iterable of bytes) in chunks of `size`."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        for start in range(0, len(view), size):
            yield bytes(view[start:start + size])
        return
    if hasattr(data, "read"):
        while chunk := data.read(size):
            yield chunk
        return
    buffer = bytearray()
    for chunk in data:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)
