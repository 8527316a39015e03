"""What the chart upstream's index says: which chart and version a download file is.

`my-chart-1.2.3-rc.1.tgz` can be split more than one way; the repository's index.yaml knows.
Indexes are cached per repository for a short while and re-read when a file is not in them
(a chart uploaded since), so a download costs no extra request in the steady state.
"""

from __future__ import annotations

import logging
import time

import urllib3

from sidecar.events.chartfiles import index_files
from sidecar.events.chartfiles import split_filename
from sidecar.proxy.headers import lookup_headers
from sidecar.proxy.upstream import Upstream

log = logging.getLogger(__name__)

#: Largest index.yaml read to resolve names; a bigger one falls back to splitting names.
MAX_INDEX_BYTES = 64 * 1024 * 1024


class ChartIndex:
    def __init__(self, upstream: Upstream, prefix: str = "", ttl: float = 30.0,
                 capacity: int = 1000):
        self._upstream = upstream
        self._prefix = prefix
        self._ttl = ttl
        self._capacity = capacity
        self._files: dict[str, tuple[float, dict[str, tuple[str, str]]]] = {}

    def cached(self, index_path: str, filename: str) -> tuple[str, str] | None:
        """What a fresh cached index says of `filename`, without asking the upstream."""
        cached = self._files.get(index_path)
        if cached is not None and time.monotonic() - cached[0] < self._ttl:
            return cached[1].get(filename)
        return None

    def resolve(self, index_path: str, filename: str, headers: dict[str, str]
                ) -> tuple[str, str] | None:
        """(name, version) of `filename` in the repository whose index is `index_path`."""
        known = self.cached(index_path, filename)
        if known is not None:
            return known
        files = self._load(index_path, headers)
        if files is not None and filename in files:
            return files[filename]
        return split_filename(filename)

    def forget(self, index_path: str) -> None:
        self._files.pop(index_path, None)

    def _load(self, index_path: str, headers: dict[str, str]
              ) -> dict[str, tuple[str, str]] | None:
        body = self.get(index_path, headers)
        if body is None:
            return None
        files = index_files(body)
        if len(self._files) >= self._capacity:
            self._files.clear()
        self._files[index_path] = (time.monotonic(), files)
        return files

    def get(self, path: str, headers: dict[str, str]) -> bytes | None:
        """GET `path` from the chart upstream with the client's credentials (bounded)."""
        try:
            response = self._upstream.request("GET", self._prefix + path,
                                              lookup_headers(headers))
        except urllib3.exceptions.HTTPError as exc:
            log.warning("reading %s from the chart upstream failed: %s", path, exc)
            return None
        complete = False
        try:
            if response.status != 200:
                return None
            parts, total = [], 0
            for chunk in response.stream(64 * 1024):
                total += len(chunk)
                if total > MAX_INDEX_BYTES:
                    log.warning("%s is over %d bytes: chart names are split, not looked up",
                                path, MAX_INDEX_BYTES)
                    return None
                parts.append(chunk)
            complete = True
            return b"".join(parts)
        except urllib3.exceptions.HTTPError as exc:
            log.warning("reading %s from the chart upstream failed: %s", path, exc)
            return None
        finally:
            if not complete:
                response.close()  # unread body: never reuse this connection
            response.release_conn()
