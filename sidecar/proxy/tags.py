"""What the sidecar remembers of tag -> digest, and what it asks the registry before a delete.

The registry's 202 to a manifest DELETE names no tags, yet Harbor's DELETE_ARTIFACT carries the
tags the artifact had. So before forwarding a DELETE the proxy asks: tags it saw pointing at the
digest are checked with a HEAD each; when it knows none it lists the repository's tags.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Iterable

import urllib3

from sidecar.events.manifest import manifest_size
from sidecar.proxy.upstream import Upstream

log = logging.getLogger(__name__)

MANIFEST_ACCEPT = ", ".join((
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
))
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
    """Looks up a manifest's tags and size before it is deleted, as the client would."""

    def __init__(self, upstream: Upstream, index: TagIndex, concurrency: int = 8):
        self._upstream = upstream
        self._index = index
        self._concurrency = concurrency

    def describe(self, repository: str, digest: str, headers: dict[str, str]
                 ) -> tuple[tuple[str, ...], int | None]:
        tags, size, _ = self.describe_manifest(repository, digest, headers)
        return tags, size

    def describe_manifest(self, repository: str, digest: str, headers: dict[str, str]
                          ) -> tuple[tuple[str, ...], int | None, bytes]:
        """describe() plus the manifest's bytes (b"" if unreadable): they tell a Helm chart."""
        base = {k: v for k, v in headers.items() if k.lower() in ("authorization", "host")}
        manifest = self._manifest(repository, digest, base)
        size = manifest_size(manifest) if manifest else None
        known = self._index.tags_for(repository, digest)
        tags = self._pointing_at(repository, digest, known, base) if known else []
        if not tags:
            # nothing remembered, or what we remembered moved behind our back: ask the registry
            listed = [t for t in self._list_tags(repository, base) if t not in known]
            tags = self._pointing_at(repository, digest, listed, base)
        return tuple(sorted(tags, key=lambda t: (t not in known, t))), size, manifest

    def _get(self, path: str, headers: dict[str, str], method: str = "GET"):
        try:
            return self._upstream.request(method, path, headers, preload=True)
        except urllib3.exceptions.HTTPError as exc:
            log.warning("lookup %s %s failed: %s", method, path, exc)
            return None

    def _manifest(self, repository: str, digest: str, base: dict[str, str]) -> bytes:
        response = self._get(f"/v2/{repository}/manifests/{digest}",
                             {**base, "Accept": MANIFEST_ACCEPT})
        if response is None or response.status != 200:
            return b""
        return response.data

    def _list_tags(self, repository: str, base: dict[str, str]) -> list[str]:
        tags: list[str] = []
        path = f"/v2/{repository}/tags/list?n=1000"
        while path and len(tags) < MAX_TAGS_CHECKED:
            response = self._get(path, base)
            if response is None or response.status != 200:
                break
            try:
                tags.extend(json.loads(response.data).get("tags") or [])
            except ValueError:
                break
            path = _next_link(response.headers.get("Link", ""))
        return tags[:MAX_TAGS_CHECKED]

    def _pointing_at(self, repository: str, digest: str, candidates: Iterable[str],
                     base: dict[str, str]) -> list[str]:
        from gevent.pool import Pool  # only the proxy (a gevent worker) describes

        headers = {**base, "Accept": MANIFEST_ACCEPT}

        def check(tag: str) -> str | None:
            response = self._get(f"/v2/{repository}/manifests/{tag}", headers, method="HEAD")
            if response is not None and response.headers.get("Docker-Content-Digest") == digest:
                return tag
            return None

        pool = Pool(self._concurrency)
        return [tag for tag in pool.imap(check, list(candidates)) if tag]


def _next_link(header: str) -> str:
    # Link: </v2/repo/tags/list?last=x&n=1000>; rel="next"
    if 'rel="next"' not in header:
        return ""
    start, end = header.find("<"), header.find(">")
    return header[start + 1:end] if 0 <= start < end else ""
