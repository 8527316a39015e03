"""The global switch, Harbor's `notification_enable` configuration: written by the REST API
and by the UI's System settings, read by the recorder through the runtime."""

from __future__ import annotations

from sidecar.store import policies as policy_store

NOTIFICATION_ENABLE = "notification_enable"


def set_notifications(enabled: bool) -> None:
    """Store the switch (runs on a database thread); it wins over harbor.yml from then on."""
    policy_store.set_setting(NOTIFICATION_ENABLE, "true" if enabled else "false")
