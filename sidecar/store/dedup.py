"""Pull de-duplication windows, agreed through the database.

Every gunicorn worker and every sidecar sharing the database records pulls on its own, so an
in-memory window would let each of them send one. Here the claim on a window is one statement
on a primary-keyed row (an UPDATE that only matches an expired window, else an INSERT that
only succeeds for a new key): whichever worker gets it sends; the others see the window taken.
Call `admit` inside the transaction that records the deliveries, so a batch that fails to
record gives its windows back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from sidecar.rules.policy import MAX_PULL_DEDUP_SECONDS
from sidecar.store.models import PullWindow


def pull_key(policy_id: int, artifact: str, operator: str) -> str:
    """One window per policy, artifact (`repo@digest`) and operator."""
    raw = f"{policy_id}\0{artifact}\0{operator}".encode()
    return hashlib.sha256(raw).hexdigest()


def admit(windows: Mapping[str, tuple[float, int]]) -> set[str]:
    """Keys whose window is open at the given time (`key -> (at, seconds)`), now claimed.

    Keys go in sorted order, so two workers claiming overlapping sets lock rows in the same
    order (no deadlock on PostgreSQL).
    """
    admitted: set[str] = set()
    for key in sorted(windows):
        at, seconds = windows[key]
        reopened = (
            PullWindow.update(last_at=at)
            .where((PullWindow.key == key) & (PullWindow.last_at <= at - seconds))
            .execute()
        )
        if reopened:
            admitted.add(key)
            continue
        created = (
            PullWindow.insert(key=key, last_at=at).on_conflict_ignore().as_rowcount().execute()
        )
        if created:
            admitted.add(key)
    return admitted


def forget_before(cutoff: float) -> int:
    """Drop windows that closed long ago; they can no longer suppress anything."""
    return PullWindow.delete().where(PullWindow.last_at < cutoff).execute()


def forget_closed(now: float) -> int:
    """Drop every window that closed: older than the longest window a policy may ask for.
    The one sweep of windows, run by the recorder hourly and by the retention sweep."""
    return forget_before(now - MAX_PULL_DEDUP_SECONDS)
