"""Tables of endpoint health (issue 14): the shared pace of paced targets (Slack), kept in the
store so every worker and sidecar sending to one URL keeps one pace; and each policy target's
failure streak, which disables it after `sidecar.delivery.auto_disable_after`.

Rows are keyed by a digest of the address: a Slack incoming-webhook URL is itself the secret,
so it is never stored here in clear.
"""

from __future__ import annotations

from peewee import CharField
from peewee import Database
from peewee import DoubleField
from peewee import IntegerField
from peewee import TextField

from sidecar.store.models import BaseModel


class PaceSlot(BaseModel):
    """The earliest time the next message to one address may go (database server's clock)."""

    key = CharField(primary_key=True, max_length=64)
    next_at = DoubleField(default=0.0)

    class Meta:
        table_name = "pace_slot"


class TargetHealth(BaseModel):
    """One target of one policy: since when every attempt failed, and whether it is disabled.

    `failing_since` is the first failed attempt after the last success (None: healthy);
    `disabled_at` is set once that streak is older than auto_disable_after, and cleared only by
    re-enabling it (UI, API, CLI). `address` is the redacted one (no userinfo, query values
    masked), for showing; the key is a digest of the policy and the full address.
    """

    key = CharField(primary_key=True, max_length=64)
    policy_id = IntegerField(index=True)
    address = TextField(default="")
    failing_since = DoubleField(null=True)
    last_error = TextField(default="")
    disabled_at = DoubleField(null=True, index=True)
    reason = TextField(default="")

    class Meta:
        table_name = "target_health"


HEALTH_MODELS = (PaceSlot, TargetHealth)


def migrate_health(db: Database) -> None:
    """Create the tables (idempotent)."""
    db.create_tables(HEALTH_MODELS, safe=True)
