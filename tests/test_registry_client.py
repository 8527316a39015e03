"""The sidecar's registry client against real Distribution registries: `auth: token` with a
real token service, htpasswd, and open. What scanning, quota, replication and retention call."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
import urllib.request

import pytest

from sidecar.registry import Credential
from sidecar.registry import DigestMismatch
from sidecar.registry import NotFound
from sidecar.registry import RegistryClient
from sidecar.registry import RegistryUnavailable
from sidecar.registry import TokenError
from sidecar.registry import Unauthorized
from tests.support.auth import htpasswd_file
from tests.support.certs import self_signed
from tests.support.ports import free_port
from tests.support.registry import Registry
from tests.support.tokens import Account

pytestmark = pytest.mark.e2e

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
BOT = Credential("bot", "bot-password-1f3a")
READER = Credential("reader", "reader-password-77c2")


def _accounts() -> dict[str, Account]:
    return {
        "bot": Account(BOT.password, {"repository:*": ["pull", "push", "delete"],
                                      "registry:catalog": ["*"]}),
        "reader": Account(READER.password, {"repository:acc/*": ["pull"]}),
    }


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push_image(client: RegistryClient, repo: str, tag: str, layer: bytes,
                chunk_size: int | None = None) -> tuple[str, bytes]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
    client.upload_blob(repo, _digest(config), config)
    client.upload_blob(repo, _digest(layer), layer, chunk_size=chunk_size)
    # spacing and key order as a client wrote them: the bytes, not their meaning, are stored
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": _digest(layer), "size": len(layer)}]}, indent=3).encode()
    return client.put_manifest(repo, tag, manifest, OCI_MANIFEST), manifest


@pytest.mark.parametrize("key_id", ["x5c", "kid"])
def test_reads_and_writes_with_tokens_as_the_registry_verifies_them(
        token_registry_factory, key_id):
    reg = token_registry_factory(_accounts(), key_id=key_id)
    client = RegistryClient(reg.url, BOT)
    layer = os.urandom(300_000)
    digest, manifest = _push_image(client, "acc/app", "v1", layer, chunk_size=100_000)

    got = client.get_manifest("acc/app", "v1")
    assert (got.data, got.digest, got.media_type) == (manifest, digest, OCI_MANIFEST)
    assert client.get_manifest("acc/app", digest).data == manifest
    assert client.head_manifest("acc/app", "v1").digest == digest
    assert client.head_manifest("acc/app", "nope") is None
    assert client.head_blob("acc/app", _digest(layer)) == len(layer)
    with client.open_blob("acc/app", _digest(layer)) as blob:
        assert blob.size == len(layer)
        assert b"".join(blob) == layer
    assert list(client.tags("acc/app")) == ["v1"]
    assert list(client.catalog()) == ["acc/app"]

    client.delete_manifest("acc/app", digest)
    assert client.head_manifest("acc/app", "v1") is None
    with pytest.raises(NotFound):
        client.get_manifest("acc/app", digest)
    # one token per scope, fetched with the OAuth2 form, then renewed with its refresh token
    issued = reg.tokens.issued_to("bot")
    assert [i.grant_type for i in issued][:2] == ["password", "refresh_token"]
    assert {tuple(i.requested) for i in issued} >= {
        ("repository:acc/app:pull,push",), ("repository:acc/app:pull",),
        ("repository:acc/app:delete",), ("registry:catalog:*",)}


def test_pages_of_repositories_are_followed(token_registry_factory):
    reg = token_registry_factory(_accounts())
    client = RegistryClient(reg.url, BOT)
    layer = os.urandom(1000)
    for tag in ("a", "b", "c", "d", "e"):
        _push_image(client, "acc/paged", tag, layer)
    for repo in ("acc/x", "acc/y"):
        _push_image(client, repo, "v1", layer)
    # Distribution 2.8 answers every tag at once, unsorted (it ignores n); _catalog pages
    assert sorted(client.tags("acc/paged", page_size=2)) == ["a", "b", "c", "d", "e"]
    assert list(client.catalog(page_size=1)) == ["acc/paged", "acc/x", "acc/y"]
    with pytest.raises(NotFound):
        list(client.tags("acc/never"))


def test_copy_between_registries_streams_blobs_and_keeps_manifest_bytes(
        token_registry_factory):
    """Replication's shape: read from one registry, write to another with its own identity."""
    source = token_registry_factory(_accounts(), name="source")
    destination = token_registry_factory(
        {"replicator": Account("repl-pw-9", {"repository:mirror/*": ["pull", "push"]})},
        name="destination")
    src = RegistryClient(source.url, BOT)
    dst = RegistryClient(destination.url, Credential("replicator", "repl-pw-9"))
    big = os.urandom(5 * 1024 * 1024 + 3)
    digest, manifest = _push_image(src, "acc/app", "v1", big)

    layers = json.loads(src.get_manifest("acc/app", "v1").data)
    for descriptor in (layers["config"], *layers["layers"]):
        with src.open_blob("acc/app", descriptor["digest"]) as blob:
            dst.upload_blob("mirror/app", descriptor["digest"], blob, size=blob.size)
    with src.open_blob("acc/app", _digest(big)) as blob:  # chunked, straight from the stream
        dst.upload_blob("mirror/chunked", _digest(big), blob, chunk_size=1024 * 1024)
    assert dst.put_manifest("mirror/app", "v1", manifest, OCI_MANIFEST) == digest
    assert dst.get_manifest("mirror/app", digest).data == manifest
    assert dst.head_blob("mirror/chunked", _digest(big)) == len(big)


def test_cross_repository_mount_and_its_fallback(token_registry_factory):
    reg = token_registry_factory(_accounts())
    bot = RegistryClient(reg.url, BOT)
    layer = os.urandom(50_000)
    _push_image(bot, "acc/app", "v1", layer)
    assert bot.mount_blob("acc/other", _digest(layer), "acc/app") is True
    assert bot.head_blob("acc/other", _digest(layer)) == len(layer)

    # a source it may not read: Distribution declines the mount, the upload goes ahead
    limited = token_registry_factory(
        {"bot": Account(BOT.password, {"repository:mine/*": ["pull", "push"],
                                       "repository:theirs/*": []})}, name="limited")
    mine = RegistryClient(limited.url, BOT)
    owner = RegistryClient(limited.url, BOT)
    assert mine.mount_blob("mine/app", _digest(layer), "theirs/app") is False
    mine.upload_blob("mine/app", _digest(layer), layer, mount_from="theirs/app")
    assert owner.head_blob("mine/app", _digest(layer)) == len(layer)


def test_a_realm_without_the_oauth_form_is_asked_with_get(token_registry_factory):
    reg = token_registry_factory(_accounts(), oauth=False)
    client = RegistryClient(reg.url, BOT)
    _push_image(client, "acc/app", "v1", b"layer")
    assert client.head_manifest("acc/app", "v1") is not None
    issued = reg.tokens.issued_to("bot")
    assert issued and {i.method for i in issued} == {"GET"}


def test_anonymous_tokens_read_what_anonymous_may(token_registry_factory):
    reg = token_registry_factory(_accounts(), anonymous={"repository:public/*": ["pull"]})
    _push_image(RegistryClient(reg.url, BOT), "public/app", "v1", b"layer")
    _push_image(RegistryClient(reg.url, BOT), "acc/app", "v1", b"layer")
    anonymous = RegistryClient(reg.url)
    assert anonymous.head_manifest("public/app", "v1") is not None
    with pytest.raises(Unauthorized):
        anonymous.get_manifest("acc/app", "v1")
    assert {i.method for i in reg.tokens.issued_to("")} == {"GET"}


def test_refusals_say_who_and_what_but_no_secret(token_registry_factory):
    reg = token_registry_factory(_accounts())
    _push_image(RegistryClient(reg.url, BOT), "acc/app", "v1", b"layer")

    wrong = RegistryClient(reg.url, Credential("bot", "not-the-password-5e1"))
    with pytest.raises(TokenError) as refused:
        wrong.get_manifest("acc/app", "v1")
    assert "refused user 'bot' (401)" in str(refused.value)
    assert "not-the-password-5e1" not in str(refused.value)

    reader = RegistryClient(reg.url, READER)
    assert reader.get_manifest("acc/app", "v1").data
    with pytest.raises(Unauthorized) as denied:  # a token without push: 401, retried once
        reader.put_manifest("acc/app", "v2", b"{}", OCI_MANIFEST)
    assert denied.value.status == 401 and denied.value.code == "UNAUTHORIZED"
    secrets = reg.tokens.secrets()
    assert not [s for s in secrets if s in str(denied.value) or s in repr(denied.value)]


def test_cached_tokens_are_renewed_before_they_expire(token_registry_factory):
    reg = token_registry_factory(_accounts(), lifetime=300)
    now = [0.0]
    client = RegistryClient(reg.url, BOT, clock=lambda: now[0])
    _push_image(client, "acc/app", "v1", b"layer")
    client.head_manifest("acc/app", "v1")

    def reads() -> list:
        return [i for i in reg.tokens.issued_to("bot")
                if i.requested == ["repository:acc/app:pull"]]

    before = len(reads())
    now[0] += 269  # 300 s token: still used
    client.head_manifest("acc/app", "v1")
    assert len(reads()) == before
    now[0] += 2    # within 30 s of expiry: renewed before use
    client.head_manifest("acc/app", "v1")
    assert len(reads()) == before + 1
    assert reads()[-1].grant_type == "refresh_token"


def test_authorization_for_a_scanner_is_a_working_token(token_registry_factory, registry):
    reg = token_registry_factory(_accounts())
    digest, _ = _push_image(RegistryClient(reg.url, BOT), "acc/app", "v1", b"layer")
    header = RegistryClient(reg.url, READER).authorization_for("acc/app")
    assert header.startswith("Bearer ")
    request = urllib.request.Request(f"{reg.url}/v2/acc/app/manifests/{digest}",
                                     headers={"Authorization": header, "Accept": OCI_MANIFEST})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    assert RegistryClient(registry.url).authorization_for("acc/app") is None  # open registry


def test_basic_auth_registry(tmp_path):
    htpasswd = htpasswd_file(tmp_path / "htpasswd", {"bot": BOT.password})
    reg = Registry(tmp_path / "basic", htpasswd=htpasswd).start()
    try:
        client = RegistryClient(reg.url, BOT)
        digest, manifest = _push_image(client, "acc/app", "v1", b"layer")
        assert client.get_manifest("acc/app", "v1").data == manifest
        assert list(client.catalog()) == ["acc/app"]
        assert client.authorization_for("acc/app") == BOT.basic()
        with pytest.raises(Unauthorized):
            RegistryClient(reg.url, Credential("bot", "wrong")).get_manifest("acc/app", "v1")
        with pytest.raises(Unauthorized):
            RegistryClient(reg.url).get_manifest("acc/app", "v1")
    finally:
        reg.stop()


class Scripted:
    """A registry stand-in answering GET paths (with their query) from a table."""

    def __init__(self, routes: dict[str, tuple[int, dict[str, str], bytes]]):
        self.routes = routes
        self.seen: list[str] = []
        scripted = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                scripted.seen.append(self.path)
                status, headers, body = scripted.routes.get(self.path, (404, {}, b""))
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted():
    made: list[Scripted] = []

    def make(routes) -> Scripted:
        made.append(Scripted(routes))
        return made[-1]

    yield make
    for server in made:
        server.close()


def test_tag_pages_follow_relative_and_absolute_links(scripted):
    server = scripted({})
    page = "/v2/acc/app/tags/list"
    server.routes.update({
        f"{page}?n=2": (200, {"Link": f'<{page}?last=b&n=2>; rel="next"'},
                        b'{"name":"acc/app","tags":["a","b"]}'),
        f"{page}?last=b&n=2": (200, {"Link": f'<{server.url}{page}?last=d&n=2>; rel="next"'},
                               b'{"name":"acc/app","tags":["c","d"]}'),
        f"{page}?last=d&n=2": (200, {}, b'{"name":"acc/app","tags":["e"]}'),
    })
    assert list(RegistryClient(server.url).tags("acc/app", page_size=2)) == [
        "a", "b", "c", "d", "e"]


def test_a_link_back_to_a_page_already_read_ends_the_listing(scripted):
    server = scripted({})
    page = "/v2/_catalog"
    server.routes[f"{page}?n=1"] = (200, {"Link": f'<{page}?n=1>; rel="next"'},
                                    b'{"repositories":["acc/app"]}')
    assert list(RegistryClient(server.url).catalog(page_size=1)) == ["acc/app"]


def test_a_blob_that_does_not_match_its_digest_is_refused(scripted):
    body = b"not what the digest names"
    claimed = _digest(b"something else")
    server = scripted({f"/v2/acc/app/blobs/{claimed}": (200, {}, body),
                       f"/v2/acc/app/manifests/{claimed}": (200, {}, body)})
    client = RegistryClient(server.url)
    with pytest.raises(DigestMismatch), client.open_blob("acc/app", claimed) as blob:
        b"".join(blob)
    with pytest.raises(DigestMismatch):
        client.get_manifest("acc/app", claimed)


def test_a_url_with_user_info_is_refused():
    with pytest.raises(ValueError, match="user info"):
        RegistryClient("http://bot:secret@127.0.0.1:5000")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (what an internal registry often has)."""
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_is_verified_against_a_ca_bundle_or_skipped_when_insecure(
        token_registry_factory, certificate):
    reg = token_registry_factory(_accounts(), tls=certificate)
    assert reg.url.startswith("https://")
    with pytest.raises(RegistryUnavailable, match="TLS: certificate verify failed"):
        RegistryClient(reg.url, BOT).ping()
    trusting = RegistryClient(reg.url, BOT, verify=certificate[0])
    _push_image(trusting, "acc/app", "v1", b"layer")
    insecure = RegistryClient(reg.url, BOT, verify=False)
    assert list(insecure.tags("acc/app")) == ["v1"]
