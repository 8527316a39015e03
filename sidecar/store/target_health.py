"""Auto-disable: a policy target whose every attempt failed for `auto_disable_after` seconds
(sidecar.delivery.auto_disable_after, 5 days by default as Svix does) is disabled.

While disabled, its new deliveries are recorded as `skipped` (never sent, kept for replay);
re-enabling it (UI, API, `sidecar reenable`) clears the streak and can queue the skipped
deliveries again. One row per (policy, target address), written by the dispatcher after each
batch of outcomes and read by the recorder for each batch that creates deliveries.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from peewee import SqliteDatabase
from peewee import fn

from sidecar.redact import redact_address
from sidecar.redact import scrub
from sidecar.redact import secrets_of
from sidecar.rules.target import Target
from sidecar.store import clock
from sidecar.store.health_models import TargetHealth
from sidecar.store.models import SKIPPED
from sidecar.store.models import Delivery
from sidecar.store.models import Policy
from sidecar.store.models import database


def key_of(policy_id: int | None, address: str) -> str:
    return hashlib.sha256(f"{policy_id}\0{address}".encode()).hexdigest()


@dataclass(frozen=True)
class Observed:
    """One attempt's result for the health of its target."""

    policy_id: int | None
    target: dict[str, Any]
    ok: bool
    error: str = ""


@dataclass(frozen=True)
class DisabledTarget:
    policy_id: int
    project: str
    policy: str
    address: str  # redacted
    since: float
    reason: str
    skipped: int


def observe(results: Sequence[Observed], after: float, now: float | None = None) -> list[str]:
    """Record attempts' results; returns the (redacted) addresses disabled by them just now."""
    now = clock.now() if now is None else now
    healthy: set[str] = set()
    failing: dict[str, Observed] = {}
    for item in results:
        if item.policy_id is None:
            continue
        key = key_of(item.policy_id, item.target.get("address", ""))
        if item.ok:
            healthy.add(key)
            failing.pop(key, None)
        else:
            failing[key] = item
            healthy.discard(key)
    disabled: list[str] = []
    with database.atomic():
        if healthy:  # the usual batch: written out, peewee's builder cost more than the query
            keys = sorted(healthy)
            _run("UPDATE target_health SET failing_since = NULL, last_error = '' "
                 f"WHERE failing_since IS NOT NULL AND key IN ({_marks(len(keys))})", keys)
        for key, item in failing.items():
            target = Target.from_dict(item.target)
            error = scrub(item.error or "failed", secrets_of([target]))[:500]
            (TargetHealth.insert(key=key, policy_id=item.policy_id,
                                 address=redact_address(target.address), failing_since=now,
                                 last_error=error)
             .on_conflict(conflict_target=[TargetHealth.key],
                          update={TargetHealth.last_error: error,
                                  TargetHealth.failing_since: fn.COALESCE(
                                      TargetHealth.failing_since, now)})
             .execute())
        if failing and after > 0:
            due = list(TargetHealth.select().where(
                TargetHealth.key.in_(list(failing)) & TargetHealth.disabled_at.is_null()
                & (TargetHealth.failing_since <= now - after)))
            for row in due:
                reason = (f"every delivery failed since {_when(row.failing_since)} "
                          f"(last: {row.last_error})")
                TargetHealth.update(disabled_at=now, reason=reason).where(
                    (TargetHealth.key == row.key) & TargetHealth.disabled_at.is_null()).execute()
                disabled.append(row.address)
    return disabled


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at or 0))


def disabled_keys(keys: Iterable[str]) -> dict[str, str]:
    """Of these keys, the disabled ones, with why (the recorder skips their new deliveries).

    Asked for every recorded batch, so written out: peewee built this SELECT anew each time,
    most of its cost (bench/deliveries.py, trickle)."""
    keys = sorted(set(keys))
    if not keys:
        return {}
    cursor = _run("SELECT key, reason FROM target_health "
                  f"WHERE disabled_at IS NOT NULL AND key IN ({_marks(len(keys))})", keys)
    return {key: reason for key, reason in cursor.fetchall()}


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _run(sql: str, params: Sequence[Any] = ()):
    """`?` placeholders on SQLite, psycopg2's `%s` on PostgreSQL."""
    sqlite = isinstance(database.obj, SqliteDatabase)
    return database.execute_sql(sql if sqlite else sql.replace("?", "%s"), tuple(params))


def disabled_targets() -> list[DisabledTarget]:
    """Every disabled target, newest first, with how many deliveries were skipped meanwhile."""
    rows = list(TargetHealth.select().where(TargetHealth.disabled_at.is_null(False))
                .order_by(TargetHealth.disabled_at.desc()))
    if not rows:
        return []
    policies = {p.id: p for p in Policy.select(Policy.id, Policy.name, Policy.project)
                .where(Policy.id.in_([r.policy_id for r in rows]))}
    out = []
    for row in rows:
        policy = policies.get(row.policy_id)
        skipped = Delivery.select().where((Delivery.policy == row.policy_id)
                                          & (Delivery.status == SKIPPED)).count()
        out.append(DisabledTarget(
            policy_id=row.policy_id, project=policy.project.name if policy else "",
            policy=policy.name if policy else "", address=row.address, since=row.disabled_at,
            reason=row.reason, skipped=skipped))
    return out


def reenable(policy_id: int) -> int:
    """Re-enable every disabled target of a policy (its streak starts afresh): how many."""
    return TargetHealth.update(disabled_at=None, reason="", failing_since=None).where(
        (TargetHealth.policy_id == policy_id) & TargetHealth.disabled_at.is_null(False)
    ).execute()


def reenable_and_replay(policy_id: int, replay: bool) -> tuple[int, int]:
    """Re-enable a policy's targets and, if asked, queue its skipped deliveries again: the one
    operation behind the UI button, the API and `sidecar reenable --replay`."""
    from sidecar.store.delivery_history import replay as replay_deliveries

    with database.atomic():
        reenabled = reenable(policy_id)
    replayed = len(replay_deliveries(skipped_ones=True, policy_id=policy_id).requeued) \
        if replay else 0
    return reenabled, replayed


def health_of(policy_id: int) -> list[dict[str, Any]]:
    """A policy's targets that failed or were disabled (the API's health answer); each with
    the number of the policy's deliveries skipped meanwhile."""
    skipped = Delivery.select().where((Delivery.policy == policy_id)
                                      & (Delivery.status == SKIPPED)).count()
    return [{"address": row.address, "disabled": row.disabled_at is not None,
             "disabled_at": row.disabled_at, "reason": row.reason or None,
             "failing_since": row.failing_since, "last_error": row.last_error or None,
             "skipped_deliveries": skipped}
            for row in TargetHealth.select().where(TargetHealth.policy_id == policy_id)
            .order_by(TargetHealth.address)]
