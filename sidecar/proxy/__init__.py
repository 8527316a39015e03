"""I/O: the transparent pass-through to the upstream registry, which reports what it saw."""
