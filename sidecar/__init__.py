"""Harbor-compatible webhooks for any OCI registry."""

__version__ = "0.1.0"
