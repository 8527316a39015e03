"""/sidecar/healthz and /sidecar/status: is it working, what was sent, what failed and why.

Nothing here shows a secret: targets appear without auth headers, and their addresses without
userinfo or query values (tokens often live there: Flux and VelaUX put them in the path or query).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import urlencode
from urllib.parse import urlsplit

from flask import Blueprint
from flask import current_app
from flask import jsonify
from peewee import fn

from sidecar.store import queue
from sidecar.store.models import FAILED
from sidecar.store.models import PENDING
from sidecar.store.models import SENDING
from sidecar.store.models import Attempt
from sidecar.store.models import Delivery
from sidecar.store.models import Policy
from sidecar.store.models import Project

bp = Blueprint("status", __name__, url_prefix="/sidecar")


def redact_address(address: str) -> str:
    """An address fit to show: no userinfo, query values replaced by ***."""
    try:
        parts = urlsplit(address)
    except ValueError:
        return "<invalid address>"
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    query = urlencode([(k, "***") for k, _ in parse_qsl(parts.query, keep_blank_values=True)])
    return parts._replace(netloc=netloc, query=query).geturl()


def public_target(target: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": target.get("type", "http"),
        "address": redact_address(target.get("address", "")),
        "payload_format": target.get("payload_format", ""),
        "skip_cert_verify": bool(target.get("skip_cert_verify", False)),
        "auth_header": "***" if target.get("auth_header") else "",
    }


def _delivery_view(row: Delivery) -> dict[str, Any]:
    return {
        "id": row.id,
        "uid": row.uid,
        "event_type": row.event_type,
        "project": row.project,
        "policy": row.policy_name,
        "target": public_target(row.target),
        "status": row.status,
        "attempts": row.attempts,
        "max_attempts": row.max_attempts,
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "next_attempt_at": row.next_attempt_at if row.status == PENDING else None,
    }


def collect_status(limit: int = 20) -> dict[str, Any]:
    """Everything /sidecar/status reports from the store (runs on a database thread)."""
    now = time.time()
    counts = queue.counts()
    due = Delivery.select().where(
        (Delivery.status == PENDING) & (Delivery.next_attempt_at <= now)).count()
    failures = list(
        Delivery.select().where(Delivery.status == FAILED)
        .order_by(Delivery.updated_at.desc()).limit(limit)
    )
    recent = list(Delivery.select().order_by(Delivery.id.desc()).limit(limit))
    retrying = list(
        Delivery.select().where((Delivery.status.in_([PENDING, SENDING]))
                                & (Delivery.attempts > 0))
        .order_by(Delivery.updated_at.desc()).limit(limit)
    )
    policies = []
    for policy in Policy.select(Policy, Project).join(Project).order_by(Project.name, Policy.name):
        last = (Delivery.select(Delivery.event_type, fn.MAX(Delivery.created_at).alias("t"))
                .where(Delivery.policy == policy.id).group_by(Delivery.event_type))
        policies.append({
            "project": policy.project.name,
            "name": policy.name,
            "source": policy.source,
            "enabled": policy.enabled,
            "event_types": list(policy.event_types),
            "targets": [public_target(t) for t in policy.targets],
            "last_trigger": {row.event_type: int(row.t) for row in last},
        })
    attempts_total = Attempt.select().count()
    return {
        "deliveries": counts,
        "queue": {"depth": counts[PENDING] + counts[SENDING], "due_now": due},
        "attempts": attempts_total,
        "recent_failures": [_delivery_view(r) for r in failures],
        "retrying": [_delivery_view(r) for r in retrying],
        "recent": [_delivery_view(r) for r in recent],
        "policies": policies,
    }


@bp.get("/healthz")
def healthz():
    runtime = current_app.extensions["sidecar"]
    up = runtime.upstream.healthy()
    body = {"status": "ok" if up else "upstream unavailable", "upstream": runtime.upstream.url}
    return jsonify(body), 200 if up else 503


@bp.get("/status")
def status():
    runtime = current_app.extensions["sidecar"]
    body = runtime.executor.run(collect_status)
    body["upstream"] = {"url": runtime.upstream.url, "healthy": runtime.upstream.healthy()}
    body["rules"] = runtime.rules_state()
    body["recorder"] = {"buffered": runtime.recorder.backlog, "dropped": runtime.recorder.dropped}
    body["notification_enable"] = runtime.executor.run(runtime.notifications_enabled)
    return jsonify(body)
