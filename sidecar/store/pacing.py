"""One pace per paced address (Slack: one message a second per webhook URL) for every worker
and sidecar sharing the store.

`reserve` hands out the next slot and moves the address's `next_at` on by the interval in one
transaction: SQLite's writer lock (every transaction begins IMMEDIATE) or PostgreSQL's row
lock (SELECT ... FOR UPDATE) makes concurrent senders take successive slots. Times are the
database server's clock (store.clock), which all hosts read alike.
"""

from __future__ import annotations

import hashlib

from peewee import PostgresqlDatabase

from sidecar.store.health_models import PaceSlot
from sidecar.store.models import database


def key_of(address: str) -> str:
    return hashlib.sha256(address.encode("utf-8")).hexdigest()


def reserve(address: str, interval: float, now: float) -> float:
    """The time this send may go: `now` or the address's next free slot, whichever is later."""
    key = key_of(address)
    with database.atomic():
        PaceSlot.insert(key=key, next_at=0.0).on_conflict_ignore().execute()
        query = PaceSlot.select().where(PaceSlot.key == key)
        if isinstance(database.obj, PostgresqlDatabase):
            query = query.for_update()
        row = query.get()
        at = max(now, row.next_at)
        PaceSlot.update(next_at=at + interval).where(PaceSlot.key == key).execute()
    return at


def defer(address: str, until: float) -> None:
    """The receiver asked for a pause (429 + Retry-After): no new slot before `until`."""
    key = key_of(address)
    with database.atomic():
        PaceSlot.insert(key=key, next_at=until).on_conflict_ignore().execute()
        PaceSlot.update(next_at=until).where(
            (PaceSlot.key == key) & (PaceSlot.next_at < until)).execute()


def forget_idle(before: float) -> int:
    """Delete the slots of addresses idle since `before` (the retention sweep)."""
    return PaceSlot.delete().where(PaceSlot.next_at < before).execute()
