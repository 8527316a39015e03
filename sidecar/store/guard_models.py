"""Tables that hold the admin surfaces' shared state across workers and sidecars.

`login_failure`: failed logins per (client address, user), so a password guesser meets the
same throttle whichever worker or sidecar answers it. One small row per key, upserted in one
statement; the retention sweep deletes rows whose window has long passed.
"""

from __future__ import annotations

from peewee import CharField
from peewee import Database
from peewee import DoubleField
from peewee import IntegerField

from sidecar.store.models import BaseModel


class LoginFailure(BaseModel):
    """Failures of one client address and user within the window that began at window_start."""

    key = CharField(primary_key=True, max_length=64)  # sha256 of address and user
    window_start = DoubleField(index=True)
    failures = IntegerField(default=0)

    class Meta:
        table_name = "login_failure"


GUARD_MODELS = (LoginFailure,)


def migrate_guard(db: Database) -> None:
    """Create the table (idempotent: a store that has it already is left alone)."""
    db.create_tables(GUARD_MODELS, safe=True)
