"""What Harbor's own API clients (harborapi, the swagger-generated harbor-api-client) send and
expect, beyond the webhook policy API itself: Location by name, the deprecated webhook jobs
list, and booleans in query strings and headers read as Go's strconv.ParseBool reads them.

Flask's test client against a real SQLite store, as in test_api_webhooks.
"""

from __future__ import annotations

import json

import pytest

from sidecar.store.models import DELIVERED
from tests.test_api_webhooks import BASE
from tests.test_api_webhooks import api  # noqa: F401  (the fixture)
from tests.test_api_webhooks import attempt
from tests.test_api_webhooks import errors_of
from tests.test_api_webhooks import record_delivery
from tests.test_api_webhooks import stored_targets

# -- X-Resource-Name-In-Location -----------------------------------------------------------


@pytest.mark.parametrize("flag, ends_with", [
    ("true", "/projects/by-name"), ("True", "/projects/by-name"), ("1", "/projects/by-name"),
    ("false", None), (None, None),
])
def test_project_location_names_the_project_when_asked(api, flag, ends_with):  # noqa: F811
    headers = {"X-Resource-Name-In-Location": flag} if flag is not None else {}
    response = api.call("POST", "/projects", {"project_name": "by-name"}, headers=headers)
    assert response.status_code == 201
    location = response.headers["Location"]
    if ends_with is None:  # Harbor's default: the id
        project_id = api.call("GET", "/projects/by-name").get_json()["project_id"]
        assert location == f"{BASE}/projects/{project_id}"
    else:
        assert location == f"{BASE}{ends_with}"
        assert api.call("GET", location.removeprefix(BASE)).status_code == 200


def test_a_location_by_name_reads_back_the_project(api):  # noqa: F811
    response = api.call("POST", "/projects", {"project_name": "scripted"},
                        headers={"X-Resource-Name-In-Location": "true"})
    path = response.headers["Location"].removeprefix(BASE)
    assert api.call("GET", path).get_json()["name"] == "scripted"


def test_policy_location_stays_an_id_as_in_harbors_swagger(api):  # noqa: F811
    api.project()
    response = api.call("POST", "/projects/proj/webhook/policies",
                        {"name": "ci", "event_types": ["PUSH_ARTIFACT"],
                         "targets": [{"address": "http://127.0.0.1:9/h"}]},
                        headers={"X-Resource-Name-In-Location": "true"})
    assert response.headers["Location"].rsplit("/", 1)[1].isdigit()


# -- booleans ------------------------------------------------------------------------------

@pytest.mark.parametrize("value, names", [
    ("true", ["pub"]), ("True", ["pub"]), ("TRUE", ["pub"]), ("t", ["pub"]), ("1", ["pub"]),
    ("false", ["priv"]), ("False", ["priv"]), ("F", ["priv"]), ("0", ["priv"]),
    ("", ["priv", "pub"]),
])
def test_public_filter_reads_booleans_as_go_does(api, value, names):  # noqa: F811
    api.project("pub", public=True)
    api.project("priv", public=False)
    listed = api.call("GET", f"/projects?public={value}&with_detail=True")
    assert listed.status_code == 200
    assert [p["name"] for p in listed.get_json()] == names
    assert listed.headers["X-Total-Count"] == str(len(names))


@pytest.mark.parametrize("query", ["public=yes", "with_detail=on", "public=tRue"])
def test_a_boolean_strconv_refuses_is_a_422(api, query):  # noqa: F811
    name, _, raw = query.partition("=")
    assert errors_of(api.call("GET", f"/projects?{query}")) == (
        422, "UNPROCESSABLE_ENTITY",
        f'validation failure list:\n{name} in query must be of type bool: "{raw}"')


def test_is_resource_name_header_reads_booleans_as_go_does(api):  # noqa: F811
    numeric_id = api.project("2024")
    for flag in ("true", "True", "1", "t"):
        found = api.call("GET", "/projects/2024", headers={"X-Is-Resource-Name": flag})
        assert found.get_json()["project_id"] == numeric_id
    assert api.call("GET", "/projects/2024", headers={"X-Is-Resource-Name": "0"}).status_code \
        == 404
    assert errors_of(api.call("GET", "/projects/2024", headers={"X-Is-Resource-Name": "yes"}))[
        :2] == (422, "UNPROCESSABLE_ENTITY")


def test_policy_q_enabled_reads_booleans_as_go_does(api):  # noqa: F811
    api.project()
    api.policy(name="on", enabled=True)
    api.policy(name="off", enabled=False)
    for value, expected in (("True", ["on"]), ("1", ["on"]), ("false", ["off"])):
        listed = api.call("GET", f"/projects/proj/webhook/policies?q=enabled%3D{value}")
        assert [p["name"] for p in listed.get_json()] == expected


# -- GET /projects/{p}/webhook/jobs (deprecated, still in Harbor's swagger) -----------------

def test_webhook_jobs_are_the_policys_deliveries(api):  # noqa: F811
    api.project()
    policy_id = api.policy()
    other = api.policy(name="other")
    for tag in ("v1", "v2", "v3"):
        record_delivery(policy_id, "ci", stored_targets(policy_id)[0], tag=tag)
    record_delivery(other, "other", stored_targets(other)[0])
    attempt(DELIVERED, 200)  # the oldest (v1) is claimed first

    listed = api.call("GET", f"/projects/proj/webhook/jobs?policy_id={policy_id}")
    assert listed.status_code == 200
    assert listed.headers["X-Total-Count"] == "3"
    jobs = listed.get_json()
    assert [set(job) for job in jobs] == [{
        "id", "policy_id", "event_type", "notify_type", "status", "job_detail",
        "creation_time", "update_time"}] * 3
    newest, _, oldest = jobs
    assert newest["policy_id"] == policy_id and newest["notify_type"] == "http"
    assert (newest["status"], oldest["status"]) == ("Pending", "Success")
    assert newest["event_type"] == "PUSH_ARTIFACT"
    assert json.loads(oldest["job_detail"])["event_data"]["resources"][0]["tag"] == "v1"
    assert newest["creation_time"].endswith("Z") and len(newest["creation_time"]) == 24
    assert "very-secret-token" not in listed.get_data(as_text=True)

    only_done = api.call("GET", f"/projects/proj/webhook/jobs?policy_id={policy_id}"
                                "&status=Success")
    assert [job["id"] for job in only_done.get_json()] == [oldest["id"]]
    both = api.call("GET", f"/projects/proj/webhook/jobs?policy_id={policy_id}"
                           "&status=Success&status=Pending")
    assert both.headers["X-Total-Count"] == "3"
    paged = api.call("GET", f"/projects/proj/webhook/jobs?policy_id={policy_id}"
                            "&page=1&page_size=2")
    assert len(paged.get_json()) == 2 and 'rel="next"' in paged.headers["Link"]


def test_webhook_jobs_need_a_policy_of_this_project(api):  # noqa: F811
    api.project()
    api.project("elsewhere")
    policy_id = api.policy(project="elsewhere")
    assert errors_of(api.call("GET", "/projects/proj/webhook/jobs")) == (
        422, "UNPROCESSABLE_ENTITY", "validation failure list:\npolicy_id in query is required")
    assert errors_of(api.call("GET", "/projects/proj/webhook/jobs?policy_id=x"))[:2] == (
        422, "UNPROCESSABLE_ENTITY")
    assert errors_of(api.call("GET", f"/projects/proj/webhook/jobs?policy_id={policy_id}"))[
        :2] == (404, "NOT_FOUND")
    assert errors_of(api.call("GET", "/projects/proj/webhook/jobs?policy_id=999"))[:2] == (
        404, "NOT_FOUND")
