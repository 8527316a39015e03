"""Scanning through Harbor's Pluggable Scanner Adapter API: the protocol (spec, report,
summary: pure) and the HTTP client that drives an adapter (client)."""
