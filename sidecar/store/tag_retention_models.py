"""Tables of tag retention: push/pull activity per artifact and tag, each project's policy, and
which policy each execution runs.

The activity tables are what Harbor's artifact and tag rows carry for retention (push and pull
times); the event history is swept after `retention_days`, these rows are kept until the
artifact is deleted. A policy comes from the rules file (one per project, synced by project,
so its id, Harbor's `retention_id`, is stable across reloads). An execution is a job (kind
"retention") whose tasks are jobs too (parent = the execution); `RetentionExecution` keeps what
the API shows of it, keyed by the execution job's id.
"""

from __future__ import annotations

from peewee import BigIntegerField
from peewee import BooleanField
from peewee import CharField
from peewee import Database
from peewee import DoubleField
from peewee import IntegerField
from peewee import Model
from peewee import TextField

from sidecar.store.models import BaseModel
from sidecar.store.models import database


class ArtifactActivity(BaseModel):
    """(repository, digest): first push and last pull the sidecar saw (None: none)."""

    repository = CharField(max_length=512)
    digest = CharField(max_length=128)
    pushed_at = BigIntegerField(null=True)
    pulled_at = BigIntegerField(null=True)

    class Meta:
        table_name = "artifact_activity"
        indexes = ((("repository", "digest"), True),)


class TagActivity(BaseModel):
    """(repository, tag): the digest it points at and when it came to point there."""

    repository = CharField(max_length=512)
    tag = CharField(max_length=256)
    digest = CharField(max_length=128)
    pushed_at = BigIntegerField()

    class Meta:
        table_name = "tag_activity"
        indexes = ((("repository", "tag"), True), (("repository", "digest"), False))


class RetentionPolicyRow(BaseModel):
    """A project's retention policy: the rules in Harbor's JSON shape and the cron."""

    project = CharField(unique=True, max_length=255)
    rules_json = TextField(default="[]")
    schedule = CharField(default="", max_length=128)
    source = CharField(default="rules", max_length=16)
    created_at = DoubleField()
    updated_at = DoubleField()

    class Meta:
        table_name = "retention_policy"


class RetentionExecution(Model):
    """An execution's policy, project, trigger and dry-run flag; `id` is its job's id."""

    id = IntegerField(primary_key=True)
    policy = IntegerField(index=True)
    project = CharField(max_length=255, index=True)
    trigger = CharField(max_length=16)  # MANUAL, Schedule (Harbor's casing)
    dry_run = BooleanField(default=False)
    created_at = DoubleField(index=True)

    class Meta:
        database = database
        table_name = "retention_execution"


TAG_RETENTION_MODELS = (ArtifactActivity, TagActivity, RetentionPolicyRow, RetentionExecution)


def migrate_tag_retention(db: Database) -> None:
    """Migration step: create the tag retention tables (idempotent)."""
    db.create_tables(TAG_RETENTION_MODELS, safe=True)
