"""The quota gate's decisions, request by request, against recording fakes of the books and the
upstream (unit tests; the real thing is in test_e2e_quota.py)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pytest

from sidecar.events.uploads import session_bytes
from sidecar.events.uploads import upload_route
from sidecar.proxy.quota_gate import QuotaGate
from sidecar.proxy.upstream import Headers
from sidecar.proxy.upstream import UpstreamError

DIGEST = "sha256:" + "a" * 64
STATE = "_state=abc%3D%3D"
AUTH = {"Authorization": "Basic YWxpY2U6cw==", "Host": "reg:5000"}  # alice


@dataclass
class Held:
    allowed: bool = True
    token: str = "t1"
    message: str = ""


class Books:
    def __init__(self, projects=("proj",), answer: Held | None = None, fail: bool = False):
        self.projects = set(projects)
        self.answer = answer or Held()
        self.fail = fail
        self.calls: list[tuple] = []

    def tracks(self, project):
        return project in self.projects

    def reserve_blob(self, project, repository, digest, size):
        self.calls.append(("blob", project, repository, digest, size))
        if self.fail:
            raise RuntimeError("database down")
        return self.answer

    def reserve_manifest(self, project, repository, digest, size, refs):
        self.calls.append(("manifest", project, repository, digest, size, tuple(refs)))
        if self.fail:
            raise RuntimeError("database down")
        return self.answer

    def settle(self, token, ok, **context):
        self.calls.append(("settle", token, ok, context))

    def forget(self, project, repository, digest):
        self.calls.append(("forget", project, repository, digest))


class Answer:
    def __init__(self, status, headers):
        self.status = status
        self.headers = Headers(list(headers.items()))


class Upstream:
    def __init__(self, answer: Answer | None = None, error: bool = False):
        self.answer = answer
        self.error = error
        self.asked: list[tuple] = []

    def request(self, method, target, headers, preload=False, **_):
        self.asked.append((method, target, dict(headers)))
        if self.error:
            raise UpstreamError("connection refused")
        return self.answer


def gate(books=None, upstream=None):
    events: list = []
    made = QuotaGate(books or Books(), upstream or Upstream(), events.extend, clock=lambda: 7.0)
    return made, events


def test_pulls_and_projects_without_a_quota_are_not_looked_at():
    books = Books()
    g, events = gate(books)
    assert g.admit("GET", "/v2/proj/a/manifests/v1", "", {}, None, False) is None
    assert g.admit("HEAD", "/v2/proj/a/blobs/" + DIGEST, "", {}, None, False) is None
    assert g.admit("PUT", "/v2/other/a/manifests/v1", "", {}, b"{}", False) is None
    assert g.admit("PUT", "/v2/proj/manifests/v1", "", {}, b"{}", False) is None  # no project
    assert g.admit("PUT", "/sidecar/x", "", {}, b"", False) is None
    assert books.calls == [] and events == []


def test_final_put_holds_what_the_patches_sent_plus_its_body():
    books = Books()
    g, _ = gate(books)
    patch = g.admit("PATCH", "/v2/proj/a/blobs/uploads/u1", STATE, AUTH, b"x" * 10, False)
    patch.answered(202, {"Range": "0-4095", "Location": "/v2/proj/a/blobs/uploads/u1?_state=n"})
    put = g.admit("PUT", "/v2/proj/a/blobs/uploads/u1", f"_state=n&digest={DIGEST}",
                  {**AUTH, "Content-Length": "100"}, b"y" * 100, False)
    assert books.calls == [("blob", "proj", "proj/a", DIGEST, 4196)]
    put.answered(201, {})
    assert books.calls[-1] == ("settle", "t1", True,
                               {"operator": "alice", "request_id": "", "tag": ""})
    assert g.sessions.get("proj/a", "u1", "_state=n") is None  # done with the session


def test_a_put_to_a_url_this_worker_never_issued_asks_the_registry():
    books = Books()
    upstream = Upstream(Answer(204, {"Range": "0-999"}))
    g, _ = gate(books, upstream)
    start = g.admit("POST", "/v2/proj/a/blobs/uploads/", "", AUTH, None, False)
    start.answered(202, {"Location": "/v2/proj/a/blobs/uploads/u2?_state=s0",
                         "Docker-Upload-UUID": "u2"})
    # the PATCH went to another worker: the PUT's state is one we never saw
    g.admit("PUT", "/v2/proj/a/blobs/uploads/u2", f"_state=s1&digest={DIGEST}", AUTH, b"",
            False)
    [(method, target, headers)] = upstream.asked
    assert (method, target) == ("GET", f"/v2/proj/a/blobs/uploads/u2?_state=s1&digest={DIGEST}")
    assert headers == AUTH  # the client's credentials and Host, nothing else
    assert books.calls == [("blob", "proj", "proj/a", DIGEST, 1000)]


def test_a_monolithic_put_after_the_post_holds_its_length_without_asking():
    books = Books()
    upstream = Upstream()
    g, _ = gate(books, upstream)
    g.admit("POST", "/v2/proj/a/blobs/uploads/", "", {}, None, False).answered(
        202, {"Location": "http://reg/v2/proj/a/blobs/uploads/u3?_state=s0", "Range": "0-0"})
    g.admit("PUT", "/v2/proj/a/blobs/uploads/u3", f"_state=s0&digest={DIGEST}",
            {"Content-Length": "268"}, b"z" * 268, False)
    assert upstream.asked == []
    assert books.calls == [("blob", "proj", "proj/a", DIGEST, 268)]


def test_registry_without_upload_state_is_always_asked():
    books = Books()
    upstream = Upstream(Answer(204, {"Range": "0-9"}))
    g, _ = gate(books, upstream)
    g.admit("PATCH", "/v2/proj/a/blobs/uploads/u4", "", {}, b"0123456789", False).answered(
        202, {"Range": "0-9", "Location": "/v2/proj/a/blobs/uploads/u4"})
    g.admit("PUT", "/v2/proj/a/blobs/uploads/u4", f"digest={DIGEST}", {}, b"", False)
    assert len(upstream.asked) == 1
    assert books.calls == [("blob", "proj", "proj/a", DIGEST, 10)]


@pytest.mark.parametrize("upstream", [Upstream(error=True), Upstream(Answer(404, {})),
                                      Upstream(Answer(204, {}))])
def test_unknown_session_size_passes_unheld(upstream):
    books = Books()
    g, _ = gate(books, upstream)
    ticket = g.admit("PUT", "/v2/proj/a/blobs/uploads/u5", f"digest={DIGEST}", {}, b"", False)
    assert ticket is not None and ticket.denied is None
    assert books.calls == []


def test_chunked_final_put_passes_unheld_and_the_body_is_untouched():
    books = Books()
    g, _ = gate(books)
    body = iter([b"abc"])
    ticket = g.admit("PUT", "/v2/proj/a/blobs/uploads/u6", f"digest={DIGEST}", {}, body, True)
    assert (ticket.body, ticket.chunked) == (body, True)
    assert books.calls == []


def test_refused_blob_answers_403_denied_and_fires_quota_exceed():
    message = ("adding 2.1 MiB of storage resource, which when updated to current usage of "
               "8.3 MiB will exceed the configured upper limit of 10.0 MiB.")
    books = Books(answer=Held(allowed=False, token="", message=message))
    g, events = gate(books)
    ticket = g.admit("POST", "/v2/proj/a/blobs/uploads/", f"digest={DIGEST}",
                     {**AUTH, "Content-Length": "5", "X-Request-Id": "r-1"}, b"hello", False)
    started = []
    body = ticket.refuse(lambda status, headers: started.append((status, dict(headers))))
    assert started == [("403 Forbidden", {"Content-Type": "application/json; charset=utf-8",
                                          "Content-Length": str(len(body[0]))})]
    assert json.loads(body[0]) == {"errors": [{"code": "DENIED", "message": message}]}
    [event] = events
    assert (event.type, event.project, event.repo_name, event.details, event.operator,
            event.request_id, event.digest, event.tag, event.occur_at) == (
        "QUOTA_EXCEED", "proj", "proj/a", message, "alice", "r-1", "", "", 7)


def test_mount_holds_the_known_size_and_a_declined_mount_starts_a_session():
    books = Books()
    g, _ = gate(books)
    ticket = g.admit("POST", "/v2/proj/a/blobs/uploads/", f"mount={DIGEST}&from=lib%2Fb", {},
                     None, False)
    assert books.calls == [("blob", "proj", "proj/a", DIGEST, None)]
    ticket.answered(202, {"Location": "/v2/proj/a/blobs/uploads/u7?_state=s",
                          "Docker-Upload-UUID": "u7"})
    assert books.calls[-1][:3] == ("settle", "t1", False)
    assert g.sessions.get("proj/a", "u7", "_state=s") == 0


def manifest(*blobs: tuple[str, int]) -> bytes:
    return json.dumps({"schemaVersion": 2,
                       "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"digest": blobs[0][0], "size": blobs[0][1],
                                  "mediaType": "application/vnd.oci.image.config.v1+json"},
                       "layers": [{"digest": d, "size": s,
                                   "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}
                                  for d, s in blobs[1:]]}).encode()


class Reader:
    def __init__(self, data: bytes):
        self.data = data

    def read(self, size=-1):
        out, self.data = self.data[:65536], self.data[65536:]
        return out


@pytest.mark.parametrize("chunked", [False, True])
def test_manifest_is_read_whole_and_holds_itself_and_its_blobs(chunked):
    books = Books()
    g, _ = gate(books)
    body = manifest(("sha256:" + "c" * 64, 300), ("sha256:" + "d" * 64, 4000))
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    sent = iter([body[:10], body[10:]]) if chunked else Reader(body)
    headers = {} if chunked else {"Content-Length": str(len(body))}
    ticket = g.admit("PUT", "/v2/proj/a/manifests/v1", "", {**AUTH, **headers}, sent, chunked)
    assert (ticket.body, ticket.chunked) == (body, False)
    assert books.calls == [("manifest", "proj", "proj/a", digest, len(body),
                            (("sha256:" + "c" * 64, 300), ("sha256:" + "d" * 64, 4000)))]
    ticket.answered(400, {})  # the registry refused it: the hold is given back
    assert books.calls[-1] == ("settle", "t1", False,
                               {"operator": "alice", "request_id": "", "tag": "v1"})


def test_refused_manifest_names_digest_and_tag():
    books = Books(answer=Held(allowed=False, token="", message="adding ..."))
    g, events = gate(books)
    body = manifest(("sha256:" + "c" * 64, 300))
    ticket = g.admit("PUT", "/v2/proj/a/b/manifests/1.0", "", {}, body, False)
    assert ticket.denied is not None
    [event] = events
    assert (event.repo_name, event.digest, event.tag) == (
        "proj/a/b", "sha256:" + hashlib.sha256(body).hexdigest(), "1.0")


def test_manifest_by_digest_is_held_under_that_digest_without_a_tag():
    books = Books()
    g, _ = gate(books)
    body = manifest(("sha256:" + "c" * 64, 300))
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    g.admit("PUT", f"/v2/proj/a/manifests/{digest}", "", {}, body, False).answered(201, {})
    assert books.calls[0][3] == digest
    assert books.calls[-1] == ("settle", "t1", True, {"operator": "", "request_id": "",
                                                      "tag": ""})


def test_what_is_not_a_manifest_passes_uncounted():
    books = Books()
    g, _ = gate(books)
    ticket = g.admit("PUT", "/v2/proj/a/manifests/v1", "", {}, Reader(b"not json"), False)
    assert ticket.body == b"not json" and books.calls == []
    big = {"Content-Length": str(5 * 1024 * 1024)}
    assert g.admit("PUT", "/v2/proj/a/manifests/v1", "", big, Reader(b""), False) is None


def test_a_chunked_manifest_past_the_limit_is_passed_on_whole():
    books = Books()
    g, _ = gate(books)
    pieces = [b"x" * (1024 * 1024)] * 5
    ticket = g.admit("PUT", "/v2/proj/a/manifests/v1", "", {}, iter(pieces), True)
    assert ticket.chunked and b"".join(ticket.body) == b"".join(pieces)
    assert books.calls == []


def test_a_client_gone_mid_manifest_fails_upstream_as_before():
    class Gone:
        def read(self, size=-1):
            raise ConnectionAbortedError("client left")

    g, _ = gate()
    ticket = g.admit("PUT", "/v2/proj/a/manifests/v1", "", {"Content-Length": "10"}, Gone(),
                     False)
    with pytest.raises(ConnectionAbortedError):
        ticket.body.read(10)


def test_store_trouble_passes_the_push_unaccounted():
    books = Books(fail=True)
    g, events = gate(books)
    body = manifest(("sha256:" + "c" * 64, 300))
    ticket = g.admit("PUT", "/v2/proj/a/manifests/v1", "", {}, body, False)
    assert ticket.denied is None and ticket.body == body
    ticket = g.admit("POST", "/v2/proj/a/blobs/uploads/", f"digest={DIGEST}",
                     {"Content-Length": "3"}, b"abc", False)
    assert ticket.denied is None
    ticket.answered(201, {})
    assert [c[0] for c in books.calls] == ["manifest", "blob"] and events == []


def test_deleted_manifest_is_forgotten_only_when_the_registry_deleted_it():
    books = Books()
    g, _ = gate(books)
    g.admit("DELETE", f"/v2/proj/a/manifests/{DIGEST}", "", {}, None, False).answered(404, {})
    g.admit("DELETE", f"/v2/proj/a/manifests/{DIGEST}", "", {}, None, False).answered(202, {})
    assert g.admit("DELETE", "/v2/proj/a/manifests/v1", "", {}, None, False) is None
    assert books.calls == [("forget", "proj", "proj/a", DIGEST)]


def test_a_ticket_answers_once():
    books = Books()
    g, _ = gate(books)
    ticket = g.admit("POST", "/v2/proj/a/blobs/uploads/", f"digest={DIGEST}",
                     {"Content-Length": "3"}, b"abc", False)
    ticket.answered(None)
    ticket.answered(201, {})
    assert [c for c in books.calls if c[0] == "settle"] == [
        ("settle", "t1", False, {"operator": "", "request_id": "", "tag": ""})]


@pytest.mark.parametrize("header,sent,expected", [
    ("0-0", False, 0), ("0-0", True, 1), ("0-1023", True, 1024), ("bytes=0-9", True, 10),
    ("5-9", True, None), ("garbage", True, None), (None, True, None), ("0-", True, None),
])
def test_session_bytes_reads_distributions_range(header, sent, expected):
    assert session_bytes(header, sent_body=sent) == expected


def test_upload_route():
    assert upload_route("/v2/proj/a/b/blobs/uploads/") == ("proj/a/b", "")
    assert upload_route("/v2/proj/a/blobs/uploads/u-1") == ("proj/a", "u-1")
    assert upload_route("/v2/proj/a/blobs/uploads/u/x") is None
    assert upload_route("/v2/Proj/a/blobs/uploads/") is None
