"""Tables. Harbor's executions and tasks map onto deliveries and attempts.

Policies keep their event types and targets as JSON text, as Harbor's notification_policy does,
so the REST API can return them field for field.
"""

from __future__ import annotations

import json
from typing import Any

from peewee import BooleanField
from peewee import CharField
from peewee import DatabaseProxy
from peewee import DoubleField
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import Model
from peewee import TextField

database = DatabaseProxy()


class BaseModel(Model):
    class Meta:
        database = database


class SchemaVersion(BaseModel):
    version = IntegerField()


class Project(BaseModel):
    name = CharField(unique=True, max_length=255)
    public = BooleanField(default=False)
    source = CharField(default="rules", max_length=16)  # "rules" or "api"
    created_at = DoubleField()


class Policy(BaseModel):
    project = ForeignKeyField(Project, backref="policies", on_delete="CASCADE")
    name = CharField(max_length=256)
    description = TextField(default="")
    enabled = BooleanField(default=True)
    event_types_json = TextField(default="[]")
    targets_json = TextField(default="[]")
    #: Beyond Harbor: {"filters": {...}, "pull_dedup_seconds": N} (rules.policy.Policy.options)
    options_json = TextField(default="{}")
    source = CharField(default="rules", max_length=16)
    creator = CharField(default="", max_length=256)
    created_at = DoubleField()
    updated_at = DoubleField()

    class Meta:
        indexes = ((("project", "name"), True),)

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(json.loads(self.event_types_json))

    @property
    def targets(self) -> list[dict[str, Any]]:
        return json.loads(self.targets_json)

    @property
    def options(self) -> dict[str, Any]:
        return json.loads(self.options_json or "{}")


class Repository(BaseModel):
    """First time the sidecar saw a repository: Harbor's `date_created`."""

    name = CharField(unique=True, max_length=512)
    created_at = IntegerField()


class Event(BaseModel):
    type = CharField(max_length=32, index=True)
    occur_at = IntegerField()
    operator = CharField(default="", max_length=256)
    project = CharField(default="", max_length=255, index=True)
    repository = CharField(default="", max_length=512)
    request_id = CharField(default="", max_length=128)
    payload_json = TextField()  # the Harbor Default payload; other formats derive from it
    created_at = DoubleField()

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.payload_json)


PENDING = "pending"
SENDING = "sending"
DELIVERED = "delivered"
FAILED = "failed"
STATUSES = (PENDING, SENDING, DELIVERED, FAILED)


class Delivery(BaseModel):
    """One (event x policy x target): Harbor's execution+task, our unit of retry."""

    uid = CharField(unique=True, max_length=64)  # stable across retries, for de-duplication
    event = ForeignKeyField(Event, backref="deliveries", on_delete="CASCADE")
    policy = ForeignKeyField(Policy, null=True, backref="deliveries", on_delete="SET NULL")
    policy_name = CharField(default="", max_length=256)
    project = CharField(default="", max_length=255)
    event_type = CharField(max_length=32)
    target_json = TextField()  # snapshot: a later policy edit does not change a queued send
    status = CharField(default=PENDING, max_length=16, index=True)
    attempts = IntegerField(default=0)
    max_attempts = IntegerField(default=3)
    next_attempt_at = DoubleField(index=True)
    lease_until = DoubleField(null=True)
    claim_token = CharField(null=True, max_length=64, index=True)
    last_status_code = IntegerField(null=True)
    last_error = TextField(default="")
    created_at = DoubleField()
    updated_at = DoubleField()
    finished_at = DoubleField(null=True)

    @property
    def target(self) -> dict[str, Any]:
        return json.loads(self.target_json)


class Attempt(BaseModel):
    delivery = ForeignKeyField(Delivery, backref="attempt_rows", on_delete="CASCADE")
    number = IntegerField()
    started_at = DoubleField()
    duration_ms = IntegerField(default=0)
    status_code = IntegerField(null=True)
    error = TextField(default="")
    response_excerpt = TextField(default="")


class PullWindow(BaseModel):
    """Pull de-duplication: when a (policy, artifact, operator) last produced a delivery.

    `key` is a hash of the three, so the row is small and the primary key is the lock that
    makes concurrent workers agree (store.dedup).
    """

    key = CharField(primary_key=True, max_length=64)
    last_at = DoubleField(index=True)


class Setting(BaseModel):
    """Runtime switches changed through the API (Harbor's configurations)."""

    key = CharField(primary_key=True, max_length=64)
    value = TextField()


MODELS = (SchemaVersion, Project, Policy, Repository, Event, Delivery, Attempt, Setting,
          PullWindow)
