"""Storage quotas (issue 10): the books the proxy's gate keeps, and recalculation from the
registry as a background job. Enforcement itself is sidecar/proxy/quota_gate.py."""
