"""What a payload format is: one row of the formats table (see `formats/__init__.py`). Pure."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

#: (Default payload, context, the target's options) -> (body, content headers)
Renderer = Callable[[Mapping[str, Any], "Context", Mapping[str, str]],
                    tuple[bytes, dict[str, str]]]


@dataclass(frozen=True)
class Context:
    """What a format needs besides payload and target, passed in so rendering stays pure.

    `delivery_uid` is stable across retries (CloudEvents id, webhook-id); `now` is the
    attempt's time (webhook-timestamp); `request_id` is the client's X-Request-Id or the one
    generated when the event was recorded.
    """

    delivery_uid: str
    now: float
    policy_id: int | None = None
    project_id: int | None = None
    request_id: str = ""


@dataclass(frozen=True)
class Format:
    """A (target type, payload format) pair and everything that differs between formats.

    Every target has `type`, `address`, `skip_cert_verify` and `payload_format`; `uses` names
    the optional fields this format acts on (`auth_header` is sent as Authorization, `secret`
    signs the body), `ignores` those it accepts but never sends (as Harbor does), `options` the
    fields only it knows, each with its allowed values (the first is the default). Rules
    validation, rendering, the API, the UI and the dispatcher's pacing all read this row.
    """

    type: str
    #: "" for a target type with one fixed body (Slack), where Harbor refuses a format
    payload_format: str
    render: Renderer
    #: Harbor's execution vendor_type for deliveries of this format (WEBHOOK, SLACK)
    vendor_type: str
    uses: frozenset[str] = frozenset()
    ignores: frozenset[str] = frozenset()
    options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: whether the body names the policy's project id (a store lookup before rendering)
    needs_project_id: bool = False
    #: least seconds between two sends to one address (all workers and sidecars sharing the
    #: store); 0: no pacing
    min_interval: float = 0.0
    #: position in lists: the API's payload_formats, the UI's selects, the CLI's choices
    rank: int = 100

    @property
    def key(self) -> tuple[str, str]:
        return (self.type, self.payload_format)

    @property
    def name(self) -> str:
        """`http-Default`, `slack`: how tests and goldens name the format."""
        return f"{self.type}-{self.payload_format}" if self.payload_format else self.type

    def accepts(self, field_name: str) -> bool:
        return field_name in self.uses or field_name in self.ignores or field_name in self.options

    def option_values(self, chosen: Mapping[str, str]) -> dict[str, str]:
        """This format's options as a target sets them, defaults filled in."""
        return {name: chosen.get(name) or values[0] for name, values in self.options.items()}
