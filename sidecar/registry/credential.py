"""Who the sidecar is toward a registry: a user name and a password (or a robot's secret)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from dataclasses import field


@dataclass(frozen=True)
class Credential:
    """A registry identity. The password stays out of repr() so no log line can carry it."""

    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        """The Authorization value for Basic auth (registries with htpasswd, token services)."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")
