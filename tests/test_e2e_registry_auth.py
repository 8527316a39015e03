"""Through `sidecar serve` in front of registries that want credentials: Distribution with
`auth: token` (a real token service signing the JWTs it verifies) and with htpasswd (Basic).

Users push, pull and delete with skopeo, each with their own token; the sidecar reads what it
needs before a delete with its own `sidecar.registry_credential`, and never logs a secret.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import webhook_rules
from tests.support import clients
from tests.support.auth import basic
from tests.support.auth import htpasswd_file
from tests.support.registry import Registry
from tests.support.tokens import Account
from tests.support.tokens import token_registry

pytestmark = pytest.mark.e2e

PASSWORDS = {user: f"{user}-{secrets.token_hex(8)}"
             for user in ("pusher", "puller", "deleter", "sidecar-bot")}


def _accounts() -> dict[str, Account]:
    return {
        "pusher": Account(PASSWORDS["pusher"], {"repository:acc/*": ["pull", "push"]}),
        "puller": Account(PASSWORDS["puller"], {"repository:acc/*": ["pull"]}),
        # skopeo resolves the tag (pull) and then deletes with a token scoped to delete only
        "deleter": Account(PASSWORDS["deleter"], {"repository:acc/*": ["pull", "delete"]}),
        "sidecar-bot": Account(PASSWORDS["sidecar-bot"], {"repository:*": ["pull"]}),
    }


def _creds(user: str) -> str:
    return f"{user}:{PASSWORDS[user]}"


CREDENTIAL = {"sidecar": {"registry_credential": {
    "username": "sidecar-bot", "password": "${SIDECAR_REGISTRY_PASSWORD}"}},
    "log": {"level": "debug"}}
CREDENTIAL_ENV = {"SIDECAR_REGISTRY_PASSWORD": PASSWORDS["sidecar-bot"]}


@pytest.fixture(scope="module")
def token_reg(tmp_path_factory):
    made = token_registry(tmp_path_factory.mktemp("token-registry"), _accounts())
    yield made
    made.stop()


def _repo() -> str:
    return f"acc/app-{uuid.uuid4().hex[:8]}"


def _layout_size(layout: Path, digest: str) -> int:
    body = (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
    manifest = json.loads(body)
    return len(body) + manifest["config"]["size"] + sum(x["size"] for x in manifest["layers"])


def _resource(event: dict) -> dict:
    return event["event_data"]["resources"][0]


def _received(receiver, count: int) -> list[dict]:
    """The first `count` payloads, ordered by type (deliveries run concurrently)."""
    order = ["PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT"]
    payloads = [r.json() for r in receiver.wait_for(count)][:count]
    return sorted(payloads, key=lambda e: (order.index(e["type"]), _resource(e)["tag"]))


def _assert_no_secret(log: str, *known: list[str]) -> None:
    leaked = [s for group in known for s in group if s and s in log]
    assert not leaked, f"{len(leaked)} secrets in the sidecar log"


def _sidecar(sidecar_factory, upstream: str, receiver, credential: bool = True):
    return sidecar_factory(
        rules=webhook_rules(receiver.url, project="acc", auth_header=None),
        upstream=upstream, config=CREDENTIAL if credential else {"log": {"level": "debug"}},
        env=CREDENTIAL_ENV if credential else None)


def test_push_and_pull_as_different_users_name_their_operators(
        token_reg, sidecar_factory, receiver, image, tmp_path):
    sidecar = _sidecar(sidecar_factory, token_reg.url, receiver)
    layout, digest = image("v1")
    repo = _repo()
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1", creds=_creds("pusher"))
    clients.pull(f"{sidecar.netloc}/{repo}:v1", tmp_path / "out", creds=_creds("puller"))

    push, pull = _received(receiver, 2)
    assert (push["type"], push["operator"]) == ("PUSH_ARTIFACT", "pusher")
    assert (pull["type"], pull["operator"]) == ("PULL_ARTIFACT", "puller")
    assert _resource(push) == _resource(pull) == {
        "digest": digest, "tag": "v1", "resource_url": f"{sidecar.netloc}/{repo}:v1"}
    # the clients' tokens came from the token service, not through the sidecar
    assert token_reg.tokens.issued_to("pusher") and token_reg.tokens.issued_to("puller")
    _assert_no_secret(sidecar.log(), token_reg.tokens.secrets())


def test_delete_with_a_delete_only_token_reports_tags_and_size(
        token_reg, sidecar_factory, receiver, image):
    sidecar = _sidecar(sidecar_factory, token_reg.url, receiver)
    layout, digest = image("v1")
    repo = _repo()
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1", creds=_creds("pusher"))
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v2", creds=_creds("pusher"))
    clients.delete(f"{sidecar.netloc}/{repo}:v2", creds=_creds("deleter"))

    events = _received(receiver, 4)
    assert [e["type"] for e in events] == [
        "PUSH_ARTIFACT", "PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT"]
    delete = events[3]
    assert delete["operator"] == "deleter"
    assert _resource(delete) == {"digest": digest, "tag": "v1",
                                 "resource_url": f"{sidecar.netloc}/{repo}:v1"}
    assert delete["event_data"]["custom_attributes"]["size"] == str(
        _layout_size(layout, digest))
    # skopeo read with one token and deleted with another that may delete and not read: the
    # sidecar read as itself
    granted = [[a["actions"] for a in i.access if a["name"] == repo]
               for i in token_reg.tokens.issued_to("deleter")]
    assert [["pull"]] in granted and [["delete"]] in granted
    assert [["delete", "pull"]] not in granted
    own = token_reg.tokens.issued_to("sidecar-bot")
    assert any(a["name"] == repo and a["actions"] == ["pull"] for i in own for a in i.access)
    _assert_no_secret(sidecar.log(), token_reg.tokens.secrets())


def test_without_the_credential_a_delete_only_token_loses_tags_and_size(
        token_reg, sidecar_factory, receiver, image):
    """Today's fallback, and why the credential exists: the client's token cannot read."""
    sidecar = _sidecar(sidecar_factory, token_reg.url, receiver, credential=False)
    layout, digest = image("v1")
    repo = _repo()
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1", creds=_creds("pusher"))
    clients.delete(f"{sidecar.netloc}/{repo}:v1", creds=_creds("deleter"))

    delete = _received(receiver, 3)[2]
    assert delete["type"] == "DELETE_ARTIFACT"
    assert _resource(delete)["tag"] == digest
    assert "custom_attributes" not in delete["event_data"]
    status = sidecar.status()["registry_credential"]
    assert status["configured"] is False
    assert "pre-delete lookups" in [d["feature"] for d in status["degraded"]]


def test_delete_lists_tags_it_never_saw_with_its_own_token(
        token_reg, sidecar_factory, receiver, image):
    sidecar = _sidecar(sidecar_factory, token_reg.url, receiver)
    layout, digest = image("gone")
    repo = _repo()
    clients.push(layout, "gone", f"{token_reg.netloc}/{repo}:gone", creds=_creds("pusher"))
    other, _ = image("keep")
    clients.push(other, "keep", f"{token_reg.netloc}/{repo}:keep", creds=_creds("pusher"))

    clients.delete(f"{sidecar.netloc}/{repo}@{digest}", creds=_creds("deleter"))

    [delete] = [e for e in _received(receiver, 2) if e["type"] == "DELETE_ARTIFACT"]  # + pull
    assert _resource(delete)["tag"] == "gone"
    assert delete["event_data"]["custom_attributes"]["size"] == str(
        _layout_size(layout, digest))


def test_a_refused_push_fires_nothing(token_reg, sidecar_factory, receiver, image):
    sidecar = _sidecar(sidecar_factory, token_reg.url, receiver)
    layout, _ = image("v1")
    repo = _repo()
    refused = clients.skopeo("copy", "--dest-tls-verify=false", "--dest-creds",
                             _creds("puller"), f"oci:{layout}:v1",
                             f"docker://{sidecar.netloc}/{repo}:v1", check=False)
    assert refused.returncode != 0
    assert "denied" in refused.stderr or "unauthorized" in refused.stderr

    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:marker", creds=_creds("pusher"))
    [first] = _received(receiver, 1)
    assert (first["type"], _resource(first)["tag"], first["operator"]) == (
        "PUSH_ARTIFACT", "marker", "pusher")


def test_expired_cached_tokens_are_renewed(
        token_registry_factory, sidecar_factory, receiver, image):
    reg = token_registry_factory(_accounts(), lifetime=2)
    sidecar = _sidecar(sidecar_factory, reg.url, receiver)
    repo = _repo()
    first, first_digest = image("one")
    second, second_digest = image("two")
    clients.push(first, "one", f"{sidecar.netloc}/{repo}:one", creds=_creds("pusher"))
    clients.push(second, "two", f"{sidecar.netloc}/{repo}:two", creds=_creds("pusher"))

    clients.delete(f"{sidecar.netloc}/{repo}:one", creds=_creds("deleter"))
    time.sleep(2.5)  # the sidecar's cached token for repository:<repo>:pull has expired
    clients.delete(f"{sidecar.netloc}/{repo}:two", creds=_creds("deleter"))

    deletes = [e for e in _received(receiver, 6) if e["type"] == "DELETE_ARTIFACT"]
    assert [(_resource(d)["tag"], d["event_data"]["custom_attributes"]["size"])
            for d in deletes] == [("one", str(_layout_size(first, first_digest))),
                                  ("two", str(_layout_size(second, second_digest)))]
    reads = [i for i in reg.tokens.issued_to("sidecar-bot")
             if any(a["name"] == repo for a in i.access)]
    assert len(reads) >= 2
    assert reads[-1].at >= reads[0].at + reads[0].lifetime  # a fresh one after expiry
    assert reads[-1].grant_type == "refresh_token"  # renewed as the OAuth2 form allows
    _assert_no_secret(sidecar.log(), reg.tokens.secrets())


@pytest.fixture(scope="module")
def basic_reg(tmp_path_factory):
    """A registry that wants Basic credentials (htpasswd): alice and the sidecar's bot."""
    workdir = tmp_path_factory.mktemp("basic-registry")
    htpasswd = htpasswd_file(workdir / "htpasswd", {
        "alice": PASSWORDS["pusher"], "sidecar-bot": PASSWORDS["sidecar-bot"]})
    reg = Registry(workdir, htpasswd=htpasswd).start()
    yield reg
    reg.stop()


def test_basic_auth_registry_with_the_sidecars_credential(
        basic_reg, sidecar_factory, receiver, image):
    sidecar = _sidecar(sidecar_factory, basic_reg.url, receiver)
    layout, digest = image("v1")
    repo = _repo()
    alice = f"alice:{PASSWORDS['pusher']}"
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1", creds=alice)
    clients.push(layout, "v1", f"{basic_reg.netloc}/{repo}:direct", creds=alice)
    clients.delete(f"{sidecar.netloc}/{repo}@{digest}", creds=alice)

    push, pull, delete = _received(receiver, 3)  # skopeo reads the digest before deleting
    assert [e["type"] for e in (push, pull, delete)] == [
        "PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT"]
    assert {e["operator"] for e in (push, pull, delete)} == {"alice"}
    assert _resource(delete)["tag"] == "v1"
    assert delete["event_data"]["custom_attributes"]["size"] == str(
        _layout_size(layout, digest))
    assert sidecar.status()["registry_credential"] == {"configured": True, "degraded": []}
    _assert_no_secret(sidecar.log(), list(PASSWORDS.values()))


def _status_html(sidecar) -> str:
    request = urllib.request.Request(f"{sidecar.url}/sidecar/status?format=html",
                                     headers=sidecar.admin_headers())
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def test_status_says_which_features_run_degraded_without_the_credential(
        token_reg, sidecar_factory, receiver):
    without = _sidecar(sidecar_factory, token_reg.url, receiver, credential=False)
    report = without.status()["registry_credential"]
    assert report["configured"] is False
    assert [d["feature"] for d in report["degraded"]] == [
        "pre-delete lookups", "scanning",
        "quota recalculation", "replication source reads",
        "tag retention"]
    page = _status_html(without)
    assert "No <code>sidecar.registry_credential</code> is set" in page
    assert "pre-delete lookups" in page and "5 features degraded" in page

    with_credential = _sidecar(sidecar_factory, token_reg.url, receiver)
    assert with_credential.status()["registry_credential"] == {"configured": True,
                                                               "degraded": []}
    page = _status_html(with_credential)
    assert "features degraded" not in page and "pre-delete lookups" not in page
    for text in (json.dumps(with_credential.status()), page, with_credential.log()):
        assert PASSWORDS["sidecar-bot"] not in text and "sidecar-bot" not in text


def test_serve_refuses_a_credential_whose_variable_is_unset(token_reg, sidecar_factory):
    sidecar = sidecar_factory(upstream=token_reg.url, config=CREDENTIAL, start=False)
    sidecar.start(wait=False)
    assert sidecar.process.wait(30) == 2
    assert ("sidecar: configuration error: " in sidecar.log()
            and "sidecar.registry_credential.password: environment variable "
                "SIDECAR_REGISTRY_PASSWORD is not set" in sidecar.log())


def test_where_the_sidecars_identity_is_refused_the_clients_own_token_is_used(
        token_registry_factory, sidecar_factory, receiver, image):
    accounts = _accounts()
    accounts["sidecar-bot"] = Account(PASSWORDS["sidecar-bot"], {"repository:other/*": ["pull"]})
    reg = token_registry_factory(accounts)
    sidecar = _sidecar(sidecar_factory, reg.url, receiver)
    layout, digest = image("v1")
    repo = _repo()
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1", creds=_creds("pusher"))
    token = _token(reg, "deleter", f"repository:{repo}:pull,delete")

    request = urllib.request.Request(f"{sidecar.url}/v2/{repo}/manifests/{digest}",
                                     method="DELETE",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 202

    delete = _received(receiver, 2)[1]
    assert (delete["type"], delete["operator"]) == ("DELETE_ARTIFACT", "deleter")
    assert _resource(delete)["tag"] == "v1"
    assert delete["event_data"]["custom_attributes"]["size"] == str(
        _layout_size(layout, digest))
    assert f"pre-delete lookup of {repo}@{digest}: GET" in sidecar.log()  # says it was refused
    _assert_no_secret(sidecar.log(), reg.tokens.secrets())


def _token(reg, user: str, scope: str) -> str:
    """A token straight from the token service, as a client would get it (GET with Basic)."""
    query = urllib.parse.urlencode({"service": reg.tokens.service, "scope": scope})
    request = urllib.request.Request(f"{reg.tokens.realm}?{query}",
                                     headers={"Authorization": basic(user, PASSWORDS[user])})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())["token"]
