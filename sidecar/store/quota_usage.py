"""Storage quotas on the push path: check-and-hold a push's bytes, then settle it.

What makes this safe across gunicorn workers and sidecars sharing PostgreSQL: a push's check
and hold are one transaction that first locks the project's quota row (SELECT ... FOR UPDATE;
on SQLite every transaction begins IMMEDIATE, as store.db opens it), then reads what the
project already has or holds, then takes the bytes with

    UPDATE quota SET reserved = reserved + n WHERE project = p AND (hard < 0 OR
                     used + reserved + n <= hard)

where one updated row means granted. The lock comes first so that the next push of the same
project waits for this one's commit and sees its hold: two pushes that each fit but not
together cannot both pass, and parallel pushes of one layer hold it once. Held bytes stay in
`reserved` until `settle` turns them into usage (the push succeeded) or gives them back (it
failed); a holder that died is released by `release_expired` after its hold time.

Every write to a project's blobs, links or reservations takes the same row lock first, so no
blob is counted twice, a delete never removes a blob a concurrent push is linking, and
projects' rows are always locked in one order (no deadlock). Limits are in
store.quota_limits; deletes and rebuilds from the registry in store.quota_recount.

`reserve_blob`, `reserve_manifest`, `settle` and `release_expired` are one transaction each:
one store round trip per request that adds bytes (settles batch many pushes in one).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any
from typing import NamedTuple

from peewee import SqliteDatabase

from sidecar.events.quota import decide_warning
from sidecar.events.quota import exceed_message
from sidecar.events.quota import warning_message
from sidecar.store.models import database
from sidecar.store.quota_models import Quota
from sidecar.store.quota_models import QuotaReservation

#: How long a push may hold bytes before a sweep gives them back: longer than the slowest
#: single upload request (a monolithic PUT of a large layer), short enough that a crashed
#: sidecar's holds do not block a project for long.
DEFAULT_HOLD_SECONDS = 3600.0
_BATCH = 200  # rows per multi-row INSERT / IN list


@dataclass(frozen=True)
class Reservation:
    """The store's answer to a request that adds bytes.

    `allowed` False: refuse with 403 DENIED and `message`. `token` is what to `settle` when
    the registry has answered ("" = nothing held or linked: nothing to settle). `tracked`
    False: the project has no quota, nothing is counted.
    """

    allowed: bool
    token: str = ""
    delta: int = 0  # bytes new to the project (what the push adds, or would have)
    current: int = 0  # usage the check counted: used + held by pushes in flight
    hard: int = -1
    tracked: bool = True

    @property
    def message(self) -> str:
        return exceed_message(self.delta, self.current, self.hard) if not self.allowed else ""


@dataclass(frozen=True)
class WarningDue:
    """A settled push that took its project across the warning threshold."""

    token: str
    project: str
    repository: str
    digest: str  # the manifest pushed ("" for a blob)
    used: int
    hard: int
    percent: int

    @property
    def message(self) -> str:
        return warning_message(self.percent, self.used, self.hard)


def chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _BATCH):
        yield items[start:start + _BATCH]


def lock_quota(project: str) -> Quota | None:
    """Lock the project's quota row for this transaction and read it; None = no quota."""
    query = Quota.select().where(Quota.project == project)
    if not isinstance(database.obj, SqliteDatabase):  # SQLite: BEGIN IMMEDIATE locked it all
        query = query.for_update()
    return query.first()


# --- the push path's SQL ------------------------------------------------------------------
# Written out rather than built by peewee's query builder for every call: on the push path the
# builder cost ten times the database's own work (630 us of CPU per hold against 55 us,
# bench/quota.py). The tables are quota_models'; `?` becomes psycopg2's `%s` on PostgreSQL.

class _Row(NamedTuple):
    hard: int
    used: int
    reserved: int
    warning_percent: int
    warning_repeat: str
    warned: bool


class _Held(NamedTuple):
    token: str
    project: str
    repository: str
    digest: str
    manifest: bool
    size: int
    items_json: str


_LOCK = ("SELECT hard, used, reserved, warning_percent, warning_repeat, warned FROM quota "
         "WHERE project = ?")
_TAKE = ("UPDATE quota SET reserved = reserved + ?, updated_at = ? WHERE project = ? "
         "AND (hard < 0 OR used + reserved + ? <= hard)")
_HOLD = ("INSERT INTO quota_reservation (token, project, repository, digest, manifest, size, "
         "items_json, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
_KNOWN_SIZE = "SELECT size FROM quota_blob WHERE digest = ? LIMIT 1"
_HELD = ("SELECT token, project, repository, digest, manifest, size, items_json "
         "FROM quota_reservation WHERE token IN ({marks})")
_CLAIM = "DELETE FROM quota_reservation WHERE token = ?"
_SETTLED = ("UPDATE quota SET used = used + ?, reserved = reserved - ?, warned = ?, "
            "updated_at = ? WHERE project = ?")
_COUNTED = "SELECT digest FROM quota_blob WHERE project = ? AND digest IN ({marks})"
_PRESENT = (_COUNTED + " UNION SELECT digest FROM quota_reservation WHERE project = ? "
            "AND digest IN ({marks}) AND expires_at > ?")
_COUNT = "INSERT INTO quota_blob (project, digest, size, added_at) VALUES {values}"
_LINK = "INTO quota_link (project, repository, manifest, blob, added_at) VALUES {values}"


def _sqlite() -> bool:
    return isinstance(database.obj, SqliteDatabase)


def _run(sql: str, params: Sequence[Any] = ()):
    return database.execute_sql(sql if _sqlite() else sql.replace("?", "%s"), tuple(params))


def _marks(count: int, each: str = "?") -> str:
    return ", ".join([each] * count)


def _lock(project: str) -> _Row | None:
    """lock_quota for the push path: the figures a check and a settle need."""
    row = _run(_LOCK if _sqlite() else _LOCK + " FOR UPDATE", (project,)).fetchone()
    return None if row is None else _Row(*row[:5], bool(row[5]))


# --- check and hold -------------------------------------------------------------------------

def _present(project: str, digests: Sequence[str], now: float) -> set[str]:
    """Digests already counted for the project, or held by a push still in flight."""
    found: set[str] = set()
    for chunk in chunks(list(digests)):
        found.update(row[0] for row in _run(_PRESENT.format(marks=_marks(len(chunk))),
                                            (project, *chunk, project, *chunk, now)))
    return found


def _hold(quota: _Row, project: str, size: int, now: float) -> Reservation:
    """Take `size` bytes of the locked project's quota, or say why not."""
    fits = quota.hard < 0 or quota.used + quota.reserved + size <= quota.hard
    if not fits and _release_expired(now, project):
        quota = _lock(project) or quota
        fits = quota.hard < 0 or quota.used + quota.reserved + size <= quota.hard
    # the conditional UPDATE re-checks what the lock already guarantees
    if fits and _run(_TAKE, (size, now, project, size)).rowcount == 1:
        return Reservation(allowed=True, delta=size)
    return Reservation(allowed=False, delta=size, current=quota.used + quota.reserved,
                       hard=quota.hard)


def _record(project: str, repository: str, digest: str, size: int,
            items: Sequence[tuple[str, int]], *, manifest: bool, now: float,
            hold: float) -> str:
    token = uuid.uuid4().hex
    _run(_HOLD, (token, project, repository, digest, manifest, size,
                 json.dumps([list(item) for item in items]), now + hold))
    return token


def reserve_blob(project: str, digest: str, size: int | None, *, repository: str = "",
                 now: float | None = None, hold: float = DEFAULT_HOLD_SECONDS) -> Reservation:
    """Before a blob upload completes (final PUT, monolithic POST) or a mount: hold its bytes
    unless the project already has the blob (then nothing is added, as in Harbor).

    `size` None (a mount): the size the store knows for that digest from any project; a blob
    it never saw passes unheld, as Harbor lets a mount of a blob it does not know pass, and
    the manifest that references it counts it.
    """
    if size is not None and size < 0:
        raise ValueError(f"a blob size cannot be negative: {size}")
    now = time.time() if now is None else now
    with database.atomic():
        quota = _lock(project)
        if quota is None:
            return Reservation(allowed=True, tracked=False)
        if size is None:
            known = _run(_KNOWN_SIZE, (digest,)).fetchone()
            size = int(known[0]) if known else 0
        if size == 0 or _present(project, [digest], now):
            return Reservation(allowed=True)
        held = _hold(quota, project, size, now)
        if not held.allowed:
            return held
        token = _record(project, repository, digest, size, [(digest, size)], manifest=False,
                        now=now, hold=hold)
        return Reservation(allowed=True, token=token, delta=size)


def reserve_manifest(project: str, repository: str, digest: str, size: int,
                     refs: Iterable[tuple[str, int]], *, now: float | None = None,
                     hold: float = DEFAULT_HOLD_SECONDS) -> Reservation:
    """Before a manifest PUT: hold the manifest's bytes plus those of the blobs it references
    that the project does not have yet (a chunked upload of unknown size is counted here, at
    its declared size). Nothing is added when the project already has the manifest, as in
    Harbor; the token still links it to this repository, so pass it to `settle`.

    `refs` are the descriptors the manifest lists (config, layers, or an index's manifests),
    foreign layers left out by the caller.
    """
    refs = [(ref, int(ref_size)) for ref, ref_size in refs]
    if size < 0 or any(ref_size < 0 for _, ref_size in refs):
        raise ValueError("manifest and blob sizes cannot be negative")
    now = time.time() if now is None else now
    items = [(digest, size), *dict(refs).items()]
    with database.atomic():
        quota = _lock(project)
        if quota is None:
            return Reservation(allowed=True, tracked=False)
        present = _present(project, [item[0] for item in items], now)
        delta = 0 if digest in present else sum(s for d, s in items if d not in present)
        if delta:
            held = _hold(quota, project, delta, now)
            if not held.allowed:
                return held
        token = _record(project, repository, digest, delta, items, manifest=True, now=now,
                        hold=hold)
        return Reservation(allowed=True, token=token, delta=delta)


# --- settle ---------------------------------------------------------------------------------

def settle(outcomes: Iterable[tuple[str, bool]], now: float | None = None) -> list[WarningDue]:
    """Record how held pushes ended: `(token, True)` counts and links their blobs, `(token,
    False)` gives the bytes back. Many outcomes go in one transaction (the recorder's batch).

    Settling a token twice, or one a sweep already released, does nothing. Returns the
    QUOTA_WARNINGs due, decided and remembered in the same transaction, so one crossing
    warns once however many workers settle pushes.
    """
    now = time.time() if now is None else now
    ok_by_token = dict(outcomes)
    due: list[WarningDue] = []
    if not ok_by_token:
        return due
    with database.atomic():
        rows: list[_Held] = []
        for chunk in chunks(sorted(ok_by_token)):
            rows.extend(_Held(*row[:4], bool(row[4]), *row[5:]) for row in
                        _run(_HELD.format(marks=_marks(len(chunk))), chunk))
        for project, group in _by_project(rows):
            quota = _lock(project)  # the project's row first, then its reservations
            for row in group:
                if not _claim(row.token) or quota is None:
                    continue  # settled or released meanwhile, or the quota was removed
                quota, warning = _settle_one(quota, row, ok_by_token[row.token], now)
                if warning:
                    due.append(warning)
    return due


def _by_project(rows: Iterable[Any]):
    """Reservations grouped by project, projects and tokens in one order everywhere: every
    writer locks projects' rows in the same order, so no two transactions deadlock."""
    ordered = sorted(rows, key=lambda r: (r.project, r.token))
    return groupby(ordered, key=lambda r: r.project)


def _claim(token: str) -> bool:
    """Delete a reservation; True for the one caller that did (exactly-once release)."""
    return _run(_CLAIM, (token,)).rowcount == 1


def _settle_one(quota: _Row, row: _Held, ok: bool,
                now: float) -> tuple[_Row, WarningDue | None]:
    added = 0
    if ok:
        items = {digest: size for digest, size in json.loads(row.items_json)}
        added = count_blobs(row.project, items, now)
        if row.manifest:
            link_blobs(row.project, row.repository, row.digest, list(items), now)
    previous = quota.used
    decision = decide_warning(previous, previous + added, quota.hard, quota.warning_percent,
                              quota.warning_repeat, quota.warned)
    _run(_SETTLED, (added, row.size, decision.warned, now, row.project))
    quota = quota._replace(used=previous + added, reserved=quota.reserved - row.size,
                           warned=decision.warned)
    if not decision.fire:
        return quota, None
    return quota, WarningDue(token=row.token, project=row.project, repository=row.repository,
                             digest=row.digest if row.manifest else "", used=quota.used,
                             hard=quota.hard, percent=quota.warning_percent)


def count_blobs(project: str, items: dict[str, int], now: float) -> int:
    """Count blobs new to the project (the caller holds its row lock); return bytes added."""
    present: set[str] = set()
    digests = list(items)
    for chunk in chunks(digests):
        present.update(row[0] for row in _run(_COUNTED.format(marks=_marks(len(chunk))),
                                              (project, *chunk)))
    new = [d for d in digests if d not in present]
    for chunk in chunks(new):
        _run(_COUNT.format(values=_marks(len(chunk), "(?, ?, ?, ?)")),
             [value for d in chunk for value in (project, d, int(items[d]), now)])
    return sum(int(items[d]) for d in new)


def link_blobs(project: str, repository: str, manifest: str, blobs: Sequence[str],
               now: float) -> None:
    """(repository, manifest) references these blobs; links already there are kept."""
    for chunk in chunks(list(blobs)):
        values = _LINK.format(values=_marks(len(chunk), "(?, ?, ?, ?, ?)"))
        sql = f"INSERT OR IGNORE {values}" if _sqlite() else \
            f"INSERT {values} ON CONFLICT DO NOTHING"
        _run(sql, [value for blob in chunk for value in (project, repository, manifest, blob,
                                                         now)])


def release_expired(now: float | None = None) -> int:
    """Give back the bytes of holders that never settled (a crashed worker); return how many."""
    now = time.time() if now is None else now
    with database.atomic():
        return _release_expired(now)


def _release_expired(now: float, project: str | None = None) -> int:
    query = QuotaReservation.select().where(QuotaReservation.expires_at <= now)
    if project is not None:
        query = query.where(QuotaReservation.project == project)
    count = 0
    for name, group in _by_project(query):
        if lock_quota(name) is None:
            continue
        released = [row.size for row in group if _claim(row.token)]
        if released:
            Quota.update(reserved=Quota.reserved - sum(released), updated_at=now).where(
                Quota.project == name).execute()
            count += len(released)
    return count
