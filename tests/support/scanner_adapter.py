"""A Pluggable Scanner Adapter (spec v1.1) for the tests: a real HTTP server on loopback.

No adapter with a vulnerability database runs offline, so this one does the rest of the
work for real: for each scan it pulls the manifest, config and layers from the registry URL it
was given, with the Authorization it was given (exchanging Basic for a token when the registry
asks for one), checks every digest, and fails the scan when the pull fails. Its report is
derived from the layer digests (`expected_counts` says what a summary of it must show).

Every request it receives and every answer it gives is checked against the spec's JSON
Schemas (tests/scanner_spec.py, strict); `violations` lists what did not pass, so a fixture can
assert that the sidecar spoke the protocol. It can be told to misbehave:

    adapter.behave(refuse=422)            POST /scan answers 422 with an ErrorResponse
    adapter.behave(fail="db locked")      the scan ends in error: the report answers 500
    adapter.behave(hang=True)             the report is never ready (302 for ever)
    adapter.behave(stall=30)              report requests get no answer for 30 s
    adapter.behave(body="garbage")        200 with a body that is not JSON
    adapter.behave(body="wrong_type")     200 with the report as application/json
    adapter.behave(body="unparseable")    200 with JSON that is not a report
    adapter.behave(body="huge", huge_bytes=N)   200 with an N-byte body
    adapter.behave(redirect_loop=True)    302 to another URL, which 302s back
    ScannerAdapter(registry_auth="Bearer")  metadata asks for a pull token instead of Basic
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from typing import Any

import requests

from tests.scanner_spec import problems
from tests.support.ports import free_port

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
GENERIC_REPORT = "application/vnd.security.vulnerability.report; version=1.1"
NATIVE_REPORT = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
SCAN_REQUEST = "application/vnd.scanner.adapter.scan.request+json; version=1.0"
SCAN_RESPONSE = "application/vnd.scanner.adapter.scan.response+json; version=1.0"
METADATA = "application/vnd.scanner.adapter.metadata+json; version=1.0"
ERROR = "application/vnd.scanner.adapter.error+json; version=1.0"
REGISTRY_AUTH = "harbor.scanner-adapter/registry-authorization-type"

SCANNER = {"name": "Simulated", "vendor": "Sidecar tests", "version": "1.0.0"}
SEVERITIES = ("Unknown", "Negligible", "Low", "Medium", "High", "Critical")
#: listed once per layer, as a package every layer ships would be: Harbor counts it once
BASE_ITEM = {"id": "CVE-2099-00001", "package": "base-files", "version": "1.0",
             "fix_version": "1.1", "severity": "Low"}


def simulated_vulnerabilities(layers: list[str]) -> list[dict[str, Any]]:
    """The report's items for these layer digests: BASE_ITEM per layer, then 0-3 items a
    layer, their severity and fixability read from the digest's hex digits."""
    items = []
    for layer in layers:
        hexd = layer.partition(":")[2]
        items.append({**BASE_ITEM, "description": "in every layer",
                      "links": ["https://vulns.example/CVE-2099-00001"]})
        for i in range(int(hexd[0], 16) % 4):
            digit = int(hexd[1 + i], 16)
            cve = f"CVE-2099-{int(hexd[8 + 4 * i:12 + 4 * i], 16):05d}"
            items.append({
                "id": cve, "package": f"pkg-{hexd[:8]}", "version": f"1.{i}.0",
                "fix_version": f"1.{i}.1" if digit % 2 == 0 else "",
                "severity": SEVERITIES[digit % 6],
                "description": f"simulated from layer {layer[:19]}",
                "links": [f"https://vulns.example/{cve}"],
                "preferred_cvss": {"score_v3": float(digit % 6 * 2), "vector_v3": "CVSS:3.1/AV:N"},
                "cwe_ids": ["CWE-20"],
                "vendor_attributes": {"layer": layer},
            })
    return items


def expected_counts(layers: list[str]) -> dict[str, Any]:
    """What Harbor's summary of the simulated report must say, worked out from the digests
    directly (not from the items): total, fixable, per-severity counts, overall severity."""
    per: dict[str, int] = {}
    total = fixable = 0
    if layers:
        total, fixable, per["Low"] = 1, 1, 1
    for layer in layers:
        hexd = layer.partition(":")[2]
        for i in range(int(hexd[0], 16) % 4):
            digit = int(hexd[1 + i], 16)
            severity = SEVERITIES[digit % 6]
            per[severity] = per.get(severity, 0) + 1
            total += 1
            fixable += digit % 2 == 0
    # Harbor starts from None and takes an item's severity only when it ranks higher;
    # Unknown ranks with None, so it never shows as the overall severity
    ranked = [s for s in per if SEVERITIES.index(s) > 0]
    worst = max(ranked, key=SEVERITIES.index) if ranked else "None"
    return {"total": total, "fixable": fixable, "summary": per, "severity": worst}


class PullError(Exception):
    pass


def pull_layers(registry_url: str, authorization: str, repository: str, digest: str,
                mime_type: str) -> list[str]:
    """Pull and verify manifest, config and layers as a scanner does; the layer digests."""
    session = requests.Session()
    session.trust_env = False
    headers = {"Authorization": authorization} if authorization else {}
    base = registry_url.rstrip("/")

    def get(path: str, **extra: str) -> requests.Response:
        nonlocal headers
        url = f"{base}/v2/{repository}/{path}"
        response = session.get(url, headers={**headers, **extra}, stream=True, timeout=30)
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code == 401 and challenge.startswith("Bearer ") and \
                authorization.startswith("Basic "):
            headers = {"Authorization": f"Bearer {_token(session, challenge, authorization)}"}
            response = session.get(url, headers={**headers, **extra}, stream=True, timeout=30)
        if response.status_code != 200:
            raise PullError(f"GET {path} from the registry answered {response.status_code}")
        return response

    manifest_bytes = get(f"manifests/{digest}", Accept=mime_type).content
    if "sha256:" + hashlib.sha256(manifest_bytes).hexdigest() != digest:
        raise PullError("the manifest's digest does not match")
    manifest = json.loads(manifest_bytes)
    if manifest.get("mediaType", mime_type) not in (OCI_MANIFEST, DOCKER_MANIFEST):
        raise PullError(f"not an image manifest: {manifest.get('mediaType')}")
    layers = [layer["digest"] for layer in manifest.get("layers", [])]
    for blob in [manifest["config"]["digest"], *layers]:
        hasher = hashlib.sha256()
        with get(f"blobs/{blob}") as response:
            for chunk in response.iter_content(1 << 16):
                hasher.update(chunk)
        if "sha256:" + hasher.hexdigest() != blob:
            raise PullError(f"blob {blob} does not match its digest")
    return layers


def _token(session: requests.Session, challenge: str, basic: str) -> str:
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = params.pop("realm")
    response = session.get(realm, params=params, headers={"Authorization": basic}, timeout=30)
    if response.status_code != 200:
        raise PullError(f"the token service answered {response.status_code}")
    body = response.json()
    return body.get("token") or body["access_token"]


@dataclass
class Scan:
    id: str
    request: dict[str, Any]
    state: str = "pulling"  # pulling, done, failed
    error: str = ""
    layers: list[str] = field(default_factory=list)
    polls: int = 0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Behaviour:
    refuse: int | None = None
    fail: str | None = None
    hang: bool = False
    stall: float = 0.0
    body: str | None = None
    huge_bytes: int = 8 << 20
    redirect_loop: bool = False
    polls_before_ready: int = 1
    refresh_after: str | None = "0"
    require: dict[str, str] = field(default_factory=dict)  # headers the caller must send
    produces: tuple[str, ...] = (GENERIC_REPORT,)
    metadata: dict[str, Any] | None = None
    #: the metadata property asking for a Bearer pull token instead of Basic credentials
    registry_auth: str | None = None


class ScannerAdapter:
    def __init__(self, **behaviour: Any):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.behaviour = Behaviour(**behaviour)
        self.scans: dict[str, Scan] = {}
        self.seen: list[Seen] = []
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None

    def behave(self, **changes: Any) -> None:
        for key, value in changes.items():
            if not hasattr(self.behaviour, key):
                raise TypeError(f"no behaviour {key}")
            setattr(self.behaviour, key, value)

    def metadata(self) -> dict[str, Any]:
        if self.behaviour.metadata is not None:
            return self.behaviour.metadata
        properties = {"harbor.scanner-adapter/scanner-type": "os-package-vulnerability"}
        if self.behaviour.registry_auth:
            properties[REGISTRY_AUTH] = self.behaviour.registry_auth
        return {"scanner": dict(SCANNER),
                "capabilities": [{"type": "vulnerability",
                                  "consumes_mime_types": [OCI_MANIFEST, DOCKER_MANIFEST],
                                  "produces_mime_types": list(self.behaviour.produces)}],
                "properties": properties}

    def wait_scans(self, count: int, timeout: float = 30.0) -> list[Scan]:
        """Block until `count` scans have finished pulling (done or failed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                finished = [s for s in self.scans.values() if s.state != "pulling"]
            if len(finished) >= count:
                return finished
            time.sleep(0.02)
        raise AssertionError(f"{count} scans did not finish: {list(self.scans.values())}")

    # -- the server ---------------------------------------------------------------------

    def start(self) -> ScannerAdapter:
        adapter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                adapter._handle(self, "GET")

            def do_POST(self):  # noqa: N802
                adapter._handle(self, "POST")

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _handle(self, handler: http.server.BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self.seen.append(Seen(method, handler.path, headers, body))
        reply = _Reply(handler, self)
        for name, value in self.behaviour.require.items():
            if headers.get(name.lower()) != value:
                return reply.error(401, "unauthorized")
        path = handler.path.split("?")[0]
        if method == "GET" and path == "/api/v1/metadata":
            if self.behaviour.metadata is not None:  # told to answer this, however wrong
                return reply.raw(200, json.dumps(self.behaviour.metadata).encode(), METADATA)
            return reply.json(200, self.metadata(), METADATA, "ScannerAdapterMetadata")
        if method == "POST" and path == "/api/v1/scan":
            return self._accept(reply, headers, body)
        match = re.fullmatch(r"/api/v1/scan/([^/]+)/(report|report-moved)", path)
        if method == "GET" and match:
            return self._report(reply, headers, match.group(1), match.group(2))
        return reply.error(404, f"no route {method} {path}")

    def _accept(self, reply: _Reply, headers: dict[str, str], body: bytes) -> None:
        if headers.get("content-type") != SCAN_REQUEST:
            self.violations.append(f"scan request Content-Type {headers.get('content-type')!r}")
        try:
            request = json.loads(body)
        except ValueError:
            self.violations.append("scan request is not JSON")
            return reply.error(400, "received invalid JSON")
        found = problems("ScanRequest", request, strict=True)
        if found:
            self.violations.extend(found)
            return reply.error(422, "; ".join(found))
        if self.behaviour.refuse:
            return reply.error(self.behaviour.refuse, "invalid registry_url")
        artifact = request["artifact"]
        if artifact.get("mime_type") not in (OCI_MANIFEST, DOCKER_MANIFEST):
            return reply.error(422, f"unsupported artifact mime type {artifact.get('mime_type')}")
        scan = Scan(id=str(uuid.uuid4()), request=request)
        with self._lock:
            self.scans[scan.id] = scan
        threading.Thread(target=self._run, args=(scan,), daemon=True).start()
        return reply.json(202, {"id": scan.id}, SCAN_RESPONSE, "ScanResponse")

    def _run(self, scan: Scan) -> None:
        registry, artifact = scan.request["registry"], scan.request["artifact"]
        try:
            scan.layers = pull_layers(registry["url"], registry.get("authorization", ""),
                                      artifact["repository"], artifact["digest"],
                                      artifact["mime_type"])
        except (PullError, requests.RequestException, ValueError, KeyError) as exc:
            scan.error, scan.state = f"pulling the artifact failed: {exc}", "failed"
            return
        scan.state = "done"

    def _report(self, reply: _Reply, headers: dict[str, str], scan_id: str, route: str) -> None:
        behaviour = self.behaviour
        if behaviour.stall:
            time.sleep(behaviour.stall)
        with self._lock:
            scan = self.scans.get(scan_id)
        if scan is None:
            return reply.empty(404)
        if behaviour.redirect_loop:
            other = "report-moved" if route == "report" else "report"
            return reply.empty(302, {"Location": f"{self.url}/api/v1/scan/{scan_id}/{other}",
                                     "Refresh-After": "0"})
        accept = headers.get("accept", "")
        if accept not in behaviour.produces:
            return reply.error(400, f"unsupported report type {accept!r}")
        if behaviour.fail:
            return reply.error(500, behaviour.fail)
        if scan.state == "failed":
            return reply.error(500, scan.error)
        if scan.state == "pulling" or behaviour.hang or scan.polls < behaviour.polls_before_ready:
            scan.polls += 1
            extra = {"Location": f"{self.url}/api/v1/scan/{scan_id}/report"}
            if behaviour.refresh_after is not None:
                extra["Refresh-After"] = behaviour.refresh_after
            return reply.empty(302, extra)
        report = self.report_for(scan)
        if behaviour.body == "garbage":
            return reply.raw(200, b"<html>502 Bad Gateway</html>", accept)
        if behaviour.body == "wrong_type":
            return reply.raw(200, json.dumps(report).encode(), "application/json")
        if behaviour.body == "unparseable":
            return reply.raw(200, json.dumps({**report, "vulnerabilities": "many"}).encode(),
                             accept)
        if behaviour.body == "huge":
            return reply.huge(accept, behaviour.huge_bytes)
        return reply.json(200, report, accept, "HarborVulnerabilityReport")

    def report_for(self, scan: Scan) -> dict[str, Any]:
        items = simulated_vulnerabilities(scan.layers)
        worst = max((SEVERITIES.index(i["severity"]) for i in items), default=0)
        artifact = {k: v for k, v in scan.request["artifact"].items() if v != ""}
        return {"generated_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "artifact": artifact, "scanner": dict(SCANNER),
                "severity": SEVERITIES[worst], "vulnerabilities": items}


class _Reply:
    def __init__(self, handler: http.server.BaseHTTPRequestHandler, adapter: ScannerAdapter):
        self.handler = handler
        self.adapter = adapter

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        try:
            self.handler.send_response(status)
            for key, value in headers.items():
                self.handler.send_header(key, value)
            self.handler.send_header("Content-Length", str(len(body)))
            self.handler.end_headers()
            self.handler.wfile.write(body)
        except OSError:
            pass  # the client gave up (a test of timeouts or size limits)

    def json(self, status: int, data: Any, content_type: str, schema: str) -> None:
        self.adapter.violations.extend(problems(schema, data, strict=True))
        self._send(status, json.dumps(data).encode(), {"Content-Type": content_type})

    def error(self, status: int, message: str) -> None:
        self.json(status, {"error": {"message": message}}, ERROR, "ErrorResponse")

    def empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self._send(status, b"", headers or {})

    def raw(self, status: int, body: bytes, content_type: str) -> None:
        self._send(status, body, {"Content-Type": content_type})

    def huge(self, content_type: str, size: int) -> None:
        """A chunked body of `size` bytes of one endless JSON string (no Content-Length)."""
        try:
            self.handler.send_response(200)
            self.handler.send_header("Content-Type", content_type)
            self.handler.send_header("Transfer-Encoding", "chunked")
            self.handler.end_headers()
            chunk = b'{"generated_at":"' + b"x" * (64 * 1024)
            sent = 0
            while sent < size:
                self.handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                chunk = b"x" * (64 * 1024)
            self.handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
