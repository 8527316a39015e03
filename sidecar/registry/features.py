"""What the sidecar does in a registry on its own behalf, and how each does without a credential.

Pure data, shown in /sidecar/status. A feature that starts calling the registry itself adds
its line here (and drops "upcoming" when it lands).
"""

from __future__ import annotations

from typing import Any

#: (feature, what it does without `sidecar.registry_credential`)
OWN_ACCESS: tuple[tuple[str, str], ...] = (
    ("pre-delete lookups",
     "uses the deleting client's own Authorization: a token scoped to delete only cannot read "
     "the tags and size, so DELETE_ARTIFACT carries the digest as its tag and no size"),
    ("scanning",
     "anonymous: the sidecar reads what it scans, and scanner adapters pull it, without "
     "authorization, so private repositories fail their scans"),
    ("quota recalculation", "anonymous: on a registry that wants credentials the catalog "
                            "cannot be read, so recalculation fails and usage keeps its last "
                            "figure"),
    ("replication source reads", "anonymous: private repositories cannot be replicated, and "
     "manual runs cannot list the catalog of a registry that wants credentials"),
    ("tag retention", "anonymous: cannot list the catalog or delete on a registry "
                       "that wants credentials"),
)


def credential_report(configured: bool) -> dict[str, Any]:
    """For /sidecar/status: whether the credential is set and what runs degraded without it.

    Never the user name or the password: only whether one is configured.
    """
    degraded = [] if configured else [
        {"feature": feature, "without_credential": effect} for feature, effect in OWN_ACCESS]
    return {"configured": configured, "degraded": degraded}
