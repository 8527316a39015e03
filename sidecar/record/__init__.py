"""Events leave the request path at once; a background writer records them with their deliveries."""
