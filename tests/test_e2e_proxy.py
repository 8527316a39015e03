"""The proxy is transparent: clients see what the registry says, and the sidecar survives faults.

Compared against the registry answering directly, with a real registry, `sidecar serve` and raw
HTTP clients (http.client and sockets, so the bytes on the wire are exactly the test's).
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import os
import re
import socket
import ssl
import struct
import threading
import time
import urllib.request
import uuid

import pytest

from tests.support import recorded
from tests.support.auth import basic
from tests.support.auth import htpasswd_file
from tests.support.ports import free_port
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
#: What skopeo sends: six separate Accept lines.
SKOPEO_ACCEPTS = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
    OCI_MANIFEST,
)


class Answer:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[0] if values else None

    def names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


def call(netloc: str, method: str, target: str, headers=(), body: bytes | None = None,
         timeout: float = 30) -> Answer:
    """One request with exactly these headers (repeats kept), on a fresh connection."""
    host, port = netloc.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.putrequest(method, target, skip_host=any(k.lower() == "host" for k, _ in headers),
                        skip_accept_encoding=True)
        for key, value in headers:
            conn.putheader(key, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return Answer(response.status, response.getheaders(), response.read())
    finally:
        conn.close()


def _repo() -> str:
    return f"proj/px-{uuid.uuid4().hex[:8]}"


def upload_blob(netloc: str, repo: str, data: bytes, headers=()) -> str:
    """POST, then PUT with the whole body (as oras does); return the digest."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    started = call(netloc, "POST", f"/v2/{repo}/blobs/uploads/", headers)
    assert started.status == 202, started.body
    target = started.header("Location").split(netloc, 1)[1]
    answer = call(netloc, "PUT", f"{target}&digest={digest}", headers, data)
    assert answer.status == 201, answer.body
    return digest


def push_manifest(netloc: str, repo: str, tag: str) -> tuple[str, bytes]:
    """A small OCI image pushed with plain HTTP; return (manifest digest, manifest bytes)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": uuid.uuid4().hex}).encode()
    layer = os.urandom(2048)
    config_digest = upload_blob(netloc, repo, config)
    layer_digest = upload_blob(netloc, repo, layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": len(layer)}],
    }).encode()
    answer = call(netloc, "PUT", f"/v2/{repo}/manifests/{tag}",
                  [("Content-Type", OCI_MANIFEST)], manifest)
    assert answer.status == 201, answer.body
    return answer.header("Docker-Content-Digest"), manifest


# -- transparency against the real registry -----------------------------------------------------

def test_upload_locations_point_at_the_sidecar_and_headers_pass_through(
        sidecar_factory, registry):
    sidecar = sidecar_factory()
    repo = _repo()
    data = os.urandom(300_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    for host in (sidecar.netloc, f"localhost:{sidecar.port}"):
        started = call(sidecar.netloc, "POST", f"/v2/{repo}/blobs/uploads/", [("Host", host)])
        direct = call(registry.netloc, "POST", f"/v2/{repo}/blobs/uploads/")
        assert started.status == direct.status == 202
        assert started.names() >= {"location", "docker-upload-uuid", "range"}
        location = started.header("Location")
        assert location.startswith(f"http://{host}/v2/{repo}/blobs/uploads/"), location
        assert registry.netloc not in location
        assert started.header("Docker-Upload-UUID") in location
        assert started.header("Range") == direct.header("Range") == "0-0"

        # follow the Location through the sidecar, as a client does
        target = location.split(host, 1)[1]
        patched = call(sidecar.netloc, "PATCH", target,
                       [("Host", host), ("Content-Type", "application/octet-stream")], data)
        assert patched.status == 202, patched.body
        assert patched.header("Range") == f"0-{len(data) - 1}"
        assert patched.header("Location").startswith(f"http://{host}/")
        target = patched.header("Location").split(host, 1)[1]
        finished = call(sidecar.netloc, "PUT", f"{target}&digest={digest}", [("Host", host)], b"")
        assert finished.status == 201, finished.body
        assert finished.header("Docker-Content-Digest") == digest
        assert finished.header("Location") == f"http://{host}/v2/{repo}/blobs/{digest}"

    fetched = call(sidecar.netloc, "GET", f"/v2/{repo}/blobs/{digest}")
    assert fetched.status == 200 and fetched.body == data

    # HTTP/1.0 without Host: the registry must still point back at the sidecar
    reply = _send_raw(sidecar.netloc, f"POST /v2/{repo}/blobs/uploads/ HTTP/1.0\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.0 202"), reply[:200]
    assert f"Location: http://{sidecar.netloc}/v2/{repo}/blobs/uploads/".encode() in reply, reply


def test_repeated_accept_headers_get_the_oci_manifest(sidecar_factory, registry):
    sidecar = sidecar_factory()
    repo = _repo()
    digest, manifest = push_manifest(registry.netloc, repo, "v1")
    accepts = [("Accept", value) for value in SKOPEO_ACCEPTS]
    direct = call(registry.netloc, "GET", f"/v2/{repo}/manifests/v1", accepts)
    proxied = call(sidecar.netloc, "GET", f"/v2/{repo}/manifests/v1", accepts)
    assert direct.status == proxied.status == 200
    assert proxied.body == direct.body == manifest
    assert proxied.header("Content-Type") == OCI_MANIFEST
    assert proxied.header("Docker-Content-Digest") == digest
    # without an OCI Accept the registry refuses; the sidecar must not add one
    bare = call(sidecar.netloc, "GET", f"/v2/{repo}/manifests/v1",
                [("Accept", SKOPEO_ACCEPTS[0])])
    assert bare.status == call(registry.netloc, "GET", f"/v2/{repo}/manifests/v1",
                               [("Accept", SKOPEO_ACCEPTS[0])]).status == 404


def test_head_range_and_conditional_answers_match_the_registry(sidecar_factory, registry):
    sidecar = sidecar_factory()
    repo = _repo()
    digest, manifest = push_manifest(registry.netloc, repo, "v1")
    layer = json.loads(manifest)["layers"][0]["digest"]
    compared = ("Content-Length", "Content-Type", "Docker-Content-Digest", "Content-Range",
                "Etag", "Accept-Ranges")
    for method, target, headers in (
        ("HEAD", f"/v2/{repo}/blobs/{layer}", []),
        ("HEAD", f"/v2/{repo}/blobs/sha256:{'0' * 64}", []),
        ("HEAD", f"/v2/{repo}/manifests/v1", [("Accept", OCI_MANIFEST)]),
        ("GET", f"/v2/{repo}/blobs/{layer}", [("Range", "bytes=100-199")]),
        ("GET", f"/v2/{repo}/manifests/v1", [("Accept", OCI_MANIFEST),
                                             ("If-None-Match", f'"{digest}"')]),
    ):
        direct = call(registry.netloc, method, target, headers)
        proxied = call(sidecar.netloc, method, target, headers)
        assert (proxied.status, proxied.body) == (direct.status, direct.body), (method, target)
        for name in compared:
            assert proxied.header(name) == direct.header(name), (method, target, name)
    assert call(sidecar.netloc, "GET", f"/v2/{repo}/blobs/{layer}",
                [("Range", "bytes=100-199")]).status == 206
    # HEADs and a 304 are not pulls
    assert recorded.until_barrier(sidecar, repo, "v1") == []


MALFORMED = [
    ("GET", "/v2/{repo}/blobs/sha256:zzz", [], None),                      # bad digest
    ("GET", "/v2/{repo}/manifests/sha256:abc", [], None),                  # short digest: 500
    ("GET", "/v2/nobody/nothing/manifests/v1", [], None),                  # unknown repo
    ("GET", "/v2/Invalid_NAME/manifests/v1", [], None),                    # invalid name
    ("GET", "/v2/{repo}/../../etc/manifests/v1", [], None),                # traversal, raw
    ("PATCH", "/v2/{repo}/blobs/uploads/bogus", [], b"abc"),             # unknown upload
    ("DELETE", "/v2/{repo}/manifests/v1", [], None),                       # delete by tag
    ("DELETE", "/v2/{repo}/manifests/sha256:" + "0" * 64, [], None),
    ("PUT", "/v2/{repo}/manifests/bad", [("Content-Type", OCI_MANIFEST)], b"garbage{"),
    ("PUT", "/v2/{repo}/manifests/bad", [("Content-Type", OCI_MANIFEST)],
     json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                 "config": {"digest": "sha256:" + "1" * 64, "size": 1,
                            "mediaType": "application/vnd.oci.image.config.v1+json"},
                 "layers": []}).encode()),                                  # unknown blob
    ("PUT", "/v2/{repo}/blobs/uploads/nonexistent-uuid?digest=sha256:" + "0" * 64, [], b"x"),
]


def test_malformed_requests_get_the_registrys_answer_and_no_event(sidecar_factory, registry):
    sidecar = sidecar_factory()
    repo = _repo()
    push_manifest(registry.netloc, repo, "v1")
    for method, target, headers, body in MALFORMED:
        target = target.format(repo=repo)
        direct = call(registry.netloc, method, target, headers, body)
        proxied = call(sidecar.netloc, method, target, headers, body)
        assert (proxied.status, proxied.body) == (direct.status, direct.body), (method, target)
        assert direct.status >= 300, (method, target)  # the traversal gets a 301
        for name in ("Content-Type", "Location"):
            assert proxied.header(name) == direct.header(name), (method, target, name)
    assert recorded.until_barrier(sidecar, repo, "v1") == []


def test_unauthorized_passes_through_unchanged(sidecar_factory, tmp_path):
    reg = Registry(tmp_path / "authreg",
                   htpasswd=htpasswd_file(tmp_path / "htpasswd", {"alice": "s3cret"})).start()
    try:
        sidecar = sidecar_factory(upstream=reg.url)
        for target, headers in (
            ("/v2/", []),
            ("/v2/proj/app/manifests/v1", [("Accept", OCI_MANIFEST)]),
            ("/v2/", [("Authorization", basic("alice", "wrong"))]),
        ):
            direct = call(reg.netloc, "GET", target, headers)
            proxied = call(sidecar.netloc, "GET", target, headers)
            assert direct.status == proxied.status == 401
            assert proxied.header("WWW-Authenticate") == direct.header("WWW-Authenticate") \
                == 'Basic realm="test-realm"'
            assert proxied.body == direct.body
        good = call(sidecar.netloc, "GET", "/v2/", [("Authorization", basic("alice", "s3cret"))])
        assert good.status == 200
        health = call(sidecar.netloc, "GET", "/sidecar/healthz")
        assert health.status == 200  # a 401 from /v2/ means the registry is up
    finally:
        reg.stop()


class EchoUpstream:
    """A plain HTTP server standing in for the registry: records requests, answers with
    hop-by-hop headers a proxy must not pass on."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.seen: list[tuple[str, str, list[tuple[str, str]]]] = []
        echo = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                echo.seen.append((self.command, self.path, list(self.headers.items())))
                body = b'{"ok":true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "X-Upstream-Hop")
                self.send_header("X-Upstream-Hop", "secret")
                self.send_header("Keep-Alive", "timeout=5")
                self.send_header("Proxy-Authenticate", "Basic realm=upstream")
                self.send_header("X-Upstream-Kept", "yes")
                self.end_headers()
                self.wfile.write(body)

            do_DELETE = do_GET  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def echo():
    server = EchoUpstream()
    yield server
    server.stop()


@pytest.mark.parametrize("proxy", ["registry", "charts"])
def test_hop_by_hop_headers_dropped_and_query_strings_untouched(sidecar_factory, echo, proxy):
    query = "?n=2&last=a%2Fb&q=%20x+y&empty=&dup=1&dup=2"
    if proxy == "registry":
        sidecar = sidecar_factory(upstream=echo.url)
        target = "/v2/proj/a%2Fb/tags/list" + query
    else:  # the chart proxy's answers lose the same headers (those named in Connection too)
        sidecar = sidecar_factory(config={"sidecar": {"chart_upstream": echo.url}})
        target = "/index.yaml" + query
    answer = call(sidecar.netloc, "GET", target, [
        ("Connection", "keep-alive, X-Client-Hop"),
        ("X-Client-Hop", "drop-me"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Proxy-Authorization", "Basic c2VjcmV0OnNlY3JldA=="),
        ("X-Client-Kept", "yes"),
        ("Accept", "a/b"),
        ("Accept", "c/d"),
    ])
    assert answer.status == 200 and answer.body == b'{"ok":true}'
    names = answer.names()
    assert "x-upstream-kept" in names
    assert not names & {"x-upstream-hop", "keep-alive", "proxy-authenticate"}, answer.headers

    [(method, path, headers)] = [s for s in echo.seen if s[1] != "/v2/"]
    assert (method, path) == ("GET", target)
    sent = {k.lower(): v for k, v in headers}
    assert sent["x-client-kept"] == "yes"
    assert sent["host"] == sidecar.netloc  # the client's Host: the registry's URLs point back
    assert [v.strip() for v in sent["accept"].split(",")] == ["a/b", "c/d"]
    assert not set(sent) & {"x-client-hop", "keep-alive", "te", "proxy-authorization"}
    assert sent.get("connection", "keep-alive").lower() in ("keep-alive", "close")


# -- faults -------------------------------------------------------------------------------------

def _worker_boots(sidecar) -> list[str]:
    return re.findall(r"Booting worker with pid: (\d+)", sidecar.log())


def test_upstream_down_answers_oci_unavailable_and_stays_up(sidecar_factory):
    sidecar = sidecar_factory(upstream=f"http://127.0.0.1:{free_port()}")
    for method, target, body in (("GET", "/v2/proj/app/manifests/v1", None),
                                 ("PUT", "/v2/proj/app/manifests/v1", b"{}"),
                                 ("DELETE", "/v2/proj/app/manifests/sha256:" + "a" * 64, None),
                                 ("GET", "/v2/", None)):
        answer = call(sidecar.netloc, method, target, [("Accept", OCI_MANIFEST)], body)
        assert answer.status in (502, 503), answer.status
        assert answer.header("Content-Type") == "application/json"
        errors = json.loads(answer.body)["errors"]
        assert errors[0]["code"] == "UNAVAILABLE" and errors[0]["message"]
    health = call(sidecar.netloc, "GET", "/sidecar/healthz")
    assert health.status == 503
    assert json.loads(health.body)["status"] == "upstream unavailable"
    assert call(sidecar.netloc, "GET", "/sidecar/status",
                headers=tuple(sidecar.admin_headers().items())).status == 200
    assert recorded.events(sidecar) == []
    assert len(_worker_boots(sidecar)) == 1


def test_healthz_ok_when_upstream_answers(sidecar_factory):
    sidecar = sidecar_factory()
    answer = call(sidecar.netloc, "GET", "/sidecar/healthz")
    assert answer.status == 200
    assert json.loads(answer.body)["status"] == "ok"


def _client_hello() -> bytes:
    """The first bytes a TLS client sends (skopeo and podman probe plain ports with it)."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def _send_raw(netloc: str, data: bytes, timeout: float = 5) -> bytes:
    host, port = netloc.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        try:
            sock.shutdown(socket.SHUT_WR)
            return sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            return b""


def test_tls_probe_and_garbage_do_not_hurt_the_worker(sidecar_factory, registry):
    sidecar = sidecar_factory()
    repo = _repo()
    push_manifest(registry.netloc, repo, "v1")
    hello = _client_hello()
    assert hello[:1] == b"\x16"
    for junk in (hello, b"\x00\xff\xfe garbage \x01\x02\r\n\r\n", os.urandom(4096) + b"\r\n\r\n",
                 b"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
                 b"PATCH /v2/x/blobs/uploads/u HTTP/1.1\r\nHost: x\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"):
        reply = _send_raw(sidecar.netloc, junk)
        assert reply == b"" or reply.startswith(b"HTTP/1.1 400"), reply[:80]
        answer = call(sidecar.netloc, "GET", f"/v2/{repo}/manifests/v1", [("Accept", OCI_MANIFEST)])
        assert answer.status == 200
    assert len(_worker_boots(sidecar)) == 1, sidecar.log()
    assert "Traceback" not in sidecar.log()
    assert [e["type"] for e in recorded.until_barrier(sidecar, repo, "v1")] == [
        "PULL_ARTIFACT"] * 5


@pytest.mark.parametrize("framing", ["Content-Length: 8000000", "Transfer-Encoding: chunked"])
def test_client_leaving_mid_upload_does_not_leave_the_request_hanging(sidecar_factory, framing):
    sidecar = sidecar_factory()
    repo = _repo()
    started = call(sidecar.netloc, "POST", f"/v2/{repo}/blobs/uploads/")
    target = started.header("Location").split(sidecar.netloc, 1)[1]
    host, port = sidecar.netloc.split(":")
    part = os.urandom(1_000_000)
    if framing.startswith("Transfer"):
        part = b"%x\r\n%s\r\n" % (len(part), part)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"PATCH {target} HTTP/1.1\r\nHost: {sidecar.netloc}\r\n"
                     f"Content-Type: application/octet-stream\r\n{framing}\r\n\r\n".encode())
        sock.sendall(part)
    assert call(sidecar.netloc, "GET", "/v2/").status == 200
    # A request stuck waiting on the registry would hold a graceful stop for the whole
    # graceful timeout (30 s); an abandoned one is already over.
    began = time.monotonic()
    sidecar.stop()
    assert time.monotonic() - began < 15, sidecar.log()
    assert len(_worker_boots(sidecar)) == 1


def test_client_leaving_mid_download_does_not_poison_later_requests(sidecar_factory, registry):
    sidecar = sidecar_factory()
    repo = _repo()
    big = os.urandom(24 * 1024 * 1024)
    big_digest = upload_blob(registry.netloc, repo, big)
    small = os.urandom(50_000)
    small_digest = upload_blob(registry.netloc, repo, small)
    host, port = sidecar.netloc.split(":")
    for _ in range(3):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"GET /v2/{repo}/blobs/{big_digest} HTTP/1.1\r\n"
                         f"Host: {sidecar.netloc}\r\n\r\n".encode())
            got = 0
            while got < 1024 * 1024:
                got += len(sock.recv(65536))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    # several keep-alive requests on one connection, each must get exactly its own bytes
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        for _ in range(5):
            conn.request("GET", f"/v2/{repo}/blobs/{small_digest}")
            response = conn.getresponse()
            assert response.status == 200
            assert hashlib.sha256(response.read()).hexdigest() == small_digest.split(":")[1]
    finally:
        conn.close()
    with urllib.request.urlopen(f"{sidecar.url}/v2/{repo}/blobs/{big_digest}",
                                timeout=60) as response:
        assert hashlib.sha256(response.read()).hexdigest() == big_digest.split(":")[1]
    assert "Traceback" not in sidecar.log()
    assert len(_worker_boots(sidecar)) == 1, sidecar.log()
