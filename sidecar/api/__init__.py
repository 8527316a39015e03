"""HTTP surface of the sidecar itself (Flask): health, status, and the Harbor-compatible API."""
