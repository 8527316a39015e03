"""What a blob upload request says: its route, its upload URL's state, how many bytes its session
holds. Pure.

The quota gate needs a blob's size before the registry completes the upload. A final
`PUT ...?digest=` carries only the last piece (often nothing): the rest went in PATCHes whose
202 answers say, in `Range: 0-<last byte>`, how much the session holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import parse_qs
from urllib.parse import urlsplit

from sidecar.events.infer import NAME_PATTERN

_UPLOAD_ROUTE = re.compile(rf"^/v2/(?P<name>{NAME_PATTERN})/blobs/uploads/(?P<session>[^/]*)\Z")
_RANGE = re.compile(r"\s*(?:bytes\s*=?\s*)?0\s*-\s*(?P<last>[0-9]{1,19})\s*\Z")


def upload_route(path: str) -> tuple[str, str] | None:
    """Split `/v2/<name>/blobs/uploads/[<session>]` into (name, session); session "" for the
    POST that starts (or mounts, or monolithically uploads) a blob. None for other paths."""
    match = _UPLOAD_ROUTE.match(path)
    if match is None:
        return None
    return match.group("name"), match.group("session")


def project_of(repository: str) -> str:
    """The Harbor project of a repository path, "" for a single-segment one (no project)."""
    project, sep, name = repository.partition("/")
    return project if sep and name else ""


def session_bytes(range_header: str | None, *, sent_body: bool = False) -> int | None:
    """The bytes an upload session holds, from a registry's `Range: 0-<last>` answer.

    Distribution writes `0-0` both for an empty session and for one holding one byte; after a
    request that sent a body (`sent_body`) it means one byte, otherwise none. None when the
    header is absent or not a range from 0.
    """
    if not range_header:
        return None
    match = _RANGE.match(range_header)
    if match is None:
        return None
    last = int(match.group("last"))
    if last == 0:
        return 1 if sent_body else 0
    return last + 1


def is_size(value: str | None) -> bool:
    """A Content-Length as a request sends it: digits only (no sign, no spaces inside)."""
    return bool(value) and value.isascii() and value.isdigit() and len(value) <= 19


def upload_state(params: Mapping[str, list[str]]) -> str:
    """An upload URL's state: its query parameters (distribution's signed `_state`) but the
    final PUT's `digest`, in one order, so the URL a registry handed out and the one the client
    came back to compare equal."""
    return "&".join(f"{key}={value}" for key in sorted(params) if key != "digest"
                    for value in params[key])


def state_of(answer: Mapping[str, str]) -> str:
    """The state of the upload URL a registry's answer hands the client (`Location`)."""
    query = urlsplit(answer.get("Location") or "").query
    return upload_state(parse_qs(query)) if query else ""


def session_of(answer: Mapping[str, str], repository: str) -> str:
    """The upload session a 202 started: Docker-Upload-UUID, else the Location's last part."""
    found = answer.get("Docker-Upload-UUID")
    if found:
        return found
    location = answer.get("Location") or ""
    route = upload_route(urlsplit(location).path) if location else None
    return route[1] if route is not None and route[0] == repository else ""
