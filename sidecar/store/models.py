"""Tables. Harbor's webhook executions and tasks map onto deliveries and attempts.

Policies keep their event types and targets as JSON text, as Harbor's notification_policy does,
so the REST API can return them field for field.
"""

from __future__ import annotations

import json
from typing import Any

from peewee import SQL
from peewee import AutoField
from peewee import BooleanField
from peewee import CharField
from peewee import DatabaseProxy
from peewee import DoubleField
from peewee import ForeignKeyField
from peewee import IntegerField
from peewee import Model
from peewee import NodeList
from peewee import SqliteDatabase
from peewee import TextField

database = DatabaseProxy()


class IdField(AutoField):
    """Ids only grow, as Harbor's: a deleted resource's id is never handed to a new one.

    SQLite reuses the highest id after a delete unless the column is AUTOINCREMENT;
    PostgreSQL's sequences never go back by themselves.
    """

    def ddl(self, ctx):
        nodes = super().ddl(ctx)
        if isinstance(database.obj, SqliteDatabase):
            return NodeList((nodes, SQL("AUTOINCREMENT")))
        return nodes


class BaseModel(Model):
    id = IdField()

    class Meta:
        database = database


class SchemaVersion(BaseModel):
    version = IntegerField()


class Project(BaseModel):
    name = CharField(unique=True, max_length=255)
    public = BooleanField(default=False)
    source = CharField(default="rules", max_length=16)  # "rules" or "api"
    created_at = DoubleField()
    #: Harbor's project metadata `auto_scan` and the project's scanner ("" = the default)
    auto_scan = BooleanField(default=False)
    scanner = CharField(default="", max_length=255)


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


#: Queue states, shared by every kind of job (store.jobqueue). A job's `status` moves
#: pending -> running -> (pending again to retry) -> succeeded | failed | stopped; deliveries
#: call running "sending" and succeeded "delivered", the words their API has always used.
PENDING = "pending"
SENDING = "sending"
DELIVERED = "delivered"
FAILED = "failed"
#: not sent: its target was disabled (store.target_health); replayable once re-enabled
SKIPPED = "skipped"
STATUSES = (PENDING, SENDING, DELIVERED, FAILED, SKIPPED)
RUNNING = "running"
SUCCEEDED = "succeeded"
STOPPED = "stopped"
JOB_STATUSES = (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)


class Queued(BaseModel):
    """The columns one claiming mechanism works on (store.jobqueue), whatever the work is."""

    status = CharField(default=PENDING, max_length=16, index=True)
    attempts = IntegerField(default=0)
    max_attempts = IntegerField(default=3)
    next_attempt_at = DoubleField(index=True)
    lease_until = DoubleField(null=True)
    claim_token = CharField(null=True, max_length=64, index=True)
    last_error = TextField(default="")
    created_at = DoubleField()
    updated_at = DoubleField()
    finished_at = DoubleField(null=True)


class Delivery(Queued):
    """One (event x policy x target): Harbor's execution+task, our unit of retry."""

    uid = CharField(unique=True, max_length=64)  # stable across retries, for de-duplication
    event = ForeignKeyField(Event, backref="deliveries", on_delete="CASCADE")
    policy = ForeignKeyField(Policy, null=True, backref="deliveries", on_delete="SET NULL")
    policy_name = CharField(default="", max_length=256)
    project = CharField(default="", max_length=255)
    event_type = CharField(max_length=32)
    target_json = TextField()  # snapshot: a later policy edit does not change a queued send
    last_status_code = IntegerField(null=True)

    @property
    def target(self) -> dict[str, Any]:
        return json.loads(self.target_json)


class Job(Queued):
    """Background work other than deliveries: a scan, a replication task, a retention run.

    `key` makes enqueueing idempotent across workers and sidecars (a scheduled run, the scan
    of one digest). `payload` is what to do; `state` the handler's last checkpoint, so a job
    taken over after a crash resumes instead of starting again (a submitted scan is polled,
    not submitted twice); `result` what it produced, for the API and status.
    """

    kind = CharField(max_length=32, index=True)
    key = CharField(null=True, unique=True, max_length=255)
    project = CharField(default="", max_length=255, index=True)
    parent = IntegerField(null=True, index=True)  # the run a task belongs to
    title = CharField(default="", max_length=512)  # what status pages name it by
    payload_json = TextField(default="{}")
    state_json = TextField(default="{}")
    result_json = TextField(default="{}")
    log_text = TextField(default="")
    stop_requested = BooleanField(default=False)
    operator = CharField(default="", max_length=256)  # who asked for it (events name them)
    started_at = DoubleField(null=True)

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.payload_json or "{}")

    @property
    def state(self) -> dict[str, Any]:
        return json.loads(self.state_json or "{}")

    @property
    def result(self) -> dict[str, Any]:
        return json.loads(self.result_json or "{}")


class Scanner(BaseModel):
    """A scanner adapter registration (Harbor's ScannerRegistration), synced from the rules
    file with the projects, so every worker reads the same registrations."""

    name = CharField(unique=True, max_length=255)
    url = CharField(max_length=1024)
    auth = CharField(default="", max_length=32)
    access_credential = TextField(default="")  # like a target's auth_header: never shown
    skip_cert_verify = BooleanField(default=False)
    is_default = BooleanField(default=False)
    source = CharField(default="rules", max_length=16)
    created_at = DoubleField()
    updated_at = DoubleField()


class ArtifactScan(BaseModel):
    """The scans of one digest by one scanner: how many were made (the `n` of their job keys,
    `scan:<scanner>:<digest>:<n>`) and the latest one, whose result is the artifact's
    scan_overview. Harbor keys its reports the same way (digest and registration)."""

    scanner = CharField(max_length=255)
    digest = CharField(max_length=128)
    repository = CharField(default="", max_length=512)
    scans = IntegerField(default=0)
    latest_job = IntegerField(null=True)
    updated_at = DoubleField()

    class Meta:
        indexes = ((("scanner", "digest"), True), (("digest",), False))


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
          PullWindow, Job, Scanner, ArtifactScan)
