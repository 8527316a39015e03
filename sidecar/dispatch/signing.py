"""Standard Webhooks signatures (standardwebhooks.com, v1 symmetric): beyond Harbor.

Harbor's only authenticity mechanism is a shared Authorization value; receivers that verify
HMAC (argocd-image-updater, Svix-style libraries) need a signature over the exact bytes sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from sidecar.rules.target import secret_key


def signature_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """`webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256>` of
    `msg_id.timestamp.body`. `msg_id` stays the same on every retry (the receiver's
    idempotency key); `timestamp` is the attempt's, so a replayed capture ages out."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii"),
    }
