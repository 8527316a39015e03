"""`sidecar.blob_redirect`: blob GETs answered with a 307 to the registry, which real clients
follow; redirects the registry itself sends pass through untouched and are never followed."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import threading
import urllib.request
import uuid

import pytest

from tests.support import clients
from tests.support import recorded
from tests.support.auth import htpasswd_file
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e


def _repo(prefix: str) -> str:
    return f"proj/{prefix}-{uuid.uuid4().hex[:8]}"


def redirects(sidecar) -> float:
    """307s the sidecar answered (its own metrics)."""
    with urllib.request.urlopen(f"{sidecar.url}/sidecar/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("sidecar_proxy_requests_total{") and 'status="307"' in line)


def test_skopeo_podman_and_oras_pull_through_redirects(sidecar_factory, registry, image,
                                                       tmp_path):
    sidecar = sidecar_factory(config={"sidecar": {"blob_redirect": registry.url}})
    layout, digest = image("v1", layers=2, layer_size=256 * 1024)
    repo = _repo("redirect")
    clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1")  # uploads are proxied as ever

    clients.pull(f"{sidecar.netloc}/{repo}:v1", tmp_path / "skopeo")
    index = json.loads((tmp_path / "skopeo" / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [digest]
    after_skopeo = redirects(sidecar)
    assert after_skopeo >= 3  # config and two layers

    podman = clients.Podman(tmp_path / "podman")
    try:
        image_id = podman.load_layout(layout, "v1")
        podman.remove_all()
        assert podman.pull(f"{sidecar.netloc}/{repo}:v1") == image_id
    finally:
        podman.close()
    after_podman = redirects(sidecar)
    assert after_podman > after_skopeo

    content = os.urandom(4096)
    clients.oras_push(f"{sidecar.netloc}/{repo}-oras:1", {"a.bin": (content,
                                                                    "application/x-test")},
                      tmp_path / "src")
    files = clients.oras_client().pull(target=f"{sidecar.netloc}/{repo}-oras:1",
                                       outdir=str(tmp_path / "out"))
    assert [open(f, "rb").read() for f in files] == [content]
    assert redirects(sidecar) > after_podman

    # the manifest GETs still went through the sidecar: pulls are events as before
    events = recorded.until_barrier(sidecar, repo, "v1")
    assert [e["type"] for e in events].count("PULL_ARTIFACT") >= 2


def test_registry_needing_credentials_is_not_for_redirects(sidecar_factory, image, tmp_path):
    """What the README warns of: containers/image (skopeo, podman) does not take credentials
    to the redirect address, so a registry that wants them there cannot serve redirected
    blobs. Such registries keep blobs proxied (no blob_redirect)."""
    protected = Registry(tmp_path / "protected",
                         htpasswd=htpasswd_file(tmp_path / "htpasswd", {"alice": "s3cret"}))
    protected.start()
    try:
        sidecar = sidecar_factory(upstream=protected.url,
                                  config={"sidecar": {"blob_redirect": protected.url}})
        layout, _ = image("v1", layers=1)
        repo = _repo("auth")
        clients.push(layout, "v1", f"{sidecar.netloc}/{repo}:v1", creds="alice:s3cret")
        with pytest.raises(AssertionError, match="unauthorized"):
            clients.pull(f"{sidecar.netloc}/{repo}:v1", tmp_path / "out", creds="alice:s3cret")
        assert redirects(sidecar) >= 1
    finally:
        protected.stop()


def test_registry_redirects_pass_through_unfollowed(sidecar_factory, tmp_path):
    """A registry on object storage answers blob GETs with a presigned URL: the client gets
    that 307 as it is, and the sidecar never fetches the URL itself."""
    hits = []

    class Storage(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    storage = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Storage)
    presigned = (f"http://127.0.0.1:{storage.server_port}/bucket/blob?X-Amz-Signature=abc%2Fdef"
                 "&X-Amz-Expires=1200")

    class Upstream(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802
            if "/blobs/" in self.path:
                self.send_response(307)
                self.send_header("Location", presigned)
            else:
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    for server in (storage, upstream):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sidecar = sidecar_factory(upstream=f"http://127.0.0.1:{upstream.server_port}")
        conn = http.client.HTTPConnection("127.0.0.1", sidecar.port, timeout=10)
        conn.request("GET", "/v2/proj/app/blobs/sha256:" + "a" * 64)
        answer = conn.getresponse()
        answer.read()
        conn.close()
        assert answer.status == 307
        assert answer.getheader("Location") == presigned
        assert hits == []
    finally:
        storage.shutdown()
        upstream.shutdown()


def test_blob_redirect_must_be_a_registry_root(tmp_path):
    from sidecar.config import ConfigError
    from sidecar.config import Settings
    from sidecar.config import validate

    validate(Settings(blob_redirect="http://registry:5000"))
    with pytest.raises(ConfigError, match="blob_redirect"):
        validate(Settings(blob_redirect="registry:5000/v2"))
