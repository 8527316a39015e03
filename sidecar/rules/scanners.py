"""The rules file's `scanners:` section and the projects' `auto_scan` / `scanner` keys.

Harbor's scanner registrations, declared in the file (so read-only through the API, like
rules-file policies). Checked as Harbor's API checks a registration, with Harbor's words where
Harbor has some, plus what a file can get wrong that an API form cannot (two defaults, a
project naming a scanner nobody declared).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

from sidecar.rules.policy import Problem
from sidecar.rules.target import check_url

#: Harbor's auth types: none, Basic, Bearer and the API key header. Harbor's API stores the
#: last as "APIKey"; its UI names it after the header. Both are accepted, "APIKey" is kept.
API_KEY = "APIKey"
API_KEY_HEADER = "X-ScannerAdapter-API-Key"
AUTH_TYPES = ("", "Basic", "Bearer", API_KEY)
_AUTH_ALIASES = {API_KEY_HEADER: API_KEY}
SCANNER_KEYS = ("name", "url", "auth", "access_credential", "skip_cert_verify", "default")
PROJECT_SCAN_KEYS = ("auto_scan", "scanner")


@dataclass(frozen=True)
class Scanner:
    """One scanner adapter registration (Harbor's ScannerRegistration, from the file)."""

    name: str
    url: str
    auth: str = ""
    access_credential: str = field(default="", repr=False)  # never in a log or traceback
    skip_cert_verify: bool = False
    default: bool = False
    line: int = 0

    def adapter_headers(self) -> dict[str, str]:
        """The header that authenticates the sidecar to the adapter (Harbor's authorizers)."""
        if self.auth == "Basic":
            token = base64.b64encode(self.access_credential.encode()).decode()
            return {"Authorization": f"Basic {token}"}
        if self.auth == "Bearer":
            return {"Authorization": f"Bearer {self.access_credential}"}
        if self.auth == API_KEY:
            return {API_KEY_HEADER: self.access_credential}
        return {}


@dataclass(frozen=True)
class ProjectScanning:
    """A project's scanning settings: Harbor's `auto_scan` metadata and its scanner choice."""

    auto_scan: bool = False
    scanner: str = ""  # "" = the default scanner


def default_scanner(scanners: tuple[Scanner, ...]) -> Scanner | None:
    for scanner in scanners:
        if scanner.default:
            return scanner
    return None


def scanner_for(scanners: tuple[Scanner, ...], name: str) -> Scanner | None:
    """The project's scanner: the one it names, else the default (None when there is none)."""
    if not name:
        return default_scanner(scanners)
    for scanner in scanners:
        if scanner.name == name:
            return scanner
    return None


def parse_scanners(raw: Any) -> tuple[tuple[Scanner, ...], list[Problem]]:
    """Validate the `scanners:` list (strings already `${VAR}`-expanded).

    Problem paths are relative to the section: `(index, key)`.
    """
    problems: list[Problem] = []
    if raw is None:
        return (), problems
    if not isinstance(raw, list):
        return (), [Problem((), "'scanners' must be a list of scanner registrations")]
    scanners: list[Scanner] = []
    names: set[str] = set()
    defaults: list[str] = []
    for index, item in enumerate(raw):
        scanner = _parse_scanner(item, index, problems)
        if scanner is None:
            continue
        if scanner.name in names:
            problems.append(Problem((index, "name"),
                                    f"scanner '{scanner.name}' is declared twice"))
            continue
        names.add(scanner.name)
        if scanner.default:
            defaults.append(scanner.name)
            if len(defaults) == 2:
                problems.append(Problem((index, "default"), "two default scanners "
                                        f"('{defaults[0]}' and '{scanner.name}'): mark exactly "
                                        "one with default: true"))
        scanners.append(scanner)
    if scanners and not defaults and not problems:
        problems.append(Problem((), "no default scanner: mark exactly one with default: true"))
    return tuple(scanners), problems


def _parse_scanner(raw: Any, index: int, problems: list[Problem]) -> Scanner | None:
    def add(key: str | None, message: str) -> None:
        problems.append(Problem((index,) if key is None else (index, key), message))

    if not isinstance(raw, Mapping):
        add(None, "a scanner must be a mapping with 'name' and 'url'")
        return None
    before = len(problems)
    for key in raw:
        if key not in SCANNER_KEYS:
            add(str(key), f"unknown key '{key}' in scanner (expected one of "
                f"{', '.join(SCANNER_KEYS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        add("name", "missing registration name")
        name = ""
    url = raw.get("url")
    complaint = check_url(url)
    if complaint is None and urlsplit(url.strip()).username is not None:
        complaint = "credentials in the URL: use auth and access_credential instead"
    if complaint is not None:
        add("url", f"scanner registration validate: {complaint}")
    auth = raw.get("auth", "")
    auth = "" if auth is None else auth
    if not isinstance(auth, str):
        add("auth", f"auth type {auth!r} is not supported")
        auth = ""
    auth = _AUTH_ALIASES.get(auth.strip(), auth.strip())
    if auth not in AUTH_TYPES:
        add("auth", f"auth type {raw.get('auth')} is not supported (use \"\", Basic, Bearer "
            f"or {API_KEY_HEADER})")
        auth = ""
    credential = raw.get("access_credential", "")
    credential = "" if credential is None else credential
    if not isinstance(credential, str):
        add("access_credential", "access_credential must be a string")
        credential = ""
    if auth and not credential:
        add("access_credential" if "access_credential" in raw else "auth",
            f"access_credential is required for auth type {auth}")
    if auth == "Basic" and credential and ":" not in credential:
        # Harbor base64-encodes the credential as it is: it must be user:password
        add("access_credential", "access_credential for Basic must be user:password")
    flags = {}
    for key in ("skip_cert_verify", "default"):
        value = raw.get(key, False)
        if not isinstance(value, bool):
            add(key, f"{key} must be true or false")
            value = False
        flags[key] = value
    if len(problems) > before:
        return None
    return Scanner(name=name.strip(), url=url.strip().rstrip("/"), auth=auth,
                   access_credential=credential, **flags)


def parse_project_scanning(raw_project: Mapping[str, Any],
                           scanners: tuple[Scanner, ...] | None,
                           ) -> tuple[ProjectScanning, list[Problem]]:
    """A project's `auto_scan` and `scanner` keys; paths are relative to the project.

    `scanners` None means the section itself is broken: names are then not checked against
    it (its own problems say what is wrong, without echoes from every project).
    """
    problems: list[Problem] = []
    auto_scan = raw_project.get("auto_scan", False)
    if not isinstance(auto_scan, bool):
        problems.append(Problem(("auto_scan",), "auto_scan must be true or false"))
        auto_scan = False
    name = raw_project.get("scanner", "")
    name = "" if name is None else name
    if not isinstance(name, str):
        problems.append(Problem(("scanner",), "scanner must be the name of a declared scanner"))
        name = ""
    name = name.strip()
    if scanners is None:
        pass
    elif name and scanner_for(scanners, name) is None:
        declared = ", ".join(s.name for s in scanners) or "none"
        problems.append(Problem(("scanner",), f"unknown scanner '{name}' (declared: "
                                f"{declared})"))
    elif auto_scan and not name and default_scanner(scanners) is None:
        problems.append(Problem(("auto_scan",), "auto_scan needs a scanner: declare one under "
                                "'scanners' (no available scanner for the project)"))
    return ProjectScanning(auto_scan=auto_scan, scanner=name), problems
