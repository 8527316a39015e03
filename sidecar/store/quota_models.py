"""Tables of per-project storage quotas: limits, usage, which blobs count, reservations.

Usage is Harbor's: the bytes of the distinct blobs linked to a project (`quota_blob`, one row
per project and digest, so a layer shared by two repositories counts once). `quota_link`
remembers which blobs each (repository, manifest) references, so a delete can tell which
blobs no remaining manifest of the project uses. `quota.used` is kept equal to the sum of the
project's `quota_blob` sizes by every write in store.quota_usage, in the same transaction.

A push that adds bytes holds them in `quota.reserved` (and a `quota_reservation` row that
remembers what to link) from the check until its outcome is settled: the check and the hold
are one conditional UPDATE on the project's row, so concurrent pushes cannot both pass.

Registered by the coordinator: append `migrate_quota` to store.db.MIGRATIONS.
"""

from __future__ import annotations

from peewee import BigIntegerField
from peewee import BooleanField
from peewee import CharField
from peewee import Database
from peewee import DoubleField
from peewee import IntegerField
from peewee import TextField

from sidecar.store.models import BaseModel


class Quota(BaseModel):
    """One project's limit and usage (Harbor's quota + quota_usage rows in one)."""

    project = CharField(unique=True, max_length=255)
    hard = BigIntegerField()  # bytes; -1 = unlimited (usage still counted)
    used = BigIntegerField(default=0)
    reserved = BigIntegerField(default=0)  # held by pushes in flight
    warning_percent = IntegerField(default=85)
    warning_repeat = CharField(default="once", max_length=16)
    warned = BooleanField(default=False)  # QUOTA_WARNING sent for the current crossing
    source = CharField(default="rules", max_length=16)  # "rules" (read-only) or "api"
    #: When a rebuild from the registry began (None = not recalculating): rows written after
    #: it are kept by the rebuild, as the walk may have missed them.
    recalc_started_at = DoubleField(null=True)
    created_at = DoubleField()
    updated_at = DoubleField()

    class Meta:
        table_name = "quota"


class QuotaBlob(BaseModel):
    """A blob (layer, config or manifest) linked to a project: it counts once."""

    project = CharField(max_length=255)
    digest = CharField(max_length=160)
    size = BigIntegerField()
    added_at = DoubleField()

    class Meta:
        table_name = "quota_blob"
        indexes = ((("project", "digest"), True), (("digest",), False))  # by digest: mounts


class QuotaLink(BaseModel):
    """(repository, manifest) references blob: what a delete consults."""

    project = CharField(max_length=255)
    repository = CharField(max_length=512)
    manifest = CharField(max_length=160)
    blob = CharField(max_length=160)
    added_at = DoubleField()

    class Meta:
        table_name = "quota_link"
        indexes = (
            (("repository", "manifest", "blob"), True),
            (("project", "blob"), False),
        )


class QuotaReservation(BaseModel):
    """Bytes a push holds in `quota.reserved` until it is settled or expires."""

    token = CharField(primary_key=True, max_length=32)
    project = CharField(max_length=255)
    repository = CharField(default="", max_length=512)
    #: the blob (blob upload, mount) or manifest (manifest push) being pushed
    digest = CharField(default="", max_length=160)
    manifest = BooleanField(default=False)
    size = BigIntegerField()  # the bytes held, new to the project when reserved
    #: [[digest, size], ...] to link to the project when the push succeeds
    items_json = TextField(default="[]")
    expires_at = DoubleField(index=True)

    class Meta:
        table_name = "quota_reservation"
        indexes = ((("project", "digest"), False),)


QUOTA_MODELS = (Quota, QuotaBlob, QuotaLink, QuotaReservation)


def migrate_quota(db: Database) -> None:
    """Migration step: create the quota tables (append to store.db.MIGRATIONS)."""
    db.create_tables(QUOTA_MODELS, safe=True)
