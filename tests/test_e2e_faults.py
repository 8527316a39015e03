"""Faults the README's "Operating" section promises about, on real parts: the registry stopped
and started again while clients push through a running `sidecar serve`."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time

from tests.support import clients
from tests.support import recorded
from tests.support.registry import Registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _call(netloc: str, method: str, target: str, body: bytes | None = None):
    host, port = netloc.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, target, body=body, headers={"Accept": OCI_MANIFEST})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        conn.close()


def test_registry_restart_while_pushing(tmp_path, sidecar_factory, receiver_factory, image):
    registry = Registry(tmp_path / "registry").start()
    hook = receiver_factory()
    sidecar = sidecar_factory(
        {"projects": [{"name": "proj", "public": False, "webhooks": [
            {"name": "ci", "enabled": True, "event_types": ["PUSH_ARTIFACT"],
             "targets": [{"type": "http", "address": hook.url}]}]}]},
        upstream=registry.url, workers=2)
    layout, _ = image("v1")
    outcomes: dict[str, bool] = {}
    stop = threading.Event()

    def pusher() -> None:
        n = 0
        while not stop.is_set():
            tag = f"t{n}"
            n += 1
            try:
                clients.skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1",
                               f"docker://{sidecar.netloc}/proj/app:{tag}", timeout=60)
                outcomes[tag] = True
            except AssertionError:  # clients.run: skopeo exited non-zero
                outcomes[tag] = False
            time.sleep(0.1)

    try:
        thread = threading.Thread(target=pusher, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while sum(outcomes.values()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        registry.stop()
        # meanwhile: clean OCI errors, never a hang or an HTML page
        for method, target, body in (("GET", "/v2/proj/app/manifests/t0", None),
                                     ("PUT", "/v2/proj/app/manifests/down", b"{}"),
                                     ("POST", "/v2/proj/app/blobs/uploads/", b"")):
            status, content_type, answer = _call(sidecar.netloc, method, target, body)
            assert status in (502, 503), (method, status)
            assert content_type == "application/json"
            assert json.loads(answer)["errors"][0]["code"] == "UNAVAILABLE"
        time.sleep(3)  # a few pushes fail against the stopped registry
        failed_while_down = [t for t, ok in outcomes.items() if not ok]
        registry.start()  # same port and storage; the sidecar is not restarted
        before = len(outcomes)
        while (len(outcomes) < before + 2 or not list(outcomes.values())[-1]) \
                and time.monotonic() < deadline + 60:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(90)
        registry.stop()
    assert failed_while_down, outcomes
    assert list(outcomes.values())[-1], outcomes  # pushes work again
    pushed = {t for t, ok in outcomes.items() if ok}
    events = {e["payload"]["event_data"]["resources"][0]["tag"]
              for e in recorded.events(sidecar) if e["type"] == "PUSH_ARTIFACT"}
    assert events == pushed  # an event for each push that worked, none for those that failed
    sidecar.wait_status(lambda s: s["deliveries"]["delivered"] == len(pushed), timeout=30)
    assert len(re.findall(r"Booting worker with pid", sidecar.log())) == 2  # no restart
