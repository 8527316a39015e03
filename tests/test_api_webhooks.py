"""Contract of the Harbor-compatible API: every status code and message of Harbor's reference.

Flask's test client against a real SQLite store in a temporary directory; deliveries and
attempts are written through the store's own queue functions. The test endpoint sends to real
HTTP receivers on loopback.
"""

from __future__ import annotations

import base64
import json
import time

import pytest

from sidecar.app import create_app
from sidecar.config import Settings
from sidecar.rules.load import parse_rules
from sidecar.store import delivery_queue as queue
from sidecar.store import policies as policy_store
from sidecar.store.models import DELIVERED
from sidecar.store.models import PENDING
from sidecar.store.models import Policy
from tests.support import postgres
from tests.support.receiver import Reply

PASSWORD = "Adm1n-pass"
SECRET = "Bearer very-secret-token"
BASE = "/api/v2.0"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


ADMIN = basic("admin", PASSWORD)


class Api:
    def __init__(self, client, runtime):
        self.client = client
        self.runtime = runtime

    def call(self, method: str, path: str, body=None, headers=None, raw: bytes | None = None):
        kwargs = {"headers": {**ADMIN, **(headers or {})}}
        if raw is not None:
            kwargs["data"] = raw
            kwargs["content_type"] = "application/json"
        elif body is not None:
            kwargs["json"] = body
        return self.client.open(BASE + path, method=method, **kwargs)

    def project(self, name: str = "proj", public: bool = False) -> int:
        response = self.call("POST", "/projects", {"project_name": name,
                                                   "metadata": {"public": str(public).lower()}})
        assert response.status_code == 201, response.data
        return int(response.headers["Location"].rsplit("/", 1)[1])

    def policy(self, project: str = "proj", **overrides) -> int:
        response = self.call("POST", f"/projects/{project}/webhook/policies",
                             policy_body(**overrides))
        assert response.status_code == 201, response.data
        return int(response.headers["Location"].rsplit("/", 1)[1])


def policy_body(name: str = "ci", address: str = "http://127.0.0.1:9/hook", **overrides) -> dict:
    body = {
        "name": name,
        "description": "notify CI",
        "enabled": True,
        "event_types": ["PUSH_ARTIFACT", "DELETE_ARTIFACT"],
        "targets": [{"type": "http", "address": address, "auth_header": SECRET,
                     "skip_cert_verify": False, "payload_format": "Default"}],
    }
    body.update(overrides)
    return body


def errors_of(response) -> tuple[int, str, str]:
    body = response.get_json()
    assert response.headers["Content-Type"].startswith("application/json")
    assert len(body["errors"]) == 1
    return response.status_code, body["errors"][0]["code"], body["errors"][0]["message"]


@pytest.fixture
def api(tmp_path):
    settings = Settings(database=f"sqlite:///{tmp_path / 'store.db'}", admin_password=PASSWORD,
                        webhook_job_http_client_timeout=2.0, hostname="registry.test:8080")
    app, runtime = create_app(settings, start=False)
    return Api(app.flask_app.test_client(), runtime)


def record_delivery(policy_id: int, name: str, target: dict, event_type="PUSH_ARTIFACT",
                    project="proj", tag="v1") -> None:
    payload = {"type": event_type, "occur_at": int(time.time()), "operator": "alice",
               "event_data": {"resources": [{"digest": "sha256:" + "a" * 64, "tag": tag,
                                             "resource_url": f"registry.test/{project}/app:{tag}"}],
                              "repository": {"name": "app", "namespace": project,
                                             "repo_full_name": f"{project}/app",
                                             "repo_type": "private"}}}
    queue.record_events([queue.NewEvent(
        type=event_type, occur_at=payload["occur_at"], operator="alice", project=project,
        repository=f"{project}/app", request_id="req-1", payload=payload,
        deliveries=(queue.NewDelivery(policy_id, name, target),),
    )], max_attempts=3)


def attempt(status: str, code: int | None, error: str = "", excerpt: str = "") -> None:
    """Claim the due delivery and record one attempt as the dispatcher would."""
    (delivery,) = queue.claim(1, 30)
    queue.finish(delivery, queue.Outcome(
        status=status, status_code=code, error=error, started_at=time.time(), duration_ms=12,
        response_excerpt=excerpt, retry_at=time.time() - 1 if status == PENDING else None))


# -- authentication ------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {},
    basic("admin", "wrong"),
    basic("root", PASSWORD),
    {"Authorization": "Basic not-base64!"},
    {"Authorization": f"Bearer {PASSWORD}"},
])
def test_requests_without_the_admin_password_get_401(api, headers):
    response = api.client.get(f"{BASE}/projects", headers=headers)
    assert errors_of(response) == (401, "UNAUTHORIZED", "unauthorized")
    response = api.client.post(f"{BASE}/projects/1/webhook/policies", json=policy_body(),
                               headers=headers)
    assert response.status_code == 401


def test_ping_needs_no_credentials(api):
    response = api.client.get(f"{BASE}/ping")
    assert (response.status_code, response.data) == (200, b"Pong")


def test_unknown_paths_and_methods_answer_in_harbors_error_shape(api):
    assert errors_of(api.call("GET", "/nothing/here")) == (
        404, "NOT_FOUND", "path /api/v2.0/nothing/here was not found")
    status, code, message = errors_of(api.call("PATCH", "/projects"))
    assert (status, code) == (405, "METHOD_NOT_ALLOWED")
    assert message.startswith("method PATCH is not allowed")


# -- projects ------------------------------------------------------------------------------

def test_projects_create_list_get_head_delete(api):
    response = api.call("POST", "/projects", {"project_name": "team-a",
                                              "metadata": {"public": "true"}})
    assert response.status_code == 201
    assert response.data == b""
    location = response.headers["Location"]
    project_id = int(location.rsplit("/", 1)[1])
    assert location == f"{BASE}/projects/{project_id}"

    assert errors_of(api.call("POST", "/projects", {"project_name": "team-a"})) == (
        409, "CONFLICT", "The project named team-a already exists")
    assert errors_of(api.call("POST", "/projects", {"project_name": "Team_A!"})) == (
        400, "BAD_REQUEST", "project name is not in lower case or contains illegal characters!")
    assert errors_of(api.call("POST", "/projects", {"metadata": {}}))[:2] == (
        422, "UNPROCESSABLE_ENTITY")

    listed = api.call("GET", "/projects")
    assert listed.status_code == 200
    assert listed.headers["X-Total-Count"] == "1"
    (project,) = listed.get_json()
    assert project["project_id"] == project_id
    assert project["name"] == "team-a"
    assert project["metadata"] == {"public": "true"}

    assert api.call("GET", f"/projects/{project_id}").get_json()["name"] == "team-a"
    assert api.call("GET", "/projects/team-a").get_json()["project_id"] == project_id
    assert api.call("HEAD", "/projects?project_name=team-a").status_code == 200
    assert api.call("HEAD", "/projects?project_name=other").status_code == 404

    assert errors_of(api.call("GET", "/projects/nope")) == (
        404, "NOT_FOUND", "project nope not found")
    assert errors_of(api.call("GET", "/projects/4242")) == (
        404, "NOT_FOUND", "project 4242 not found")

    assert api.call("DELETE", f"/projects/{project_id}").status_code == 200
    assert api.call("GET", "/projects/team-a").status_code == 404


def test_numeric_project_name_needs_x_is_resource_name(api):
    api.project("proj")
    numeric_id = api.project("2024")
    assert numeric_id != 2024
    by_name = api.call("GET", "/projects/2024", headers={"X-Is-Resource-Name": "true"})
    assert by_name.get_json()["project_id"] == numeric_id
    assert errors_of(api.call("GET", "/projects/2024")) == (
        404, "NOT_FOUND", "project 2024 not found")


# -- policies: create, get, list -----------------------------------------------------------

def test_create_answers_201_with_location_and_get_returns_harbors_shape(api):
    project_id = api.project()
    response = api.call("POST", "/projects/proj/webhook/policies", policy_body())
    assert response.status_code == 201
    assert response.data == b""
    location = response.headers["Location"]
    policy_id = int(location.rsplit("/", 1)[1])
    assert location == f"{BASE}/projects/proj/webhook/policies/{policy_id}"

    got = api.call("GET", f"/projects/{project_id}/webhook/policies/{policy_id}")
    assert got.status_code == 200
    policy = got.get_json()
    assert list(policy) == ["id", "name", "description", "project_id", "targets",
                            "event_types", "creator", "creation_time", "update_time", "enabled"]
    assert policy["id"] == policy_id
    assert policy["project_id"] == project_id
    assert policy["event_types"] == ["PUSH_ARTIFACT", "DELETE_ARTIFACT"]
    assert policy["enabled"] is True
    assert policy["creator"] == "admin"
    assert policy["targets"] == [{"type": "http", "address": "http://127.0.0.1:9/hook",
                                  "auth_header": "***", "skip_cert_verify": False,
                                  "payload_format": "Default"}]
    assert policy["creation_time"].endswith("Z") and len(policy["creation_time"]) == 24
    assert SECRET not in got.get_data(as_text=True)


def test_create_follows_harbor_defaults(api):
    api.project()
    body = policy_body()
    del body["enabled"]
    body["targets"] = [{"type": "http", "address": "https://ci.example.com/hook?x=1"}]
    response = api.call("POST", "/projects/proj/webhook/policies", body)
    policy_id = int(response.headers["Location"].rsplit("/", 1)[1])
    policy = api.call("GET", f"/projects/proj/webhook/policies/{policy_id}").get_json()
    assert policy["enabled"] is False  # Harbor: enabled omitted means disabled
    assert policy["targets"] == [{"type": "http", "address": "https://ci.example.com/hook?x=1",
                                  "skip_cert_verify": False, "payload_format": "Default"}]


def test_slack_target_has_no_payload_format(api):
    api.project()
    policy_id = api.policy(targets=[{"type": "slack",
                                     "address": "https://hooks.slack.com/services/T/B/X"}])
    (target,) = api.call("GET", f"/projects/proj/webhook/policies/{policy_id}").get_json()[
        "targets"]
    assert target == {"type": "slack", "address": "https://hooks.slack.com/services/T/B/X",
                      "skip_cert_verify": False}


def _with_target(**target) -> dict:
    return {"targets": [{"type": "http", "address": "http://127.0.0.1:9/hook", **target}]}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"event_types": []}, "empty event type"),
    ({"event_types": None}, "empty event type"),
    ({"event_types": ["PUSH_ARTIFACT", "PUSH_IMAGE"]}, "unsupported event type PUSH_IMAGE"),
    ({"targets": []}, "empty notification target with policy ci"),
    (_with_target(address=""), "empty URL"),
    (_with_target(address="   "), "empty URL"),
    (_with_target(address="ftp://ci.example.com/hook"), "invalid scheme: ftp"),
    (_with_target(type="teams"), "unsupported target type teams with policy ci"),
    ({"targets": [{"type": "slack", "address": "https://hooks.slack.com/x",
                   "payload_format": "Default"}]}, "set payload format is not allowed for slack"),
    (_with_target(payload_format="CDEvents"), "unsupported payload format type: CDEvents"),
    # Harbor checks event types before targets
    ({"event_types": [], "targets": []}, "empty event type"),
])
def test_validation_failures_are_400_with_harbors_messages(api, overrides, message):
    api.project()
    for method, path in (("POST", "/projects/proj/webhook/policies"),):
        response = api.call(method, path, policy_body(**overrides))
        assert errors_of(response) == (400, "BAD_REQUEST", message)
    policy_id = api.policy(name="existing")
    response = api.call("PUT", f"/projects/proj/webhook/policies/{policy_id}",
                        policy_body(**overrides))
    assert errors_of(response) == (400, "BAD_REQUEST", message)


def test_unparsable_address_reports_the_parse_error(api):
    api.project()
    response = api.call("POST", "/projects/proj/webhook/policies",
                        policy_body(**_with_target(address="http://a b/hook")))
    status, code, message = errors_of(response)
    assert (status, code) == (400, "BAD_REQUEST")
    assert message.startswith('parse "http://a b/hook"')


def test_malformed_or_missing_body_is_422(api):
    api.project()
    status, code, message = errors_of(api.call("POST", "/projects/proj/webhook/policies",
                                               raw=b"{not json"))
    assert (status, code) == (422, "UNPROCESSABLE_ENTITY")
    assert message.startswith('validation failure list:\nparsing policy body from "" failed')
    assert errors_of(api.call("POST", "/projects/proj/webhook/policies", raw=b"")) == (
        422, "UNPROCESSABLE_ENTITY", "validation failure list:\npolicy in body is required")


def test_duplicate_name_is_409(api):
    api.project()
    api.policy(name="ci")
    response = api.call("POST", "/projects/proj/webhook/policies", policy_body(name="ci"))
    assert errors_of(response) == (409, "CONFLICT", "notification policy named ci already exists")
    # the same name in another project is fine: names are unique per project
    api.project("other")
    assert api.call("POST", "/projects/other/webhook/policies",
                    policy_body(name="ci")).status_code == 201


def test_unknown_project_policy_or_foreign_policy_is_404(api):
    first = api.project("proj")
    second = api.project("other")
    policy_id = api.policy("proj")
    assert errors_of(api.call("GET", "/projects/proj/webhook/policies/999")) == (
        404, "NOT_FOUND", "notificationPolicy 999 not found")
    assert errors_of(api.call("GET", f"/projects/other/webhook/policies/{policy_id}")) == (
        404, "NOT_FOUND", f"project id:{second}, webhook policy id: {policy_id} not found")
    for method in ("PUT", "DELETE"):
        response = api.call(method, f"/projects/{second}/webhook/policies/{policy_id}",
                            policy_body())
        assert errors_of(response)[0] == 404
    assert errors_of(api.call("GET", "/projects/ghost/webhook/policies")) == (
        404, "NOT_FOUND", "project ghost not found")
    assert errors_of(api.call("POST", "/projects/ghost/webhook/policies", policy_body())) == (
        404, "NOT_FOUND", "project ghost not found")
    assert api.call("GET", f"/projects/{first}/webhook/policies/{policy_id}").status_code == 200


def test_list_paginates_with_total_count_and_link(api):
    api.project()
    for index in range(12):
        api.policy(name=f"hook-{index:02d}")
    response = api.call("GET", "/projects/proj/webhook/policies?page=2&page_size=5")
    assert response.status_code == 200
    assert response.headers["X-Total-Count"] == "12"
    names = [p["name"] for p in response.get_json()]
    assert names == ["hook-06", "hook-05", "hook-04", "hook-03", "hook-02"]  # newest first
    path = f"{BASE}/projects/proj/webhook/policies"
    assert response.headers["Link"] == (
        f'<{path}?page=1&page_size=5>; rel="prev" , <{path}?page=3&page_size=5>; rel="next"')
    last = api.call("GET", "/projects/proj/webhook/policies?page=3&page_size=5")
    assert [p["name"] for p in last.get_json()] == ["hook-01", "hook-00"]
    assert last.headers["Link"] == f'<{path}?page=2&page_size=5>; rel="prev"'
    default = api.call("GET", "/projects/proj/webhook/policies")
    assert len(default.get_json()) == 10
    assert "Link" in default.headers and 'rel="next"' in default.headers["Link"]

    by_name = api.call("GET", "/projects/proj/webhook/policies?sort=name&page_size=3")
    assert [p["name"] for p in by_name.get_json()] == ["hook-00", "hook-01", "hook-02"]
    fuzzy = api.call("GET", "/projects/proj/webhook/policies?q=name%3D~hook-1")
    assert sorted(p["name"] for p in fuzzy.get_json()) == ["hook-10", "hook-11"]
    assert fuzzy.headers["X-Total-Count"] == "2"
    exact = api.call("GET", "/projects/proj/webhook/policies?q=name%3Dhook-03")
    assert [p["name"] for p in exact.get_json()] == ["hook-03"]


@pytest.mark.parametrize(("query", "expected"), [
    ("page_size=101", (422, "UNPROCESSABLE_ENTITY",
                       "validation failure list:\npage_size in query should be less than or "
                       "equal to 100")),
    ("page=abc", (422, "UNPROCESSABLE_ENTITY",
                  'validation failure list:\npage in query must be of type int64: "abc"')),
    ("q=name", (400, "BAD_REQUEST",
                'the query string must contain "=" and the key/value cannot be empty')),
    ("q=name%3D%5Ba", (400, "BAD_REQUEST", "invalid query string value: [a")),
])
def test_bad_list_parameters(api, query, expected):
    api.project()
    assert errors_of(api.call("GET", f"/projects/proj/webhook/policies?{query}")) == expected


# -- update and delete ---------------------------------------------------------------------

def stored_targets(policy_id: int) -> list[dict]:
    return Policy.get_by_id(policy_id).targets


def test_put_replaces_the_policy_and_keeps_a_masked_secret(api):
    api.project()
    policy_id = api.policy()
    shown = api.call("GET", f"/projects/proj/webhook/policies/{policy_id}").get_json()
    shown["description"] = "changed"
    shown["event_types"] = ["PULL_ARTIFACT"]
    response = api.call("PUT", f"/projects/proj/webhook/policies/{policy_id}", shown)
    assert (response.status_code, response.data) == (200, b"")
    after = api.call("GET", f"/projects/proj/webhook/policies/{policy_id}").get_json()
    assert after["description"] == "changed"
    assert after["event_types"] == ["PULL_ARTIFACT"]
    assert after["creation_time"] == shown["creation_time"]
    assert stored_targets(policy_id)[0]["auth_header"] == SECRET  # "***" did not overwrite it

    shown["targets"][0]["auth_header"] = "Bearer rotated"
    api.call("PUT", f"/projects/proj/webhook/policies/{policy_id}", shown)
    assert stored_targets(policy_id)[0]["auth_header"] == "Bearer rotated"

    # PUT is a replacement, as in Harbor: a field left out takes its default
    body = policy_body(name="renamed")
    del body["description"]
    api.call("PUT", f"/projects/proj/webhook/policies/{policy_id}", body)
    after = api.call("GET", f"/projects/proj/webhook/policies/{policy_id}").get_json()
    assert (after["name"], after["description"]) == ("renamed", "")


def test_rename_onto_an_existing_name_is_409(api):
    api.project()
    api.policy(name="first")
    second = api.policy(name="second")
    response = api.call("PUT", f"/projects/proj/webhook/policies/{second}",
                        policy_body(name="first"))
    assert errors_of(response) == (409, "CONFLICT",
                                   "notification policy named first already exists")


def test_delete_removes_the_policy_and_its_unsent_deliveries(api):
    api.project()
    policy_id = api.policy()
    target = stored_targets(policy_id)[0]
    record_delivery(policy_id, "ci", target, tag="sent")
    attempt(DELIVERED, 200)
    record_delivery(policy_id, "ci", target, tag="waiting")
    response = api.call("DELETE", f"/projects/proj/webhook/policies/{policy_id}")
    assert (response.status_code, response.data) == (200, b"")
    assert api.call("GET", f"/projects/proj/webhook/policies/{policy_id}").status_code == 404
    assert queue.claim(10, 30) == []  # nothing left to send for a deleted policy
    assert queue.counts()[DELIVERED] == 1  # history stays
    assert errors_of(api.call("DELETE", f"/projects/proj/webhook/policies/{policy_id}")) == (
        404, "NOT_FOUND", f"notificationPolicy {policy_id} not found")


RULES = """
projects:
  - name: ruled
    webhooks:
      - name: from-file
        enabled: true
        event_types: [PUSH_ARTIFACT]
        targets:
          - type: http
            address: http://127.0.0.1:9/hook
            auth_header: Bearer file-secret
"""


def test_rules_file_policies_are_read_only(api):
    policy_store.sync_rules(parse_rules(RULES, "rules.yaml", {}))
    listed = api.call("GET", "/projects/ruled/webhook/policies")
    (policy,) = listed.get_json()
    assert policy["name"] == "from-file"
    assert policy["targets"][0]["auth_header"] == "***"
    assert "file-secret" not in listed.get_data(as_text=True)
    path = f"/projects/ruled/webhook/policies/{policy['id']}"
    for method in ("PUT", "DELETE"):
        status, code, message = errors_of(api.call(method, path, policy_body(name="from-file")))
        assert (status, code) == (403, "FORBIDDEN")
        assert "managed by the rules file" in message
    assert api.call("GET", path).get_json()["enabled"] is True
    # a rules-file project cannot be deleted through the API either
    assert errors_of(api.call("DELETE", "/projects/ruled"))[0] == 403
    # an API policy next to it is writable
    assert api.call("POST", "/projects/ruled/webhook/policies",
                    policy_body(name="from-api")).status_code == 201
    assert errors_of(api.call("POST", "/projects/ruled/webhook/policies",
                              policy_body(name="from-file")))[0] == 409


# -- events, lasttrigger, executions, tasks, log -------------------------------------------

def test_supported_event_types(api):
    api.project()
    body = api.call("GET", "/projects/proj/webhook/events").get_json()
    assert body["event_type"][:3] == ["PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT"]
    assert "SCANNING_COMPLETED" in body["event_type"]
    assert body["notify_type"] == ["http", "slack"]
    assert body["payload_formats"] == [{"notify_type": "http",
                                        "formats": ["Default", "CloudEvents"]}]


def test_lasttrigger_per_policy_and_event_type(api):
    api.project()
    policy_id = api.policy()
    before = api.call("GET", "/projects/proj/webhook/lasttrigger").get_json()
    assert [(t["policy_name"], t["event_type"], t["last_trigger_time"]) for t in before] == [
        ("ci", "PUSH_ARTIFACT", "0001-01-01T00:00:00.000Z"),
        ("ci", "DELETE_ARTIFACT", "0001-01-01T00:00:00.000Z"),
    ]
    record_delivery(policy_id, "ci", stored_targets(policy_id)[0])
    after = api.call("GET", "/projects/proj/webhook/lasttrigger").get_json()
    push, delete = after
    assert push["event_type"] == "PUSH_ARTIFACT"
    assert push["last_trigger_time"].startswith(time.strftime("%Y-", time.gmtime()))
    assert push["enabled"] is True and push["creation_time"] == before[0]["creation_time"]
    assert delete["last_trigger_time"] == "0001-01-01T00:00:00.000Z"


def test_executions_tasks_and_log_map_deliveries_and_attempts(api):
    api.project()
    policy_id = api.policy()
    target = stored_targets(policy_id)[0]
    record_delivery(policy_id, "ci", target)
    attempt(PENDING, 503, "HTTP 503", excerpt="try later")
    attempt(DELIVERED, 200)

    listed = api.call("GET", f"/projects/proj/webhook/policies/{policy_id}/executions")
    assert listed.status_code == 200
    assert listed.headers["X-Total-Count"] == "1"
    (execution,) = listed.get_json()
    assert execution["vendor_type"] == "WEBHOOK"
    assert execution["vendor_id"] == policy_id
    assert execution["status"] == "Success"
    assert execution["trigger"] == "EVENT"
    assert execution["metrics"]["task_count"] == 1
    assert execution["metrics"]["success_task_count"] == 1
    assert execution["extra_attrs"]["event_type"] == "PUSH_ARTIFACT"
    sent = json.loads(execution["extra_attrs"]["payload"])
    assert sent["type"] == "PUSH_ARTIFACT" and sent["operator"] == "alice"
    assert execution["start_time"].endswith("Z") and len(execution["start_time"]) == 20
    assert execution["end_time"] != "0001-01-01T00:00:00Z"

    base = f"/projects/proj/webhook/policies/{policy_id}/executions/{execution['id']}"
    tasks = api.call("GET", f"{base}/tasks")
    assert tasks.headers["X-Total-Count"] == "1"
    (task,) = tasks.get_json()
    assert task["execution_id"] == execution["id"]
    assert task["status"] == "Success"
    assert task["run_count"] == 2

    log = api.call("GET", f"{base}/tasks/{task['id']}/log")
    assert log.status_code == 200
    assert log.headers["Content-Type"].startswith("text/plain")
    text = log.get_data(as_text=True)
    assert text.count("start to run webhook job") == 2
    assert "send request to remote endpoint, body: {" in text
    assert "exit webhook job, error: abnormal response code: 503, body: try later" in text
    assert "success to run webhook job" in text
    for response in (listed, tasks, log):
        assert "very-secret-token" not in response.get_data(as_text=True)


def test_execution_status_while_pending_and_after_failure(api):
    api.project()
    policy_id = api.policy()
    target = stored_targets(policy_id)[0]
    record_delivery(policy_id, "ci", target)
    path = f"/projects/proj/webhook/policies/{policy_id}/executions"
    (pending,) = api.call("GET", path).get_json()
    assert pending["status"] == "Pending"
    assert pending["end_time"] == "0001-01-01T00:00:00Z"
    attempt("failed", None, "connection failed: [Errno 111] Connection refused")
    (failed,) = api.call("GET", path).get_json()
    assert failed["status"] == "Error"
    assert "Connection refused" in failed["status_message"]
    assert api.call("GET", f"{path}?q=status%3DError").headers["X-Total-Count"] == "1"
    assert api.call("GET", f"{path}?q=status%3DSuccess").headers["X-Total-Count"] == "0"


def test_execution_and_task_404s(api):
    api.project()
    first = api.policy(name="first")
    second = api.policy(name="second")
    record_delivery(first, "first", stored_targets(first)[0])
    (execution,) = api.call("GET", f"/projects/proj/webhook/policies/{first}/executions"
                            ).get_json()
    eid = execution["id"]
    assert errors_of(api.call(
        "GET", f"/projects/proj/webhook/policies/{second}/executions/{eid}/tasks")) == (
        404, "NOT_FOUND", f"execution {eid} not found in policy {second}")
    assert errors_of(api.call(
        "GET", f"/projects/proj/webhook/policies/{first}/executions/999/tasks")) == (
        404, "NOT_FOUND", "execution 999 not found")
    record_delivery(first, "first", stored_targets(first)[0], tag="v2")
    other = eid + 1
    assert errors_of(api.call(
        "GET", f"/projects/proj/webhook/policies/{first}/executions/{eid}/tasks/{other}/log")) \
        == (404, "NOT_FOUND", f"task {other} not found in execution {eid}")
    assert errors_of(api.call(
        "GET", f"/projects/proj/webhook/policies/{first}/executions/{eid}/tasks/999/log")) == (
        404, "NOT_FOUND", "task 999 not found")
    assert errors_of(api.call(
        "GET", "/projects/proj/webhook/policies/999/executions")) == (
        404, "NOT_FOUND", "notificationPolicy 999 not found")


# -- configurations ------------------------------------------------------------------------

def test_notification_enable_switch(api):
    shown = api.call("GET", "/configurations")
    assert shown.get_json() == {"notification_enable": {"value": True, "editable": True}}
    response = api.call("PUT", "/configurations", {"notification_enable": False})
    assert (response.status_code, response.data) == (200, b"")
    assert api.call("GET", "/configurations").get_json()["notification_enable"]["value"] is False
    assert api.runtime.notifications_enabled() is False  # what the recorder consults
    api.call("PUT", "/configurations", {"notification_enable": "true"})
    assert api.runtime.notifications_enabled() is True

    assert errors_of(api.call("PUT", "/configurations", {"notification_enable": "maybe"}))[:2] \
        == (400, "BAD_REQUEST")
    status, code, message = errors_of(api.call("PUT", "/configurations",
                                               {"project_creation_restriction": "adminonly"}))
    assert (status, code) == (400, "BAD_REQUEST")
    assert "project_creation_restriction" in message
    assert api.runtime.notifications_enabled() is True


def test_harbor_yml_default_applies_until_the_api_sets_it(tmp_path):
    settings = Settings(database=f"sqlite:///{tmp_path / 's.db'}", admin_password=PASSWORD,
                        notification_enable=False)
    app, runtime = create_app(settings, start=False)
    client = Api(app.flask_app.test_client(), runtime)
    assert client.call("GET", "/configurations").get_json()["notification_enable"]["value"] \
        is False
    client.call("PUT", "/configurations", {"notification_enable": True})
    assert runtime.notifications_enabled() is True


# -- test endpoint -------------------------------------------------------------------------

def test_test_endpoint_sends_a_sample_event_with_auth(api, receiver):
    api.project()
    body = policy_body(address=receiver.url)
    response = api.call("POST", "/projects/proj/webhook/policies/test", body)
    assert response.status_code == 200, response.data
    (result,) = response.get_json()["results"]
    assert result["ok"] is True
    assert result["status_code"] == 200
    assert result["latency_ms"] >= 0
    assert result["address"] == receiver.url
    assert "very-secret-token" not in response.get_data(as_text=True)
    (sent,) = receiver.wait_for(1)
    assert sent.headers["authorization"] == SECRET
    assert sent.headers["content-type"] == "application/json"
    event = sent.json()
    assert event["type"] == "PUSH_ARTIFACT"
    assert event["event_data"]["repository"]["repo_full_name"] == "proj/hello-world"
    assert event["event_data"]["resources"][0]["resource_url"] == \
        "registry.test:8080/proj/hello-world:latest"
    assert event["event_data"]["custom_attributes"]["test"] == "true"


def test_test_endpoint_reports_failure_as_harbor_did(api, receiver_factory):
    api.project()
    failing = receiver_factory([Reply(status=500, body=b"internal details")])
    response = api.call("POST", "/projects/proj/webhook/policies/test",
                        policy_body(address=failing.url))
    assert errors_of(response) == (400, "BAD_REQUEST", "notification policy ci test failed")
    (result,) = response.get_json()["results"]
    assert (result["ok"], result["status_code"]) == (False, 500)
    assert "internal details" not in response.get_data(as_text=True)  # the body stays there


def test_test_endpoint_validates_targets_as_create(api):
    api.project()
    response = api.call("POST", "/projects/proj/webhook/policies/test",
                        {"targets": [{"type": "http", "address": "ftp://x/hook"}]})
    assert errors_of(response) == (400, "BAD_REQUEST", "invalid scheme: ftp")
    response = api.call("POST", "/projects/proj/webhook/policies/test",
                        {"name": "x", "targets": []})
    assert errors_of(response) == (400, "BAD_REQUEST", "empty notification target with policy x")
    response = api.call("POST", "/projects/ghost/webhook/policies/test",
                        {"targets": [{"type": "http", "address": "http://127.0.0.1:9/"}]})
    assert errors_of(response)[0] == 404


def test_test_endpoint_follows_no_redirect_to_another_host(api, receiver_factory):
    api.project()
    elsewhere = receiver_factory()
    redirecting = receiver_factory(
        [Reply(status=307, headers={"Location": elsewhere.url.replace("127.0.0.1",
                                                                      "localhost")})])
    response = api.call("POST", "/projects/proj/webhook/policies/test",
                        policy_body(address=redirecting.url))
    (result,) = response.get_json()["results"]
    assert (result["ok"], result["status_code"]) == (False, 307)
    assert "not followed" in result["error"]
    redirecting.wait_for(1)
    assert elsewhere.requests == []


def test_test_endpoint_follows_a_same_host_307(api, receiver_factory):
    api.project()

    def script(request):
        if request.path == "/hook":
            return Reply(status=307, headers={"Location": "/moved"})
        return Reply(status=204)

    receiver = receiver_factory(script)
    response = api.call("POST", "/projects/proj/webhook/policies/test",
                        policy_body(address=receiver.url))
    assert response.status_code == 200, response.data
    assert response.get_json()["results"][0]["status_code"] == 204
    first, second = receiver.wait_for(2)
    assert second.path == "/moved"
    assert second.body == first.body
    assert second.headers["authorization"] == SECRET


def test_request_id_is_echoed_or_generated(api):
    echoed = api.call("GET", "/projects", headers={"X-Request-Id": "req-4711"})
    assert echoed.headers["X-Request-Id"] == "req-4711"
    generated = api.client.get(f"{BASE}/projects")  # even on a 401
    assert generated.status_code == 401
    assert len(generated.headers["X-Request-Id"]) == 36


def test_beyond_harbor_fields_round_trip_through_the_api(api):
    api.project()
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    policy_id = api.policy(
        filters={"repositories": ["app-*"], "ignore_operators": ["robot$scanner"]},
        pull_dedup_seconds=60,
        targets=[{"type": "http", "address": "http://127.0.0.1:9/hook", "secret": secret,
                  "payload_format": "CloudEvents", "cloudevents_mode": "binary"}],
    )
    shown = api.call("GET", f"/projects/proj/webhook/policies/{policy_id}").get_json()
    assert shown["filters"] == {"repositories": ["app-*"], "ignore_operators": ["robot$scanner"]}
    assert shown["pull_dedup_seconds"] == 60
    assert shown["targets"][0]["secret"] == "***"
    assert shown["targets"][0]["cloudevents_mode"] == "binary"
    assert secret not in json.dumps(shown)
    api.call("PUT", f"/projects/proj/webhook/policies/{policy_id}", shown)
    assert stored_targets(policy_id)[0]["secret"] == secret  # the masked value kept it
    response = api.call("POST", "/projects/proj/webhook/policies",
                        policy_body(name="typo", filters={"repository": ["x"]}))
    status, code, message = errors_of(response)
    assert (status, code) == (400, "BAD_REQUEST")
    assert "unknown key 'repository' in filters" in message


@pytest.mark.postgres
def test_store_paths_on_postgresql():
    """The same conflicts, lookups and history queries on the shared-database backend."""
    reason = postgres.unreachable_reason()
    if reason:
        pytest.skip(reason)
    url = postgres.create_database()
    try:
        app, runtime = create_app(Settings(database=url, admin_password=PASSWORD), start=False)
        api = Api(app.flask_app.test_client(), runtime)
        api.project()
        assert errors_of(api.call("POST", "/projects", {"project_name": "proj"}))[0] == 409
        first = api.policy(name="first")
        second = api.policy(name="second")
        assert errors_of(api.call("POST", "/projects/proj/webhook/policies",
                                  policy_body(name="first")))[0] == 409
        assert errors_of(api.call("PUT", f"/projects/proj/webhook/policies/{second}",
                                  policy_body(name="first")))[0] == 409
        record_delivery(first, "first", stored_targets(first)[0])
        attempt(DELIVERED, 200)
        (execution,) = api.call("GET", f"/projects/proj/webhook/policies/{first}/executions"
                                ).get_json()
        assert execution["status"] == "Success"
        triggers = api.call("GET", "/projects/proj/webhook/lasttrigger").get_json()
        assert {t["policy_name"] for t in triggers
                if not t["last_trigger_time"].startswith("0001")} == {"first"}
        assert api.call("GET", "/projects?name=pro").headers["X-Total-Count"] == "1"
    finally:
        from sidecar.store.models import database

        database.close()
        postgres.drop_database(url)
