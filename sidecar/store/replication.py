"""Replication registries and policies in the store: the rules-file sync and the lookups that
the trigger, the jobs and the API read (plain data, detached from the database).

The sync runs inside policies.sync_rules' transaction, so every worker sees webhook policies,
registries and replication policies change together. Rows are matched by name: an edited
registry or policy keeps its id; one the file no longer declares is deleted (its executions
stay, as history, naming it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from sidecar.rules.registries import Registry
from sidecar.rules.replication import EVENT_BASED
from sidecar.rules.replication import SCHEDULED
from sidecar.rules.replication import Filter
from sidecar.rules.replication import ReplicationPolicy as PolicyRule
from sidecar.store.replication_models import ReplicationPolicy
from sidecar.store.replication_models import ReplicationRegistry

RULES = "rules"
#: who the API names as the creator of a rules-file policy (webhook policies say the same)
RULES_CREATOR = "rules"


@dataclass(frozen=True)
class RegistryView:
    """A registry endpoint. `access_secret` is for the registry client only: never shown."""

    id: int
    name: str
    type: str
    url: str
    description: str
    credential_type: str
    access_key: str
    insecure: bool
    ca_certificate: str
    source: str
    created_at: float
    updated_at: float
    access_secret: str = field(default="", repr=False)

    @property
    def auth_type(self) -> str:
        """The credential's type as REPLICATION payloads name it ("" = anonymous)."""
        return self.credential_type if self.access_key else ""


@dataclass(frozen=True)
class PolicyView:
    """A replication policy with its destination's id; `rule` rebuilds the matching logic."""

    id: int
    name: str
    description: str
    enabled: bool
    registry_id: int
    dest_namespace: str
    dest_namespace_replace_count: int
    trigger: str
    cron: str
    filters: tuple[dict[str, Any], ...]
    replicate_deletion: bool
    override: bool
    speed: int
    copy_by_chunk: bool
    single_active_replication: bool
    source: str
    creator: str
    created_at: float
    updated_at: float

    @property
    def rule(self) -> PolicyRule:
        return PolicyRule(
            name=self.name, dest_registry="", description=self.description,
            enabled=self.enabled, dest_namespace=self.dest_namespace,
            dest_namespace_replace_count=self.dest_namespace_replace_count,
            trigger=self.trigger, cron=self.cron,
            filters=tuple(Filter(f["type"], f.get("value", ""), f.get("decoration", ""))
                          for f in self.filters),
            replicate_deletion=self.replicate_deletion, override=self.override,
            speed=self.speed, copy_by_chunk=self.copy_by_chunk,
            single_active_replication=self.single_active_replication)


def registry_view(row: ReplicationRegistry) -> RegistryView:
    return RegistryView(
        id=row.id, name=row.name, type=row.type, url=row.url, description=row.description,
        credential_type=row.credential_type, access_key=row.access_key, insecure=row.insecure,
        ca_certificate=row.ca_certificate, source=row.source, created_at=row.created_at,
        updated_at=row.updated_at, access_secret=row.access_secret)


def policy_view(row: ReplicationPolicy) -> PolicyView:
    return PolicyView(
        id=row.id, name=row.name, description=row.description, enabled=row.enabled,
        registry_id=row.registry, dest_namespace=row.dest_namespace,
        dest_namespace_replace_count=row.dest_namespace_replace_count, trigger=row.trigger,
        cron=row.cron, filters=tuple(row.filters), replicate_deletion=row.replicate_deletion,
        override=row.override, speed=row.speed, copy_by_chunk=row.copy_by_chunk,
        single_active_replication=row.single_active_replication, source=row.source,
        creator=row.creator, created_at=row.created_at, updated_at=row.updated_at)


# -- the rules-file sync (inside policies.sync_rules' transaction) ---------------------------

def _registry_fields(registry: Registry) -> dict[str, Any]:
    credential = registry.credential
    return {
        "type": registry.type, "url": registry.url, "description": registry.description,
        "credential_type": credential.type if credential else "",
        "access_key": credential.access_key if credential else "",
        "access_secret": credential.access_secret if credential else "",
        "insecure": registry.insecure, "ca_certificate": registry.ca_certificate,
        "source": RULES,
    }


def _policy_fields(policy: PolicyRule, registry_id: int) -> dict[str, Any]:
    return {
        "description": policy.description, "enabled": policy.enabled, "registry": registry_id,
        "dest_namespace": policy.dest_namespace,
        "dest_namespace_replace_count": policy.dest_namespace_replace_count,
        "trigger": policy.trigger, "cron": policy.cron,
        "filters_json": json.dumps(policy.filters_dict()),
        "replicate_deletion": policy.replicate_deletion, "override": policy.override,
        "speed": policy.speed, "copy_by_chunk": policy.copy_by_chunk,
        "single_active_replication": policy.single_active_replication, "source": RULES,
        "creator": RULES_CREATOR,
    }


def sync_replication(registries: Sequence[Registry], policies: Sequence[PolicyRule],
                     now: float) -> int:
    """Make the stored registries and policies equal to the file's; how many rows changed."""
    changed = 0
    stored = {row.name: row for row in ReplicationRegistry.select()}
    wanted = {r.name: _registry_fields(r) for r in registries}
    for name, fields in wanted.items():
        row = stored.get(name)
        if row is None:
            ReplicationRegistry.create(name=name, created_at=now, updated_at=now, **fields)
            changed += 1
        elif any(getattr(row, k) != v for k, v in fields.items()):
            ReplicationRegistry.update(updated_at=now, **fields).where(
                ReplicationRegistry.id == row.id).execute()
            changed += 1
    ids = {row.name: row.id for row in ReplicationRegistry.select(ReplicationRegistry.id,
                                                                   ReplicationRegistry.name)}
    stored_policies = {row.name: row for row in ReplicationPolicy.select()}
    wanted_policies = {p.name: _policy_fields(p, ids[p.dest_registry]) for p in policies}
    for name, fields in wanted_policies.items():
        row = stored_policies.get(name)
        if row is None:
            ReplicationPolicy.create(name=name, created_at=now, updated_at=now, **fields)
            changed += 1
        elif any(getattr(row, k) != v for k, v in fields.items()):
            ReplicationPolicy.update(updated_at=now, **fields).where(
                ReplicationPolicy.id == row.id).execute()
            changed += 1
    gone = [row.id for name, row in stored_policies.items() if name not in wanted_policies]
    if gone:
        changed += ReplicationPolicy.delete().where(ReplicationPolicy.id.in_(gone)).execute()
    gone = [row.id for name, row in stored.items() if name not in wanted]
    if gone:
        changed += ReplicationRegistry.delete().where(
            ReplicationRegistry.id.in_(gone)).execute()
    return changed


# -- lookups -------------------------------------------------------------------------------

def registries() -> list[RegistryView]:
    return [registry_view(row) for row in
            ReplicationRegistry.select().order_by(ReplicationRegistry.id)]


def registry(registry_id: int) -> RegistryView | None:
    row = ReplicationRegistry.get_or_none(ReplicationRegistry.id == registry_id)
    return registry_view(row) if row is not None else None


def policies() -> list[PolicyView]:
    return [policy_view(row) for row in
            ReplicationPolicy.select().order_by(ReplicationPolicy.id)]


def policy(policy_id: int) -> PolicyView | None:
    row = ReplicationPolicy.get_or_none(ReplicationPolicy.id == policy_id)
    return policy_view(row) if row is not None else None


def policy_named(name: str) -> PolicyView | None:
    row = ReplicationPolicy.get_or_none(ReplicationPolicy.name == name)
    return policy_view(row) if row is not None else None


def event_policies() -> list[PolicyView]:
    """Enabled event-based policies: what a push or a delete may start."""
    rows = ReplicationPolicy.select().where(
        (ReplicationPolicy.enabled == True) & (ReplicationPolicy.trigger == EVENT_BASED)  # noqa: E712
    ).order_by(ReplicationPolicy.id)
    return [policy_view(row) for row in rows]


def scheduled_policies() -> list[PolicyView]:
    """Enabled scheduled policies: what the scheduler fires (see replicate.manual)."""
    rows = ReplicationPolicy.select().where(
        (ReplicationPolicy.enabled == True) & (ReplicationPolicy.trigger == SCHEDULED)  # noqa: E712
    ).order_by(ReplicationPolicy.id)
    return [policy_view(row) for row in rows]
