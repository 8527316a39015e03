"""The operators' pages: /sidecar/healthz, /sidecar/status (JSON and HTML), /sidecar/metrics."""
