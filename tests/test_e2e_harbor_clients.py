"""Harbor's own Python API clients against `sidecar serve`, their model validation on:
harborapi (async, pydantic models) and harbor-api-client (generated from Harbor's swagger).

Each drives the project and webhook policy API as a script would: create a project and read
it back by the Location it got, list with boolean filters, create, read, change and delete a
policy, ask for supported events, last triggers and the deprecated webhook jobs.
"""

from __future__ import annotations

import asyncio

import pytest

harborapi = pytest.importorskip("harborapi")
harbor_client = pytest.importorskip("harbor_client")

from harborapi import HarborAsyncClient  # noqa: E402
from harborapi.models import ProjectReq  # noqa: E402
from harborapi.models import WebhookPolicy  # noqa: E402
from harborapi.models import WebhookTargetObject  # noqa: E402

pytestmark = pytest.mark.e2e

PASSWORD = "clients-Admin-pw"
AUTH = "Bearer clients-token-77"


def test_harborapi_drives_projects_and_policies(sidecar_factory, receiver):
    sidecar = sidecar_factory(config={"harbor_admin_password": PASSWORD})

    async def script():
        client = HarborAsyncClient(url=f"{sidecar.url}/api/v2.0", username="admin",
                                   secret=PASSWORD, validate=True)
        location = await client.create_project(ProjectReq(project_name="team-a",
                                                          metadata={"public": "true"}))
        assert location == "/api/v2.0/projects/team-a"  # it sends X-Resource-Name-In-Location
        project = await client.get_project(location.rsplit("/", 1)[1])
        assert project.name == "team-a" and project.metadata.public == "true"
        assert await client.project_exists("team-a")
        assert [p.name for p in await client.get_projects(public=True)] == ["team-a"]
        assert await client.get_projects(public=False) == []

        target = WebhookTargetObject(type="http", address=receiver.url, auth_header=AUTH,
                                     skip_cert_verify=False, payload_format="CloudEvents")
        policy_location = await client.create_webhook_policy("team-a", WebhookPolicy(
            name="ci", description="tell CI", enabled=True,
            event_types=["PUSH_ARTIFACT", "DELETE_ARTIFACT"], targets=[target]))
        policy_id = int(policy_location.rsplit("/", 1)[1])
        policy = await client.get_webhook_policy("team-a", policy_id)
        assert policy.targets[0].auth_header == "***"  # never answered in clear
        assert policy.targets[0].payload_format.root == "CloudEvents"
        policy.description = "tell CI, changed"
        await client.update_webhook_policy("team-a", policy_id, policy)
        [listed] = await client.get_webhook_policies("team-a")
        assert listed.description == "tell CI, changed"

        events = await client.get_webhook_supported_events("team-a")
        assert "PUSH_ARTIFACT" in [e.root for e in events.event_type]
        assert [n.root for n in events.notify_type] == ["http", "slack"]
        triggers = await client.get_webhook_policy_last_trigger("team-a")
        assert {t.event_type for t in triggers} == {"PUSH_ARTIFACT", "DELETE_ARTIFACT"}
        assert await client.get_webhook_jobs("team-a", policy_id=policy_id) == []

        await client.delete_webhook_policy("team-a", policy_id)
        await client.delete_project("team-a")
        assert not await client.project_exists("team-a")

    asyncio.run(script())


def test_generated_client_drives_projects_and_policies(sidecar_factory, receiver):
    sidecar = sidecar_factory(config={"harbor_admin_password": PASSWORD})
    config = harbor_client.Configuration()
    config.host = f"{sidecar.url}/api/v2.0"
    config.username, config.password = "admin", PASSWORD
    config.client_side_validation = True
    api = harbor_client.ApiClient(config)
    projects = harbor_client.ProjectApi(api)
    webhooks = harbor_client.WebhookApi(api)
    jobs = harbor_client.WebhookjobApi(api)

    projects.create_project(harbor_client.ProjectReq(project_name="gen",
                                                     metadata={"public": "false"}))
    # the generated client writes booleans as Python does: public=False, with_detail=True
    listed = projects.list_projects(public=False, with_detail=True)
    assert [p.name for p in listed] == ["gen"]
    assert projects.list_projects(public=True) == []
    project = projects.get_project("gen", x_is_resource_name=True)
    assert project.name == "gen"

    target = harbor_client.WebhookTargetObject(type="slack", address=receiver.url,
                                               skip_cert_verify=False)
    _, status, headers = webhooks.create_webhook_policy_of_project_with_http_info(
        "gen", harbor_client.WebhookPolicy(name="chat", enabled=True,
                                           event_types=["PUSH_ARTIFACT"], targets=[target]))
    assert status == 201
    policy_id = int(headers["Location"].rsplit("/", 1)[1])
    policy = webhooks.get_webhook_policy_of_project("gen", policy_id)
    assert policy.targets[0].type == "slack" and policy.enabled is True
    [listed_policy] = webhooks.list_webhook_policies_of_project("gen")
    assert listed_policy.id == policy_id
    supported = webhooks.get_supported_event_types("gen")
    assert supported.payload_formats[0].formats == ["Default", "CloudEvents"]
    assert [t.event_type for t in webhooks.last_trigger("gen")] == ["PUSH_ARTIFACT"]
    assert webhooks.list_executions_of_webhook_policy("gen", policy_id) == []
    assert jobs.list_webhook_jobs("gen", policy_id, status=["Success"]) == []
    webhooks.delete_webhook_policy_of_project("gen", policy_id)
    projects.delete_project("gen")
