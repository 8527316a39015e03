"""Shared fixtures: the real registry, webhook receivers, OCI images and sidecar processes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support import postgres
from tests.support.images import make_image
from tests.support.receiver import Receiver
from tests.support.registry import Registry
from tests.support.sidecar import Sidecar
from tests.support.tokens import TokenRegistry
from tests.support.tokens import token_registry

REQUIRED_TOOLS = ("docker-registry", "skopeo")


def _missing_tools() -> list[str]:
    return [tool for tool in REQUIRED_TOOLS if not shutil.which(tool)]


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Registry:
    missing = _missing_tools()
    if missing:
        pytest.fail(f"end-to-end tests need {missing}: run the README's test command, which "
                    "installs them")
    reg = Registry(tmp_path_factory.mktemp("registry")).start()
    yield reg
    reg.stop()


@pytest.fixture
def token_registry_factory(tmp_path):
    """Factory: a registry with `auth: token` and its token service, from a user -> Account
    table (tests/support/tokens.py); options as TokenService's (lifetime, key_id, oauth...)."""
    started: list[TokenRegistry] = []

    def make(accounts, name: str = "token-registry", **options) -> TokenRegistry:
        made = token_registry(tmp_path / f"{name}{len(started)}", accounts, **options)
        started.append(made)
        return made

    yield make
    for made in started:
        made.stop()


@pytest.fixture
def receiver_factory():
    started: list[Receiver] = []

    def make(*args, **kwargs) -> Receiver:
        receiver = Receiver(*args, **kwargs).start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.stop()


@pytest.fixture
def receiver(receiver_factory) -> Receiver:
    return receiver_factory()


@pytest.fixture
def sidecar_factory(tmp_path, registry):
    started: list[Sidecar] = []

    def make(rules=None, upstream: str | None = None, start: bool = True, name: str = "sc",
             **kwargs) -> Sidecar:
        sidecar = Sidecar(tmp_path / f"{name}{len(started)}", upstream or registry.url,
                          rules=rules, **kwargs)
        started.append(sidecar)
        if start:
            sidecar.start()
        return sidecar

    yield make
    for sidecar in started:
        sidecar.stop()
        if os.environ.get("SIDECAR_TEST_SHOW_LOGS"):
            print(sidecar.log())


@pytest.fixture
def image(tmp_path):
    """Factory: a fresh OCI layout with random layers; returns (path, manifest digest)."""
    counter = [0]

    def make(tag: str = "v1", layers: int = 2, layer_size: int = 64 * 1024,
             path: Path | None = None):
        counter[0] += 1
        where = path or tmp_path / f"image{counter[0]}"
        digest = make_image(where, tag=tag, layers=layers, layer_size=layer_size)
        return where, digest

    return make


def webhook_rules(address: str, project: str = "proj", public: bool = False,
                  event_types=("PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT"),
                  auth_header: str | None = "Bearer ${CI_TOKEN}", name: str = "ci",
                  **target_extra) -> dict:
    """A rules document with one project and one http policy pointing at `address`."""
    target = {"type": "http", "address": address, "skip_cert_verify": False,
              "payload_format": "Default", **target_extra}
    if auth_header is not None:
        target["auth_header"] = auth_header
    return {"projects": [{"name": project, "public": public, "webhooks": [{
        "name": name, "enabled": True, "event_types": list(event_types), "targets": [target],
    }]}]}


def _throwaway_postgres():
    reason = postgres.unreachable_reason()
    if reason:
        pytest.skip(reason)
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL database shared by one test module (skips, saying why, if absent)."""
    yield from _throwaway_postgres()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_store_url(request, tmp_path):
    """The URL of an empty store, once on SQLite and once on PostgreSQL (the module's shared
    database, its schema reset): for store code whose SQL differs between the two."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url = request.getfixturevalue("postgres_url")
    postgres.reset_schema(url)
    return url


@pytest.fixture
def postgres_database():
    """A throwaway PostgreSQL database for one test. Request it before sidecar_factory: the
    database must outlive the sidecars using it."""
    yield from _throwaway_postgres()
