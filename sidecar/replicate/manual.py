"""Runs someone asks for (Harbor's POST /replication/executions, `sidecar replicate`, the UI),
with Harbor's checks and words: 404 for a policy that does not exist, 412 for a
disabled one."""

from __future__ import annotations

from sidecar.events.replication import TRIGGER_MANUAL
from sidecar.store import replication as replication_store
from sidecar.store import replication_runs as runs
from sidecar.store.replication import PolicyView


class RunRefused(Exception):
    """Harbor's answer to a run that cannot start: status, code, message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def find_policy(reference: str | int) -> PolicyView:
    """A policy by id, or (from the CLI) by name; RunRefused(404) when there is none."""
    policy = None
    if isinstance(reference, int) or str(reference).isdigit():
        policy = replication_store.policy(int(reference))
    if policy is None and not isinstance(reference, int):
        policy = replication_store.policy_named(str(reference))
    if policy is None:
        raise RunRefused(404, "NOT_FOUND", f"replication policy {reference} not found")
    return policy


def start_run(reference: str | int, *, operator: str, host: str = "",
              trigger: str = TRIGGER_MANUAL, key: str | None = None) -> int | None:
    """Queue an execution of the policy (runs on the store's connection: call it through
    the executor); its id, or None when `key` names a run that was already queued."""
    policy = find_policy(reference)
    if not policy.enabled:
        raise RunRefused(412, "PRECONDITION", f"the policy {policy.id} is disabled")
    return runs.start_execution(policy, trigger, operator=operator, host=host, key=key)

