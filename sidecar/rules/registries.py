"""The rules file's `registries:` section: Harbor's registry endpoints, replication targets.

Checked as Harbor's registry API checks one (name, URL normalised by lib.ValidateHTTPURL,
credential), with Harbor's messages where it has some. Two adapter types behave as Harbor's do:
`docker-registry` (any registry speaking the OCI distribution API, Basic or Bearer token auth)
and `harbor` (the same, plus missing destination projects created through Harbor's API).
Harbor's other types are named in the refusal, so a file copied from Harbor says what is
missing instead of failing later.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

from sidecar.rules.policy import Problem

DOCKER_REGISTRY = "docker-registry"
HARBOR = "harbor"
REGISTRY_TYPES = (DOCKER_REGISTRY, HARBOR)
#: Harbor's default adapter whitelist: known, but not implemented here
HARBOR_ONLY_TYPES = ("ali-acr", "aws-ecr", "azure-acr", "docker-hub", "github-ghcr",
                     "google-gcr", "huawei-SWR", "jfrog-artifactory", "tencent-tcr",
                     "volcengine-cr", "dtr", "gitlab", "quay")
CREDENTIAL_TYPES = ("basic", "oauth")
REGISTRY_KEYS = ("name", "type", "url", "credential", "insecure", "description",
                 "ca_certificate")
CREDENTIAL_KEYS = ("type", "access_key", "access_secret")
MAX_NAME = 64


@dataclass(frozen=True)
class RegistryCredential:
    """Harbor's `credential` object. The secret stays out of repr() (logs, tracebacks)."""

    type: str = "basic"
    access_key: str = ""
    access_secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class Registry:
    """One registry endpoint (Harbor's Registry object, from the file)."""

    name: str
    url: str
    type: str = DOCKER_REGISTRY
    credential: RegistryCredential | None = None
    insecure: bool = False
    description: str = ""
    ca_certificate: str = ""  # PEM; "" = the system's trust store
    line: int = 0

    @property
    def verify(self) -> bool:
        return not self.insecure


def normalise_url(raw: Any) -> tuple[str, str | None]:
    """Harbor's lib.ValidateHTTPURL: (url, None) or ("", its complaint)."""
    if not isinstance(raw, str):
        return "", "empty string"
    text = raw.strip(" ").rstrip("/")
    if not text:
        return "", "empty string"
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        return "", f"invalid URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "", f"invalid HTTP scheme: {parts.scheme}"
    if not parts.hostname:
        return "", f"invalid URL: {text}: missing host"
    if parts.username is not None or parts.password is not None:
        return "", "credentials in the URL: use credential.access_key and access_secret"
    return f"{parts.scheme}://{parts.netloc}{parts.path}", None


def parse_registries(raw: Any) -> tuple[tuple[Registry, ...], list[Problem]]:
    """Validate the `registries:` list (strings already `${VAR}`-expanded).

    Problem paths are relative to the section: `(index, key, ...)`.
    """
    problems: list[Problem] = []
    if raw is None:
        return (), problems
    if not isinstance(raw, list):
        return (), [Problem((), "'registries' must be a list of registry endpoints")]
    registries: list[Registry] = []
    names: set[str] = set()
    for index, item in enumerate(raw):
        registry = _parse_registry(item, index, problems)
        if registry is None:
            continue
        if registry.name in names:
            problems.append(Problem((index, "name"),
                                    f"registry {registry.name} already exists"))
            continue
        names.add(registry.name)
        registries.append(registry)
    return tuple(registries), problems


def _parse_registry(raw: Any, index: int, problems: list[Problem]) -> Registry | None:
    def add(path: tuple[str, ...], message: str) -> None:
        problems.append(Problem((index, *path), message))

    if not isinstance(raw, Mapping):
        add((), "a registry must be a mapping with 'name', 'type' and 'url'")
        return None
    before = len(problems)
    for key in raw:
        if key not in REGISTRY_KEYS:
            add((str(key),), f"unknown key '{key}' in registry (expected one of "
                f"{', '.join(REGISTRY_KEYS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        add(("name",), "name cannot be empty")
        name = ""
    elif len(name.strip()) > MAX_NAME:
        add(("name",), f"the max length of name is {MAX_NAME}")
    kind = raw.get("type", DOCKER_REGISTRY)
    if kind in HARBOR_ONLY_TYPES:
        add(("type",), f"registry type {kind} is Harbor's but not supported here (supported: "
            f"{', '.join(REGISTRY_TYPES)}; most registries speak the OCI distribution API: "
            f"use {DOCKER_REGISTRY})")
    elif kind not in REGISTRY_TYPES:
        add(("type",), f"adapter factory for {kind} not found (supported: "
            f"{', '.join(REGISTRY_TYPES)})")
    url, complaint = normalise_url(raw.get("url"))
    if complaint is not None:
        add(("url",), complaint)
    credential = _parse_credential(raw.get("credential"), add)
    flags: dict[str, Any] = {}
    insecure = raw.get("insecure", False)
    if not isinstance(insecure, bool):
        add(("insecure",), "insecure must be true or false")
    flags["insecure"] = insecure is True
    description = raw.get("description") or ""
    if not isinstance(description, str):
        add(("description",), "description must be a string")
        description = ""
    ca = raw.get("ca_certificate") or ""
    if not isinstance(ca, str):
        add(("ca_certificate",), "ca_certificate must be PEM text")
        ca = ""
    elif ca:
        complaint = _pem_problem(ca)
        if complaint:
            add(("ca_certificate",), complaint)
    if len(problems) > before:
        return None
    return Registry(name=name.strip(), url=url, type=kind, credential=credential,
                    description=description, ca_certificate=ca.strip(), **flags)


def _parse_credential(raw: Any, add) -> RegistryCredential | None:
    """Harbor stores a credential only when access_key is set; type defaults to basic."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        add(("credential",), "credential must be a mapping with type, access_key and "
            "access_secret")
        return None
    for key in raw:
        if key not in CREDENTIAL_KEYS:
            add(("credential", str(key)), f"unknown key '{key}' in credential (expected one "
                f"of {', '.join(CREDENTIAL_KEYS)})")
    kind = raw.get("type") or "basic"
    if kind not in CREDENTIAL_TYPES:
        add(("credential", "type"), f"credential type {kind} is not supported (use "
            f"{' or '.join(CREDENTIAL_TYPES)})")
    values: dict[str, str] = {}
    for key in ("access_key", "access_secret"):
        value = raw.get(key)
        value = "" if value is None else value
        if not isinstance(value, str):
            # never quote the value: it may be the secret
            add(("credential", key), f"credential.{key} must be a string (quote it in YAML)")
            return None
        values[key] = value
    if not values["access_key"]:
        if values["access_secret"]:
            add(("credential", "access_key"), "credential.access_key is empty: a secret "
                "without a user cannot authenticate")
        return None
    if ":" in values["access_key"]:
        add(("credential", "access_key"), "credential.access_key must not contain ':' "
            "(Basic auth cannot carry it)")
    if not values["access_secret"]:
        add(("credential", "access_secret"), "credential.access_secret is empty")
    return RegistryCredential(type=kind, **values)


def _pem_problem(pem: str) -> str | None:
    try:
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError) as exc:
        return f"invalid ca_certificate: not a PEM certificate ({exc.__class__.__name__})"
    return None
