"""The admin surfaces of a real `sidecar serve` (two workers): who may read /sidecar/status and
/sidecar/metrics, the lock-down while harbor_admin_password is Harbor's default, failed logins
throttled across workers, and the UI cookie's Secure flag behind a trusted front proxy.

Other client addresses are made two ways: a trusted front proxy's X-Forwarded-For (the
sidecar trusts 127.0.0.1 here), and a connection from 127.0.0.2 (not trusted: its own
address counts).
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import subprocess
import time

import pytest

from tests.support.sidecar import Sidecar

PASSWORD = "s3cret-Admin-pw"
TRUST_LOCAL = {"sidecar": {"trusted_proxies": ["127.0.0.1/32"]}}


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _get(sidecar: Sidecar, path: str, headers: dict | None = None, source: str = "127.0.0.1",
         method: str = "GET", body: str | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", sidecar.port, timeout=10,
                                      source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


def _cookies(headers: dict) -> str:
    return headers.get("Set-Cookie", "")


@pytest.fixture
def admin_sidecar(sidecar_factory):
    return sidecar_factory({"projects": []}, workers=2,
                           config={"harbor_admin_password": PASSWORD, **TRUST_LOCAL})


def test_status_is_the_admins_healthz_and_metrics_stay_open(admin_sidecar):
    sidecar = admin_sidecar
    status, headers, body = _get(sidecar, "/sidecar/status")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    assert "log in as the admin" in json.loads(body)["error"]
    assert "endpoints" not in body
    status, _, body = _get(sidecar, "/sidecar/status", _basic("admin", PASSWORD))
    assert status == 200 and "endpoints" in json.loads(body)
    # a browser is sent to the UI's login form, and back after it
    status, headers, _ = _get(sidecar, "/sidecar/status?format=html")
    assert status == 302 and "/sidecar/ui/login?next=" in headers["Location"]
    assert _get(sidecar, "/sidecar/healthz")[0] == 200
    status, _, metrics = _get(sidecar, "/sidecar/metrics")
    assert status == 200 and "# TYPE sidecar_" in metrics
    assert "127.0.0.1" not in metrics and PASSWORD not in metrics


def test_public_status_and_metrics_auth(sidecar_factory):
    sidecar = sidecar_factory({"projects": []}, config={
        "harbor_admin_password": PASSWORD,
        "sidecar": {"public_status": True, "metrics_auth": True}})
    assert _get(sidecar, "/sidecar/status")[0] == 200
    status, headers, _ = _get(sidecar, "/sidecar/metrics")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    assert _get(sidecar, "/sidecar/metrics", _basic("admin", PASSWORD))[0] == 200
    assert _get(sidecar, "/sidecar/healthz")[0] == 200


def test_default_password_answers_only_loopback_clients(sidecar_factory):
    sidecar = sidecar_factory({"projects": []}, config=TRUST_LOCAL)
    admin = _basic("admin", "Harbor12345")
    remote = {"X-Forwarded-For": "203.0.113.9", **admin}
    for path in ("/api/v2.0/projects", "/sidecar/ui/login", "/sidecar/status"):
        status, _, body = _get(sidecar, path, remote)
        assert status == 403, path
        assert "harbor_admin_password" in body and "loopback" in body, body
    assert "set a password" not in _get(sidecar, "/api/v2.0/projects", admin)[2]
    assert _get(sidecar, "/api/v2.0/projects", admin)[0] == 200  # from this host
    assert _get(sidecar, "/sidecar/healthz", {"X-Forwarded-For": "203.0.113.9"})[0] == 200
    assert "harbor_admin_password is Harbor's published default" in sidecar.log()


def test_forwarded_for_is_believed_only_from_trusted_proxies(sidecar_factory):
    # nothing trusted: a loopback client's X-Forwarded-For is just a header
    sidecar = sidecar_factory({"projects": []})
    remote = {"X-Forwarded-For": "203.0.113.9", **_basic("admin", "Harbor12345")}
    assert _get(sidecar, "/api/v2.0/projects", remote)[0] == 200


def test_failed_logins_are_throttled_per_address_and_user(admin_sidecar):
    sidecar = admin_sidecar
    guesser = {"X-Forwarded-For": "198.51.100.7"}
    for _ in range(10):  # the burst: two workers share the count through the store
        status, _, _ = _get(sidecar, "/api/v2.0/projects", {**guesser, **_basic("admin", "x")})
        assert status == 401
    status, headers, body = _get(sidecar, "/api/v2.0/projects",
                                 {**guesser, **_basic("admin", "y")})
    assert status == 429 and 0 < int(headers["Retry-After"]) <= 300
    assert json.loads(body)["errors"][0]["code"] == "TOO_MANY_REQUESTS"
    # even the right password from there waits: a guesser learns nothing
    assert _get(sidecar, "/api/v2.0/projects",
                {**guesser, **_basic("admin", PASSWORD)})[0] == 429
    assert _get(sidecar, "/sidecar/status", {**guesser, **_basic("admin", PASSWORD)})[0] == 429
    # another user from that address, and the admin from elsewhere, are unaffected
    assert _get(sidecar, "/api/v2.0/projects", {**guesser, **_basic("bob", "x")})[0] == 401
    assert _get(sidecar, "/api/v2.0/projects", _basic("admin", PASSWORD),
                source="127.0.0.2")[0] == 200
    # successful logins never count
    for _ in range(25):
        assert _get(sidecar, "/api/v2.0/projects", {"X-Forwarded-For": "198.51.100.8",
                                                     **_basic("admin", PASSWORD)})[0] == 200
    # the UI's login form shares the throttle
    status, headers, body = _login(sidecar, PASSWORD, {"X-Forwarded-For": "198.51.100.7"})
    assert status == 429 and "Retry-After" in headers and "too many failed logins" in body
    for _ in range(10):
        assert _login(sidecar, "wrong", {"X-Forwarded-For": "198.51.100.9"})[0] == 401
    assert _login(sidecar, "wrong", {"X-Forwarded-For": "198.51.100.9"})[0] == 429
    assert _login(sidecar, PASSWORD, {"X-Forwarded-For": "198.51.100.10"})[0] == 302
    assert PASSWORD not in sidecar.log()


def _login(sidecar: Sidecar, password: str, headers: dict):
    status, answer, form = _get(sidecar, "/sidecar/ui/login", headers)
    assert status == 200, form
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    cookie = _cookies(answer).split(";", 1)[0]
    body = f"csrf_token={token}&username=admin&password={password}&next="
    return _get(sidecar, "/sidecar/ui/login", {
        **headers, "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
        method="POST", body=body)


def test_ui_cookie_is_secure_when_a_trusted_proxy_says_https(admin_sidecar):
    sidecar = admin_sidecar
    https = {"X-Forwarded-Proto": "https"}
    assert "Secure" in _cookies(_get(sidecar, "/sidecar/ui/login", https)[1])
    assert "Secure" not in _cookies(_get(sidecar, "/sidecar/ui/login")[1])
    # 127.0.0.2 is no trusted proxy: its X-Forwarded-Proto is ignored
    untrusted = _cookies(_get(sidecar, "/sidecar/ui/login", https, source="127.0.0.2")[1])
    assert untrusted and "Secure" not in untrusted
    assert "Path=/sidecar/" in untrusted and "HttpOnly" in untrusted


@pytest.mark.parametrize(("sidecar_keys", "message"), [
    ({"trusted_proxies": ["10.0.0.0/33"]}, "sidecar.trusted_proxies: '10.0.0.0/33' is not a CIDR"),
    ({"trusted_proxies": "10.0.0.0/8"}, "sidecar.trusted_proxies must be list"),
    ({"public_status": "yes"}, "sidecar.public_status must be bool"),
    ({"metrics_auth": 1}, "sidecar.metrics_auth must be bool"),
])
def test_bad_keys_stop_the_start(tmp_path, registry, sidecar_keys, message):
    sidecar = Sidecar(tmp_path / "sc", registry.url, config={"sidecar": sidecar_keys})
    done = subprocess.run(sidecar.command(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr, done.stderr



def test_access_log_shows_the_client_a_trusted_proxy_names(sidecar_factory):
    sidecar = sidecar_factory({"projects": []}, config={
        "harbor_admin_password": PASSWORD,
        "sidecar": {"trusted_proxies": ["127.0.0.1/32"], "access_log": True}})
    _get(sidecar, "/v2/", {"X-Forwarded-For": "198.51.100.33"})  # proxied: the lean path
    _get(sidecar, "/sidecar/healthz", {"X-Forwarded-For": "198.51.100.34"})  # Flask
    _get(sidecar, "/v2/", {"X-Forwarded-For": "198.51.100.35"}, source="127.0.0.2")
    deadline = time.monotonic() + 10
    while sidecar.log().count('"GET /v2/ ') < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = [line for line in sidecar.log().splitlines() if '"GET /' in line]
    assert any(line.startswith("198.51.100.33 ") and "/v2/" in line for line in lines), lines
    assert any(line.startswith("198.51.100.34 ") and "healthz" in line for line in lines), lines
    # from a peer that is no trusted proxy, the header is not believed
    assert any(line.startswith("127.0.0.2 ") for line in lines), lines
    assert not any(line.startswith("198.51.100.35 ") for line in lines), lines
