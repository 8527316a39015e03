"""Tables of replication: registry endpoints, policies, and which policy each execution runs.

Registries and policies come from the rules file (synced by name, so their ids are stable
across reloads and restarts, as the API's ids must be). An execution is a job (kind
"replication") whose tasks are jobs too (parent = the execution); `ReplicationExecution`
keeps what the API filters executions by, keyed by the execution job's id.
"""

from __future__ import annotations

import json
from typing import Any

from peewee import BooleanField
from peewee import CharField
from peewee import DoubleField
from peewee import IntegerField
from peewee import Model
from peewee import TextField

from sidecar.store.models import BaseModel
from sidecar.store.models import database


class ReplicationRegistry(BaseModel):
    """Harbor's Registry object. `access_secret` is stored like a webhook's auth_header and,
    like it, never shown (API answers mask it, status and logs never read it)."""

    name = CharField(unique=True, max_length=64)
    type = CharField(max_length=32)
    url = CharField(max_length=1024)
    description = TextField(default="")
    credential_type = CharField(default="", max_length=16)
    access_key = CharField(default="", max_length=255)
    access_secret = TextField(default="")
    insecure = BooleanField(default=False)
    ca_certificate = TextField(default="")
    source = CharField(default="rules", max_length=16)
    created_at = DoubleField()
    updated_at = DoubleField()

    class Meta:
        table_name = "replication_registry"


class ReplicationPolicy(BaseModel):
    """Harbor's ReplicationPolicy (push mode: the source is always the local side)."""

    name = CharField(unique=True, max_length=256)
    description = TextField(default="")
    enabled = BooleanField(default=True)
    registry = IntegerField(index=True)  # ReplicationRegistry.id (the destination)
    dest_namespace = CharField(default="", max_length=255)
    dest_namespace_replace_count = IntegerField(default=-1)
    trigger = CharField(default="manual", max_length=16)
    cron = CharField(default="", max_length=128)
    filters_json = TextField(default="[]")
    replicate_deletion = BooleanField(default=False)
    override = BooleanField(default=True)
    speed = IntegerField(default=0)
    copy_by_chunk = BooleanField(default=False)
    single_active_replication = BooleanField(default=False)
    source = CharField(default="rules", max_length=16)
    creator = CharField(default="", max_length=256)
    created_at = DoubleField()
    updated_at = DoubleField()

    class Meta:
        table_name = "replication_policy"

    @property
    def filters(self) -> list[dict[str, Any]]:
        return json.loads(self.filters_json or "[]")


class ReplicationExecution(Model):
    """An execution's policy and trigger; `id` is the execution job's id."""

    id = IntegerField(primary_key=True)
    policy = IntegerField(index=True)
    policy_name = CharField(default="", max_length=256)
    trigger = CharField(max_length=16)  # MANUAL, SCHEDULE, EVENT
    created_at = DoubleField(index=True)

    class Meta:
        database = database
        table_name = "replication_execution"


REPLICATION_MODELS = (ReplicationRegistry, ReplicationPolicy, ReplicationExecution)
