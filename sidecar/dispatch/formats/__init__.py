"""Payload formats: each turns the stored Harbor Default payload into (body, headers). Pure."""
