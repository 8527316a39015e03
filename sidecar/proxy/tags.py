"""What the sidecar remembers of tag -> digest, and what it asks the registry before a delete.

The registry's 202 to a manifest DELETE names no tags, yet Harbor's DELETE_ARTIFACT carries the
tags the artifact had. So before forwarding a DELETE the proxy asks: tags it saw pointing at the
digest are checked with a HEAD each; when it knows none it lists the repository's tags. The
asking goes through the sidecar's registry client (sidecar/registry/).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable

from sidecar.events.manifest import manifest_size
from sidecar.registry import NotFound
from sidecar.registry import RegistryClient
from sidecar.registry import RegistryError
from sidecar.registry import Unauthorized

log = logging.getLogger(__name__)

MAX_TAGS_CHECKED = 1000


class TagIndex:
    """A bounded memory of (repository, tag) -> digest from traffic the proxy saw."""

    def __init__(self, capacity: int = 50_000):
        self._capacity = capacity
        self._digest_of: OrderedDict[tuple[str, str], str] = OrderedDict()

    def remember(self, repository: str, tag: str, digest: str) -> None:
        key = (repository, tag)
        self._digest_of[key] = digest
        self._digest_of.move_to_end(key)
        while len(self._digest_of) > self._capacity:
            self._digest_of.popitem(last=False)

    def forget_digest(self, repository: str, digest: str) -> None:
        for key in [k for k, v in self._digest_of.items() if k[0] == repository and v == digest]:
            del self._digest_of[key]

    def tags_for(self, repository: str, digest: str) -> list[str]:
        return [k[1] for k, v in self._digest_of.items() if k[0] == repository and v == digest]


class Describer:
    """Looks up a manifest's tags and size before it is deleted.

    With `sidecar.registry_credential` the registry client reads as the sidecar: a client that
    deletes with a delete-only token (skopeo asks for one) could not read them. Without it, or
    where the sidecar's identity is refused, the lookups send the deleting client's own
    Authorization, as that client would.
    """

    def __init__(self, registry: RegistryClient, index: TagIndex, concurrency: int = 8):
        self._registry = registry
        self._index = index
        self._concurrency = concurrency

    def describe(self, repository: str, digest: str, headers: dict[str, str]
                 ) -> tuple[tuple[str, ...], int | None]:
        tags, size, _ = self.describe_manifest(repository, digest, headers)
        return tags, size

    def describe_manifest(self, repository: str, digest: str, headers: dict[str, str]
                          ) -> tuple[tuple[str, ...], int | None, bytes]:
        """describe() plus the manifest's bytes (b"" if unreadable): they tell a Helm chart."""
        authorization = next(
            (v for k, v in headers.items() if k.lower() == "authorization"), None)
        client = self._registry
        if not client.has_credential and authorization:
            client = client.as_client(authorization)
        manifest, refused = self._manifest(client, repository, digest)
        if refused and client.has_credential and authorization:
            # the sidecar's own identity may not read this repository: do as the client would
            client = client.as_client(authorization)
            manifest, _ = self._manifest(client, repository, digest)
        size = manifest_size(manifest) if manifest else None
        known = self._index.tags_for(repository, digest)
        tags = self._pointing_at(client, repository, digest, known) if known else []
        if not tags:
            # nothing remembered, or what we remembered moved behind our back: ask the registry
            listed = [t for t in self._list_tags(client, repository) if t not in known]
            tags = self._pointing_at(client, repository, digest, listed)
        return tuple(sorted(tags, key=lambda t: (t not in known, t))), size, manifest

    def _manifest(self, client: RegistryClient, repository: str, digest: str
                  ) -> tuple[bytes, bool]:
        """The manifest's bytes (b"" if unreadable), and whether reading it was refused."""
        try:
            return client.get_manifest(repository, digest).data, False
        except NotFound:
            return b"", False
        except RegistryError as exc:
            log.warning("pre-delete lookup of %s@%s: %s", repository, digest, exc)
            return b"", isinstance(exc, Unauthorized)

    def _list_tags(self, client: RegistryClient, repository: str) -> list[str]:
        tags: list[str] = []
        try:
            for tag in client.tags(repository, page_size=MAX_TAGS_CHECKED):
                tags.append(tag)
                if len(tags) >= MAX_TAGS_CHECKED:
                    break
        except NotFound:
            pass
        except RegistryError as exc:
            log.warning("pre-delete tag listing of %s: %s", repository, exc)
        return tags

    def _pointing_at(self, client: RegistryClient, repository: str, digest: str,
                     candidates: Iterable[str]) -> list[str]:
        from gevent.pool import Pool  # only the proxy (a gevent worker) describes

        def check(tag: str) -> str | None:
            try:
                found = client.head_manifest(repository, tag)
            except RegistryError as exc:
                log.warning("pre-delete lookup of %s:%s: %s", repository, tag, exc)
                return None
            return tag if found is not None and found.digest == digest else None

        pool = Pool(self._concurrency)
        return [tag for tag in pool.imap(check, list(candidates)) if tag]
