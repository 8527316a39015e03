"""The web UI under /sidecar/ui/: Harbor's webhook pages, server-rendered (see `pages`)."""

from sidecar.api.ui import replications as replications  # its routes join the blueprint
from sidecar.api.ui import retention as retention
from sidecar.api.ui.pages import bp as bp

__all__ = ["bp", "replications", "retention"]
