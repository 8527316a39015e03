"""One artifact from the source registry to a destination, through the OCI API on both sides.

As Harbor's transfer does, with what it leaves unchecked checked:

1. the source manifest is read (its digest checked against its bytes);
2. the destination's tag is looked at: the same digest means nothing to do; another digest is
   kept when the policy says `override: false` (a success that copies nothing);
3. an index's children go first (each with its blobs), an image's config then its layers;
   a blob the destination repository has (HEAD, size checked) is skipped, one this process
   put in another repository of the same destination is mounted from there, the rest is
   streamed from source to destination (bounded memory, paced by the policy's `speed`, in
   chunks with `copy_by_chunk`), its digest checked as it streams and its presence after;
4. the manifest goes last, with exactly the source's bytes, so the digest is identical, and
   the destination is asked again what it holds: anything but that digest fails the copy.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass

from sidecar.registry import BlobReader
from sidecar.registry import DigestMismatch
from sidecar.registry import Manifest
from sidecar.registry import RegistryClient
from sidecar.registry import RegistryError
from sidecar.registry.content import digest_of
from sidecar.registry.content import is_digest
from sidecar.replicate.plan import BadManifest
from sidecar.replicate.plan import Ref
from sidecar.replicate.plan import read_manifest
from sidecar.replicate.throttle import Throttle

COPIED, EXISTS, KEPT = "copied", "exists", "kept"
#: copy_by_chunk: blobs larger than this go up in PATCHes of this size (Harbor's default)
CHUNK_SIZE = 10 * 1024 * 1024


class MountSources:
    """Which repository of one destination registry holds a blob this process put there:
    where a later copy mounts it from instead of sending it again. Bounded (LRU)."""

    def __init__(self, size: int = 10_000):
        self._size = size
        self._repos: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str) -> str | None:
        with self._lock:
            repository = self._repos.get(digest)
            if repository is not None:
                self._repos.move_to_end(digest)
            return repository

    def put(self, digest: str, repository: str) -> None:
        with self._lock:
            self._repos[digest] = repository
            self._repos.move_to_end(digest)
            while len(self._repos) > self._size:
                self._repos.popitem(last=False)


@dataclass(frozen=True)
class Copied:
    outcome: str  # COPIED, EXISTS (same digest there) or KEPT (override false)
    digest: str
    existing: str = ""  # the destination's digest when KEPT


class Copier:
    """Copies artifacts of one task; callbacks save progress and see stop requests."""

    def __init__(self, source: RegistryClient, destination: RegistryClient, *,
                 mounts: MountSources | None = None, throttle: Throttle | None = None,
                 chunk_size: int | None = None,
                 check_stop: Callable[[], None] = lambda: None,
                 on_blob: Callable[[str, int], None] = lambda digest, size: None,
                 log: Callable[[str], None] = lambda line: None):
        self.source = source
        self.destination = destination
        self.mounts = mounts
        self.throttle = throttle or Throttle(0)
        self.chunk_size = chunk_size
        self.check_stop = check_stop
        self.on_blob = on_blob
        self.log = log

    # -- artifacts ---------------------------------------------------------------------------
    def copy(self, source_repo: str, destination_repo: str, reference: str,
             override: bool) -> Copied:
        self.check_stop()
        manifest = self._source_manifest(source_repo, reference)
        existing = self.destination_digest(destination_repo, reference)
        if existing == manifest.digest:
            self.log(f"{destination_repo}:{reference} already exists at the destination "
                     f"with {manifest.digest}: skipped")
            return Copied(EXISTS, manifest.digest)
        if existing is not None and not override:
            self.log(f"{destination_repo}:{reference} exists at the destination with "
                     f"{existing}, not {manifest.digest}; override is off: kept")
            return Copied(KEPT, manifest.digest, existing)
        self._content(source_repo, destination_repo, manifest)
        self.destination.put_manifest(destination_repo, reference, manifest.data,
                                      manifest.media_type)
        stored = self.destination_digest(destination_repo, reference)
        if stored != manifest.digest:
            raise DigestMismatch(f"{destination_repo}:{reference}: after the upload the "
                                 f"destination holds {stored or 'nothing'}, not "
                                 f"{manifest.digest}")
        self.log(f"{destination_repo}:{reference} copied ({manifest.digest})")
        return Copied(COPIED, manifest.digest)

    def destination_digest(self, repository: str, reference: str) -> str | None:
        """What the destination holds under a tag or digest (None: nothing). An answer
        without Docker-Content-Digest is read whole, and must be a manifest."""
        found = self.destination.head_manifest(repository, reference)
        if found is None:
            return None
        if found.digest and is_digest(found.digest):
            return found.digest
        manifest = self.destination.get_manifest(repository, reference)
        try:
            read_manifest(manifest.data, manifest.media_type)
        except BadManifest as exc:
            raise RegistryError(f"{repository}:{reference}: the destination's answer is not "
                                f"a manifest ({exc})") from None
        return digest_of(manifest.data)

    def _source_manifest(self, repository: str, reference: str) -> Manifest:
        manifest = self.source.get_manifest(repository, reference)
        algorithm = manifest.digest.partition(":")[0]
        if algorithm == "sha256" and digest_of(manifest.data) != manifest.digest:
            raise DigestMismatch(f"{repository}:{reference}: the source's manifest does not "
                                 f"match its digest {manifest.digest}")
        return manifest

    def _content(self, source_repo: str, destination_repo: str, manifest: Manifest) -> None:
        try:
            content = read_manifest(manifest.data, manifest.media_type)
        except BadManifest as exc:
            raise RegistryError(f"{source_repo}@{manifest.digest}: {exc}") from None
        for child in content.children:
            self._child(source_repo, destination_repo, child)
        for blob in content.blobs:
            self.blob(source_repo, destination_repo, blob)

    def _child(self, source_repo: str, destination_repo: str, ref: Ref) -> None:
        """An index's child, by digest, with its blobs, before the index itself."""
        self.check_stop()
        if self.destination_digest(destination_repo, ref.digest) == ref.digest:
            return
        child = self.source.get_manifest(source_repo, ref.digest)  # digest checked
        self._content(source_repo, destination_repo, child)
        self.destination.put_manifest(destination_repo, ref.digest, child.data,
                                      child.media_type)

    # -- blobs -------------------------------------------------------------------------------
    def blob(self, source_repo: str, destination_repo: str, ref: Ref) -> None:
        self.check_stop()
        if self._present(destination_repo, ref):
            self.on_blob(ref.digest, 0)
            return
        mount_from = self.mounts.get(ref.digest) if self.mounts is not None else None
        if mount_from and mount_from != destination_repo:
            if self.destination.mount_blob(destination_repo, ref.digest, mount_from) \
                    and self._present(destination_repo, ref):
                self.log(f"blob {ref.digest} mounted from {mount_from}")
                self._remember(ref.digest, destination_repo)
                self.on_blob(ref.digest, 0)
                return
        with self.source.open_blob(source_repo, ref.digest) as reader:
            size = reader.size if reader.size is not None else ref.size
            if ref.size is not None and size != ref.size:
                raise DigestMismatch(f"blob {ref.digest}: the source serves {size} bytes, "
                                     f"the manifest says {ref.size}")
            chunk = self.chunk_size if self.chunk_size and size and size > self.chunk_size \
                else None
            self.destination.upload_blob(destination_repo, ref.digest, self._body(reader),
                                         size=size, chunk_size=chunk)
        if not self._present(destination_repo, Ref(ref.digest, ref.media_type, size)):
            raise DigestMismatch(f"blob {ref.digest}: uploaded, but the destination "
                                 f"repository {destination_repo} does not hold it "
                                 f"({size} bytes)")
        self._remember(ref.digest, destination_repo)
        self.on_blob(ref.digest, size or 0)

    def _present(self, repository: str, ref: Ref) -> bool:
        size = self.destination.head_blob(repository, ref.digest)
        return size is not None and (ref.size is None or size == ref.size)

    def _remember(self, digest: str, repository: str) -> None:
        if self.mounts is not None:
            self.mounts.put(digest, repository)

    def _body(self, reader: BlobReader) -> Iterator[bytes]:
        """The blob as it streams, paced, a stop request seen between pieces."""
        for piece in self.throttle.pace(reader):
            yield piece
            self.check_stop()
