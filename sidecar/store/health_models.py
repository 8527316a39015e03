"""Tables of endpoint health (issue 14): the shared pace of paced targets (Slack), kept in the
store so every worker and sidecar sending to one URL keeps one pace.

Rows are keyed by a digest of the address: a Slack incoming-webhook URL is itself the secret,
so it is never stored here in clear.
"""

from __future__ import annotations

from peewee import CharField
from peewee import Database
from peewee import DoubleField

from sidecar.store.models import BaseModel


class PaceSlot(BaseModel):
    """The earliest time the next message to one address may go (database server's clock)."""

    key = CharField(primary_key=True, max_length=64)
    next_at = DoubleField(default=0.0)

    class Meta:
        table_name = "pace_slot"


HEALTH_MODELS = (PaceSlot,)


def migrate_health(db: Database) -> None:
    """Create the tables (idempotent)."""
    db.create_tables(HEALTH_MODELS, safe=True)
