"""The web UI's webhook form <-> Harbor's WebhookPolicy, and validation problems -> fields.

Pure. The form has Harbor's fields and edits the first target, as Harbor's own form does; what
it does not show (more targets, filters, pull de-duplication, a signing secret) is kept from
the stored policy, so saving the form never drops what the API or an earlier edit set.
Validation is `rules.policy.parse_policy`'s, like the API's; this module only says which
field a message belongs next to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from sidecar.dispatch import formats
from sidecar.redact import MASK
from sidecar.rules.policy import Problem
from sidecar.store.views import PolicyView

GENERAL = ""  # problems that belong to no field of the form


@dataclass
class PolicyForm:
    """What the form shows and posts. `auth_header` is MASK while a stored one is kept."""

    name: str = ""
    description: str = ""
    notify_type: str = "http"
    payload_format: str = "Default"
    event_types: tuple[str, ...] = ()
    address: str = ""
    auth_header: str = ""
    verify_cert: bool = True
    enabled: bool = True
    #: what the stored policy has beyond the form, said on the page so nothing is a surprise
    kept: list[str] = field(default_factory=list)

    @classmethod
    def from_post(cls, form: Any) -> PolicyForm:
        """From the posted form (a werkzeug MultiDict: event_types repeats)."""
        return cls(
            name=form.get("name", ""),
            description=form.get("description", ""),
            notify_type=form.get("notify_type", "http"),
            payload_format=form.get("payload_format", "Default"),
            event_types=tuple(form.getlist("event_types")),
            address=form.get("address", ""),
            auth_header=form.get("auth_header", ""),
            verify_cert=form.get("verify_cert") == "on",
            enabled=form.get("enabled") == "on",
        )

    @classmethod
    def from_policy(cls, policy: PolicyView) -> PolicyForm:
        form = cls(name=policy.name, description=policy.description,
                   event_types=tuple(policy.event_types), enabled=policy.enabled,
                   kept=kept_extras(policy))
        if policy.targets:
            first = policy.targets[0]
            form.notify_type = first.type
            form.payload_format = first.payload_format or "Default"
            form.address = first.address
            form.auth_header = MASK if first.auth_header else ""
            form.verify_cert = not first.skip_cert_verify
        return form

    def to_raw(self, stored: PolicyView | None = None) -> dict[str, Any]:
        """The WebhookPolicy this form asks for, on top of `stored` when editing."""
        target = stored.targets[0].as_dict() if stored and stored.targets else {}
        target.update(type=self.notify_type, address=self.address,
                      skip_cert_verify=not self.verify_cert)
        known = self.notify_type in formats.target_types()
        named = formats.payload_formats(self.notify_type)
        row = formats.lookup(self.notify_type, self.payload_format if named else "")
        # what the chosen format has no field for goes, as Harbor's form sends none for Slack
        if named or not known:
            target["payload_format"] = self.payload_format
        else:
            target.pop("payload_format", None)
        for name in formats.option_owners():
            if row is None or name not in row.options:
                target.pop(name, None)
        if self.auth_header and (row is None or "auth_header" in row.uses):
            target["auth_header"] = self.auth_header  # MASK: the store keeps the old one
        else:
            target.pop("auth_header", None)
        others = [t.as_dict() for t in stored.targets[1:]] if stored else []
        return {
            "name": self.name,
            "description": self.description,
            "enabled": self.enabled,
            "event_types": list(self.event_types),
            "targets": [target, *others],
            **(stored.options if stored else {}),
        }


def raw_policy(policy: PolicyView, **changes: Any) -> dict[str, Any]:
    """A stored policy as a WebhookPolicy body, as Harbor's UI sends it back with a PUT."""
    raw = {
        "name": policy.name,
        "description": policy.description,
        "enabled": policy.enabled,
        "event_types": list(policy.event_types),
        "targets": [t.as_dict() for t in policy.targets],
        **policy.options,
    }
    raw.update(changes)
    return raw


def kept_extras(policy: PolicyView) -> list[str]:
    """What editing through the form keeps without showing it."""
    out = []
    if len(policy.targets) > 1:
        out.append(f"{len(policy.targets) - 1} more target(s)")
    first = policy.targets[0] if policy.targets else None
    if first is not None and first.secret:
        out.append("a signing secret")
    for name, value in first.options if first is not None else ():
        # cloudevents_mode: binary -> "CloudEvents binary mode"
        out.append(f"{first.payload_format} {value} {name.rsplit('_', 1)[-1]}")
    if policy.options.get("filters"):
        out.append("filters")
    if policy.options.get("pull_dedup_seconds"):
        out.append(f"pull de-duplication ({policy.options['pull_dedup_seconds']}s)")
    return out


#: Where in the form each field of the first target is edited.
_TARGET_FIELDS = {
    "address": "address", "type": "notify_type", "payload_format": "payload_format",
    "auth_header": "auth_header", "skip_cert_verify": "verify_cert",
}
_POLICY_FIELDS = {"name": "name", "description": "description", "event_types": "event_types",
                  "enabled": "enabled"}


def field_errors(problems: Sequence[Problem]) -> dict[str, list[str]]:
    """Each message under the form field it is about; GENERAL for the rest."""
    out: dict[str, list[str]] = {}
    for problem in problems:
        message = problem.message
        path = problem.path
        if len(path) > 1 and path[0] == "targets" and path[1] != 0:  # not the form's target
            message = f"target {int(path[1]) + 1}: {message}"
        out.setdefault(field_of(path), []).append(message)
    return out


def field_of(path: Sequence[str | int]) -> str:
    if not path:
        return GENERAL
    head = str(path[0])
    if head in _POLICY_FIELDS:
        return _POLICY_FIELDS[head]
    if head != "targets":
        return GENERAL
    if len(path) == 1:  # no target at all: the form's endpoint is what is missing
        return "address"
    if path[1] == 0 and len(path) > 2:
        return _TARGET_FIELDS.get(str(path[2]), GENERAL)
    return GENERAL if path[1] != 0 else "address"


def target_problems(problems: Sequence[Problem]) -> list[Problem]:
    """The problems Test Endpoint cares about: only the targets matter to it."""
    return [p for p in problems if p.path and p.path[0] == "targets"]
