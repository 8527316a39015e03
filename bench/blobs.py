"""Big random blobs: made once into a cache directory, uploaded with curl (streamed)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.request
from pathlib import Path
from urllib.parse import urljoin

_MIB = 1 << 20


def make_blob(cache: Path, size_mib: int) -> tuple[Path, str]:
    """A file of `size_mib` random MiB and its sha256 digest; reused when already cached."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"blob-{size_mib}m.bin"
    meta = cache / f"blob-{size_mib}m.json"
    if path.exists() and meta.exists():
        known = json.loads(meta.read_text())
        if known.get("size") == path.stat().st_size:
            return path, known["digest"]
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        for _ in range(size_mib):
            data = os.urandom(_MIB)
            digest.update(data)
            handle.write(data)
    result = f"sha256:{digest.hexdigest()}"
    meta.write_text(json.dumps({"size": size_mib * _MIB, "digest": result}))
    return path, result


def _start_upload(base: str, repository: str) -> str:
    request = urllib.request.Request(f"{base}/v2/{repository}/blobs/uploads/", method="POST",
                                     data=b"")
    with urllib.request.urlopen(request, timeout=30) as response:
        if response.status != 202:
            raise RuntimeError(f"starting upload answered {response.status}")
        return urljoin(base, response.headers["Location"])


def _with_digest(location: str, digest: str) -> str:
    return location + ("&" if "?" in location else "?") + f"digest={digest}"


def _curl(*args: str) -> tuple[int, dict[str, str], float]:
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-D", "-", "-w", "\n%{http_code} %{time_total}",
         *args], capture_output=True, text=True, check=True,
    ).stdout
    head, _, tail = out.rpartition("\n")
    code, seconds = tail.split()
    headers = {}
    for line in head.splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    return int(code), headers, float(seconds)


def upload_blob(base: str, repository: str, path: Path, digest: str,
                chunked: bool = False) -> float:
    """Upload `path` through `base`; monolithic PUT, or one chunked PATCH then PUT.

    Returns the seconds curl spent sending the data.
    """
    location = _start_upload(base, repository)
    if chunked:
        code, headers, seconds = _curl(
            "-X", "PATCH", "-T", str(path), "-H", "Transfer-Encoding: chunked",
            "-H", "Content-Type: application/octet-stream", location)
        if code != 202:
            raise RuntimeError(f"PATCH answered {code}")
        location = urljoin(base, headers["location"])
        code, _, _ = _curl("-X", "PUT", "-H", "Content-Length: 0", _with_digest(location, digest))
    else:
        code, _, seconds = _curl("-X", "PUT", "-T", str(path),
                                 "-H", "Content-Type: application/octet-stream",
                                 _with_digest(location, digest))
    if code != 201:
        raise RuntimeError(f"finishing upload answered {code}")
    return seconds
