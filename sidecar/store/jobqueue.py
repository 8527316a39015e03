"""One claiming mechanism for every kind of background work: deliveries, scans, replication
tasks, retention runs.

A claim stamps a random token on due rows in one UPDATE (`FOR UPDATE SKIP LOCKED` on
PostgreSQL, the write lock on SQLite) and gives them a lease; every later write checks that
token, so a worker whose lease ran out cannot overwrite its successor's result. A lease that
runs out counts as an attempt: work that kills every worker running it ends instead of looping.
Times come from store.clock (the database server's clock), so hosts with skewed clocks agree
on when a lease has run out.

The queue works on any table with the `Queued` columns; a `scope` narrows it to some rows
(the job kinds one worker lane runs).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any

from peewee import Expression
from peewee import PostgresqlDatabase
from peewee import fn

from sidecar.store import clock
from sidecar.store.models import FAILED
from sidecar.store.models import PENDING
from sidecar.store.models import Queued
from sidecar.store.models import database

#: Called inside the transaction that counted an expired lease as attempt `number`.
OnExpired = Callable[[int, int, float], None]


class JobQueue:
    """Claim, lease and settle the rows of one `Queued` table (or the part `scope` selects).

    `running` is the status of a claimed row; `done` the statuses that end a row (replay
    puts them back). With `fail_on_expiry`, a lease that runs out on the last attempt ends
    the row as failed at once (deliveries: nothing more to say); without it the row goes
    back to pending so that a worker claims it and its handler says why it gave up (jobs:
    a failed scan fires SCANNING_FAILED).
    """

    def __init__(self, model: type[Queued], *, running: str, done: Sequence[str],
                 scope: Expression | None = None, fail_on_expiry: bool = True,
                 lease_expired: str = "", on_expired: OnExpired | None = None):
        self.model = model
        self.running = running
        self.done = tuple(done)
        self.scope = scope
        self.fail_on_expiry = fail_on_expiry
        self.lease_expired = lease_expired or LEASE_EXPIRED
        self.on_expired = on_expired

    def _where(self, condition: Expression) -> Expression:
        return condition if self.scope is None else (condition & self.scope)

    def _mine(self, row: Queued) -> Expression:
        m = self.model
        return (m.id == row.id) & (m.claim_token == row.claim_token)

    # -- claiming --------------------------------------------------------------------------
    def claim(self, limit: int, lease_seconds: float, now: float | None = None,
              select: Callable[[Any], Any] | None = None) -> list[Any]:
        """Atomically take up to `limit` due rows; expired leases are settled first.

        `select(token)` returns the query that reads the claimed rows back (joins); by
        default the rows themselves, in claim order.
        """
        m = self.model
        now = clock.now() if now is None else now
        self.expire_leases(now)
        token = uuid.uuid4().hex
        due = (
            m.select(m.id)
            .where(self._where((m.status == PENDING) & (m.next_attempt_at <= now)))
            .order_by(m.next_attempt_at)
            .limit(limit)
        )
        if isinstance(database.obj, PostgresqlDatabase):
            due = due.for_update("FOR UPDATE SKIP LOCKED")
        with database.atomic():
            taken = (
                m.update(status=self.running, claim_token=token,
                         lease_until=now + lease_seconds, updated_at=now)
                .where(m.id.in_(due))
                .execute()
            )
        if not taken:
            return []
        if select is not None:
            return list(select(token))
        return list(m.select().where(m.claim_token == token).order_by(m.id))

    def expire_leases(self, now: float | None = None, limit: int = 100) -> int:
        """Count each claim whose lease ran out as an attempt, then retry or end it.

        The work may well have happened (the endpoint received that send), so it is an
        attempt like any other.
        """
        m = self.model
        now = clock.now() if now is None else now
        expired = list(
            m.select(m.id, m.attempts, m.max_attempts)
            .where(self._where((m.status == self.running) & (m.lease_until < now)))
            .limit(limit)
        )
        done = 0
        for row in expired:
            attempts = row.attempts + 1
            final = attempts >= row.max_attempts and self.fail_on_expiry
            fields: dict[str, Any] = {
                "attempts": attempts, "claim_token": None, "lease_until": None,
                "updated_at": now,
                "last_error": self.lease_expired
                + (f" (gave up after {attempts} attempts)" if final else ""),
            }
            if final:
                fields.update(status=FAILED, finished_at=now)
            else:
                fields.update(status=PENDING, next_attempt_at=now)
            with database.atomic():
                changed = (
                    m.update(**fields)
                    .where((m.id == row.id) & (m.status == self.running)
                           & (m.lease_until < now))
                    .execute()
                )
                if changed == 1:  # another claimer may have expired it first
                    if self.on_expired is not None:
                        self.on_expired(row.id, attempts, now)
                    done += 1
        return done

    # -- settling (every write checks the claim token) -------------------------------------
    def settle(self, row: Queued, **fields: Any) -> bool:
        """Write `fields` to a row we hold; False if our claim was taken over."""
        return self.model.update(**fields).where(self._mine(row)).execute() == 1

    def renew(self, rows: Iterable[Queued], lease_seconds: float,
              now: float | None = None) -> list[bool]:
        """Extend the lease of rows still being worked on (long scans, copies)."""
        now = clock.now() if now is None else now
        with database.atomic():
            return [self.settle(row, lease_until=now + lease_seconds, updated_at=now)
                    for row in rows]

    def release(self, rows: Iterable[Queued], now: float | None = None) -> int:
        """Give back claims never worked on (a stopping worker): no one waits for the lease."""
        now = clock.now() if now is None else now
        with database.atomic():
            return sum(
                self.settle(row, status=PENDING, claim_token=None, lease_until=None,
                            updated_at=now)
                for row in rows
            )

    def postpone(self, row: Queued, until: float, now: float | None = None) -> bool:
        """Give back a claim unworked until `until` (a rate limit): no attempt is counted."""
        now = clock.now() if now is None else now
        return self.settle(row, status=PENDING, next_attempt_at=until, claim_token=None,
                           lease_until=None, updated_at=now)

    def requeue(self, ids: Iterable[int], now: float | None = None) -> int:
        """Run finished rows again (replay); each gets as many attempts again as it had."""
        m = self.model
        now = clock.now() if now is None else now
        ids = list(ids)
        if not ids:
            return 0
        return (
            m.update(status=PENDING, next_attempt_at=now, finished_at=None, updated_at=now,
                     max_attempts=m.attempts + m.max_attempts)
            .where(m.id.in_(ids) & m.status.in_(self.done))
            .execute()
        )

    def counts(self, statuses: Sequence[str]) -> dict[str, int]:
        m = self.model
        out = {status: 0 for status in statuses}
        query = m.select(m.status, fn.COUNT(m.id).alias("n"))
        if self.scope is not None:
            query = query.where(self.scope)
        for row in query.group_by(m.status):
            out[row.status] = row.n
        return out


#: Recorded as the attempt of a worker that died (or hung) holding a claim.
LEASE_EXPIRED = "the worker sending it stopped before an answer was recorded (lease expired)"
