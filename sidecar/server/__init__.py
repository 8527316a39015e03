"""The sidecar\x27s gunicorn worker: request heads, bodies, responses, the connection loop."""
