"""Real components for end-to-end tests: registry, sidecar process, receivers, images, clients."""
