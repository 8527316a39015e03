"""What operators ask of the store: status, delivery lists, replays. Shared by the status page,
/sidecar/status and the `sidecar status|deliveries|replay` commands, so they always agree.

Everything returned here is fit to show: targets pass through `public_target`, and error texts
are scrubbed of the secrets their target carries (an error or a receiver may echo them back).
Functions here touch the database: in a gevent worker call them through `Executor.run`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import unquote
from urllib.parse import urlencode
from urllib.parse import urlsplit

from peewee import fn

from sidecar.store import delivery_queue
from sidecar.store.models import DELIVERED
from sidecar.store.models import FAILED
from sidecar.store.models import PENDING
from sidecar.store.models import SENDING
from sidecar.store.models import Attempt
from sidecar.store.models import Delivery
from sidecar.store.models import Policy
from sidecar.store.models import Project

MASK = "***"
#: How many recent deliveries the per-endpoint summary looks at: bounded work at any table size.
ENDPOINT_WINDOW = 1000
#: Endpoint states, worst first: the order the status page lists them in.
ENDPOINT_STATES = ("failing", "retrying", "ok")


# -- redaction ---------------------------------------------------------------------------------
def redact_address(address: str) -> str:
    """An address fit to show: no userinfo, query values replaced by ***."""
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        return "<invalid address>"
    netloc = parts.hostname or ""
    if port:
        netloc = f"{netloc}:{port}"
    query = urlencode([(k, MASK) for k, _ in parse_qsl(parts.query, keep_blank_values=True)],
                      safe="*")
    return parts._replace(netloc=netloc, query=query, fragment="").geturl()


def public_target(target: dict[str, Any]) -> dict[str, Any]:
    """A target without its secrets: auth header and signing secret become ***."""
    return {
        "type": target.get("type", "http"),
        "address": redact_address(target.get("address", "")),
        "payload_format": target.get("payload_format", ""),
        "skip_cert_verify": bool(target.get("skip_cert_verify", False)),
        "auth_header": MASK if target.get("auth_header") else "",
        "signed": bool(target.get("secret")),
    }


def secrets_of(target: dict[str, Any]) -> list[str]:
    """Every secret-looking string a target carries, longest first (for `scrub`)."""
    found: set[str] = set()
    auth = str(target.get("auth_header") or "")
    if auth:
        found.add(auth)
        found.update(part for part in auth.split() if len(part) >= 4)
    secret = str(target.get("secret") or "")
    if secret:
        found.add(secret)
    try:
        parts = urlsplit(str(target.get("address") or ""))
        if parts.username:
            found.add(unquote(parts.username))
        if parts.password:
            found.add(unquote(parts.password))
        for _, value in parse_qsl(parts.query, keep_blank_values=False):
            found.add(value)
    except ValueError:
        pass
    return sorted((s for s in found if len(s) >= 3), key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    # an address quoted whole in an error: drop its query and userinfo the same way
    return re.sub(r"https?://[^\s'\"<>]+", lambda m: redact_address(m.group(0)), text)


# -- views -------------------------------------------------------------------------------------
def delivery_view(row: Delivery, history: list[Attempt] | None = None) -> dict[str, Any]:
    target = row.target
    secrets = secrets_of(target)
    view = {
        "id": row.id,
        "uid": row.uid,
        "event_type": row.event_type,
        "project": row.project,
        "policy": row.policy_name,
        "target": public_target(target),
        "status": row.status,
        "attempts": row.attempts,
        "max_attempts": row.max_attempts,
        "last_status_code": row.last_status_code,
        "last_error": scrub(row.last_error or "", secrets),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "finished_at": row.finished_at,
        "next_attempt_at": row.next_attempt_at if row.status == PENDING else None,
    }
    if history is not None:
        view["history"] = [
            {
                "number": a.number,
                "started_at": a.started_at,
                "duration_ms": a.duration_ms,
                "status_code": a.status_code,
                "error": scrub(a.error or "", secrets),
            }
            for a in history
        ]
    return view


def _histories(ids: Iterable[int]) -> dict[int, list[Attempt]]:
    wanted = sorted(set(ids))
    out: dict[int, list[Attempt]] = {i: [] for i in wanted}
    if not wanted:
        return out
    for attempt in (Attempt.select().where(Attempt.delivery.in_(wanted))
                    .order_by(Attempt.delivery, Attempt.number)):
        out[attempt.delivery_id].append(attempt)
    return out


def _views(rows: list[Delivery], with_history: bool) -> list[dict[str, Any]]:
    histories = _histories(r.id for r in rows) if with_history else {}
    return [delivery_view(r, histories.get(r.id) if with_history else None) for r in rows]


# -- status ------------------------------------------------------------------------------------
def endpoints(window: int = ENDPOINT_WINDOW) -> list[dict[str, Any]]:
    """Per target address over the last `window` deliveries, failing endpoints first.

    An endpoint is failing when its latest finished delivery failed, retrying when a
    delivery to it is waiting for another attempt, ok otherwise.
    """
    rows = (Delivery.select(Delivery.id, Delivery.target_json, Delivery.policy_name,
                            Delivery.project, Delivery.status, Delivery.attempts,
                            Delivery.last_status_code, Delivery.last_error, Delivery.updated_at,
                            Delivery.finished_at)
            .order_by(Delivery.id.desc()).limit(window))
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:  # newest first
        target = row.target
        shown = public_target(target)
        key = (shown["type"], shown["address"])
        entry = found.get(key)
        if entry is None:
            entry = found[key] = {
                "type": shown["type"], "address": shown["address"], "policies": [],
                "delivered": 0, "failed": 0, "retrying": 0, "pending": 0,
                "last_status": None, "last_status_code": None, "last_error": "",
                "last_attempt_at": None, "last_failure_at": None, "last_success_at": None,
                "state": "ok", "_secrets": set(),
            }
        entry["_secrets"].update(secrets_of(target))
        policy = f"{row.project}/{row.policy_name}"
        if policy not in entry["policies"]:
            entry["policies"].append(policy)
        if row.status == DELIVERED:
            entry["delivered"] += 1
            entry["last_success_at"] = entry["last_success_at"] or row.finished_at
        elif row.status == FAILED:
            entry["failed"] += 1
            entry["last_failure_at"] = entry["last_failure_at"] or row.finished_at
        elif row.attempts > 0:
            entry["retrying"] += 1
        else:
            entry["pending"] += 1
        if row.attempts > 0 and (entry["last_attempt_at"] is None
                                 or row.updated_at > entry["last_attempt_at"]):
            entry["last_attempt_at"] = row.updated_at
            entry["last_status"] = row.status
            entry["last_status_code"] = row.last_status_code
            entry["last_error"] = row.last_error or ""
    out = []
    for entry in found.values():
        secrets = sorted(entry.pop("_secrets"), key=len, reverse=True)
        entry["last_error"] = scrub(entry["last_error"], secrets)
        success, failure = entry["last_success_at"], entry["last_failure_at"]
        if failure is not None and (success is None or failure >= success):
            entry["state"] = "failing"
        elif entry["retrying"]:
            entry["state"] = "retrying"
        out.append(entry)
    out.sort(key=lambda e: (ENDPOINT_STATES.index(e["state"]),
                            -(e["last_attempt_at"] or 0), e["address"]))
    return out


def policy_triggers(project_id: int | None = None) -> list[dict[str, Any]]:
    """Every policy (of one project, if given) with, per event type, its last trigger
    (Harbor's lasttrigger) and how that delivery went."""
    out = []
    query = Policy.select(Policy, Project).join(Project)
    if project_id is not None:
        query = query.where(Policy.project == project_id)
    for policy in query.order_by(Project.name, Policy.name):
        latest = (Delivery.select(Delivery.event_type, fn.MAX(Delivery.id).alias("last_id"))
                  .where(Delivery.policy == policy.id).group_by(Delivery.event_type))
        last_ids = {row.event_type: row.last_id for row in latest}
        last_rows = {d.id: d for d in Delivery.select(
            Delivery.id, Delivery.created_at, Delivery.status, Delivery.event_type,
            Delivery.last_status_code,
        ).where(Delivery.id.in_(list(last_ids.values())))} if last_ids else {}
        triggers = []
        seen = list(policy.event_types) + sorted(set(last_ids) - set(policy.event_types))
        for event_type in seen:
            row = last_rows.get(last_ids.get(event_type))
            triggers.append({
                "event_type": event_type,
                "last_trigger_time": int(row.created_at) if row else None,
                "status": row.status if row else None,
                "status_code": row.last_status_code if row else None,
                "delivery_id": row.id if row else None,
            })
        out.append({
            "id": policy.id,
            "project": policy.project.name,
            "name": policy.name,
            "source": policy.source,
            "enabled": policy.enabled,
            "event_types": list(policy.event_types),
            "targets": [public_target(t) for t in policy.targets],
            "last_trigger": {t["event_type"]: t["last_trigger_time"] for t in triggers
                             if t["last_trigger_time"] is not None},
            "triggers": triggers,
        })
    return out


def queue_numbers(now: float | None = None) -> dict[str, Any]:
    """Deliveries by status, queue depth and how many are due: the status cards and metrics."""
    now = time.time() if now is None else now
    counts = delivery_queue.counts()
    due = Delivery.select().where(
        (Delivery.status == PENDING) & (Delivery.next_attempt_at <= now)).count()
    return {"deliveries": counts, "depth": counts[PENDING] + counts[SENDING], "due_now": due}


def status_report(limit: int = 20) -> dict[str, Any]:
    """Everything /sidecar/status reports from the store."""
    now = time.time()
    numbers = queue_numbers(now)
    failures = list(Delivery.select().where(Delivery.status == FAILED)
                    .order_by(Delivery.updated_at.desc()).limit(limit))
    recent = list(Delivery.select().order_by(Delivery.id.desc()).limit(limit))
    retrying = list(Delivery.select()
                    .where(Delivery.status.in_([PENDING, SENDING]) & (Delivery.attempts > 0))
                    .order_by(Delivery.updated_at.desc()).limit(limit))
    histories = _histories(r.id for r in failures + recent + retrying)
    return {
        "generated_at": now,
        "deliveries": numbers["deliveries"],
        "queue": {"depth": numbers["depth"], "due_now": numbers["due_now"]},
        "attempts": Attempt.select().count(),
        "endpoints": endpoints(),
        "recent_failures": [delivery_view(r, histories[r.id]) for r in failures],
        "retrying": [delivery_view(r, histories[r.id]) for r in retrying],
        "recent": [delivery_view(r, histories[r.id]) for r in recent],
        "policies": policy_triggers(),
    }


# -- delivery lists and replay -----------------------------------------------------------------
def list_deliveries(failed: bool = False, policy: str | None = None, project: str | None = None,
                    limit: int = 50, with_history: bool = False) -> list[dict[str, Any]]:
    """Newest first; `policy` is a policy name, or `project/name`."""
    query = Delivery.select()
    if failed:
        query = query.where(Delivery.status == FAILED)
    if policy:
        if "/" in policy:
            project, _, policy = policy.partition("/")
        query = query.where(Delivery.policy_name == policy)
    if project:
        query = query.where(Delivery.project == project)
    rows = list(query.order_by(Delivery.id.desc()).limit(max(1, limit)))
    return _views(rows, with_history)


def replay(ids: Iterable[int] = (), failed: bool = False, since: float | None = None,
           now: float | None = None) -> dict[str, Any]:
    """Queue finished deliveries again (`queue.requeue`: attempt history stays).

    `ids` picks deliveries; `failed` adds every failed one, finished within `since` seconds
    if given. Returns what was queued and, for asked-for ids, why one was not.
    """
    now = time.time() if now is None else now
    wanted = [int(i) for i in ids]
    skipped: list[dict[str, Any]] = []
    with Delivery._meta.database.atomic():
        chosen: dict[int, Delivery] = {}
        if wanted:
            rows = {d.id: d for d in Delivery.select().where(Delivery.id.in_(wanted))}
            for delivery_id in wanted:
                row = rows.get(delivery_id)
                if row is None:
                    skipped.append({"id": delivery_id, "reason": "no such delivery"})
                elif row.status not in (DELIVERED, FAILED):
                    skipped.append({"id": delivery_id,
                                    "reason": f"still {row.status}: it will be sent anyway"})
                else:
                    chosen[row.id] = row
        if failed:
            query = Delivery.select().where(Delivery.status == FAILED)
            if since is not None:
                query = query.where(Delivery.finished_at >= now - since)
            for row in query.order_by(Delivery.id):
                chosen[row.id] = row
        delivery_queue.requeue(chosen.keys(), now=now)
        rows = list(Delivery.select().where(Delivery.id.in_(list(chosen))).order_by(Delivery.id))
    requeued = [delivery_view(row) for row in rows] if chosen else []
    return {"requeued": requeued, "skipped": skipped}


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """'90s', '10m', '2h', '1d', '1w' (a bare number is seconds) -> seconds."""
    match = _DURATION.match(text.lower())
    if not match:
        raise ValueError(f"bad duration {text!r}: use a number with s, m, h, d or w, e.g. 10m")
    return float(match.group(1)) * _UNITS[match.group(2)]
