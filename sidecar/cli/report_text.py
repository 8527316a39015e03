"""The operators' reports (/sidecar/status JSON, `api.ops.report`) as plain-text tables.

Pure: dicts in, text out. The CLI prints these; the values are already redacted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sidecar.timefmt import terminal_when as when


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], max_width: int = 60) -> str:
    """Left-aligned columns; a cell longer than `max_width` is cut with an ellipsis."""
    cells = [[_cell(v, max_width) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    lines = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    lines += ["  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip() for row in cells]
    return "\n".join(lines)


def _cell(value: Any, max_width: int) -> str:
    text = "" if value is None else " ".join(str(value).split())
    return text if len(text) <= max_width else text[: max_width - 1] + "…"


def code_error(item: dict[str, Any]) -> str:
    parts = [str(item["last_status_code"])] if item.get("last_status_code") else []
    if item.get("last_error"):
        parts.append(item["last_error"])
    return " ".join(parts)


def deliveries_table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "no deliveries"
    return table(
        ("ID", "EVENT", "PROJECT/POLICY", "TARGET", "STATUS", "ATTEMPTS", "CREATED",
         "LAST CODE/ERROR"),
        [(d["id"], d["event_type"], f"{d['project']}/{d['policy']}", d["target"]["address"],
          d["status"], f"{d['attempts']}/{d['max_attempts']}", when(d.get("created_at")),
          code_error(d)) for d in rows],
    )


def status_text(status: dict[str, Any]) -> str:
    """The status page's content, for a terminal."""
    out = []
    upstream = status.get("upstream") or {}
    healthy = upstream.get("healthy")
    health = "unknown" if healthy is None else ("reachable" if healthy else "UNREACHABLE")
    counts = status["deliveries"]
    queue = status["queue"]
    out.append(f"upstream      {upstream.get('url', '?')}  {health}")
    out.append(f"queue         {queue['depth']} waiting ({queue['due_now']} due now)")
    out.append("deliveries    " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if "notification_enable" in status:
        out.append("notifications " + ("enabled" if status["notification_enable"] else "DISABLED"))
    rules = status.get("rules") or {}
    if rules.get("error"):
        out.append(f"rules         REFUSED, previous rules in force:\n{rules['error']}")
    elif rules.get("file"):
        out.append(f"rules         {rules['file']} loaded {when(rules.get('loaded_at'))}")
    counts = status.get("policy_counts")
    if counts:
        out.append(f"policies      {counts['policies']} in {counts['projects']} projects "
                   f"({counts['enabled']} enabled)")
    endpoints = status.get("endpoints") or []
    if endpoints:
        total = status.get("endpoints_total", len(endpoints))
        states = status.get("endpoint_states") or {}
        shown = "" if total <= len(endpoints) else (
            f", the worst {len(endpoints)} of {total}: "
            + ", ".join(f"{n} {state}" for state, n in states.items()))
        out.append(f"\nENDPOINTS (failing first{shown})")
        out.append(table(
            ("STATE", "ENDPOINT", "POLICIES", "OK", "FAILED", "RETRYING", "LAST ATTEMPT",
             "LAST CODE/ERROR"),
            [(e["state"], e["address"], _policies_cell(e), e["delivered"], e["failed"],
              e["retrying"], when(e.get("last_attempt_at")), code_error(e)) for e in endpoints],
        ))
    policies = status.get("policies") or []
    if policies:
        out.append(f"\nPOLICIES (last trigger per event type{_page_note(status, policies)})")
        rows = []
        for p in policies:
            state = "enabled" if p["enabled"] else "disabled"
            triggers = p.get("triggers") or [
                {"event_type": k, "last_trigger_time": v, "status": None}
                for k, v in (p.get("last_trigger") or {}).items()
            ]
            if not triggers:
                rows.append((f"{p['project']}/{p['name']}", state, "", "never", ""))
            for i, t in enumerate(triggers):
                rows.append((f"{p['project']}/{p['name']}" if i == 0 else "",
                             state if i == 0 else "", t["event_type"],
                             when(t.get("last_trigger_time")), t.get("status") or ""))
        out.append(table(("POLICY", "STATE", "EVENT TYPE", "LAST TRIGGER", "OUTCOME"), rows))
    out.extend(quotas_text(status.get("quotas") or [], status.get("quotas_total")))
    out.extend(scans_text(status.get("scans") or {}))
    out.extend(replication_text(status.get("replication") or {}))
    out.extend(retention_text(status.get("retention") or {}))
    attention = (status.get("retrying") or []) + (status.get("recent_failures") or [])
    if attention:
        out.append("\nFAILED AND RETRYING")
        out.append(deliveries_table(attention))
    out.append("\nRECENT DELIVERIES")
    out.append(deliveries_table(status.get("recent") or []))
    return "\n".join(out)


def quotas_text(quotas: Sequence[dict[str, Any]], total: int | None) -> list[str]:
    """Storage quotas, fullest first (the status report keeps the fullest few)."""
    if not quotas:
        return []
    more = f", the fullest {len(quotas)} of {total}" if total and total > len(quotas) else ""
    return [f"\nSTORAGE QUOTAS{more}", table(
        ("PROJECT", "USED", "LIMIT", "PERCENT", "STATE"),
        [(q["project"], q["used_text"], q["limit_text"],
          "" if q.get("percent") is None else f"{q['percent']}%",
          q["state"] + (" (recalculating)" if q.get("recalculating") else ""))
         for q in quotas])]


def scans_text(scans: dict[str, Any]) -> list[str]:
    """Scans by status, the running ones and the latest failures with their reasons."""
    counts = {k: v for k, v in (scans.get("counts") or {}).items() if v}
    active = scans.get("active") or []
    failed = scans.get("failed") or []
    if not (counts or active or failed):
        return []
    out = ["\nSCANS  " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none yet")]
    rows = [(j["status"], j["artifact"], j["scanner"], when(j.get("created_at")),
             j.get("severity") or j.get("reason") or "") for j in [*active, *failed]]
    if rows:
        out.append(table(("STATUS", "ARTIFACT", "SCANNER", "QUEUED", "SEVERITY/REASON"), rows))
    return out


def replication_text(replication: dict[str, Any]) -> list[str]:
    """Replication's recent runs and failed tasks (registries are named, never credentials)."""
    runs = replication.get("recent_executions") or []
    failures = replication.get("recent_failures") or []
    if not (runs or failures):
        return []
    out = []
    if runs:
        out.append("\nRECENT REPLICATION RUNS")
        out.append(table(("ID", "POLICY", "TRIGGER", "STATUS", "STARTED", "SUCCEED", "FAILED"),
                         [(r.get("id"), r.get("policy_name") or r.get("policy_id"),
                           r.get("trigger"), r.get("status"), when(r.get("start_time")),
                           r.get("succeed", ""), r.get("failed", "")) for r in runs]))
    if failures:
        out.append("\nFAILED REPLICATION TASKS")
        out.append(table(("TASK", "SOURCE", "DESTINATION", "ATTEMPTS", "ERROR"),
                         [(t["id"], t["source"], t["destination"], t["attempts"], t["error"])
                          for t in failures]))
    return out


def retention_text(retention: dict[str, Any]) -> list[str]:
    """Tag retention: each project's policy, its next scheduled run and its last runs."""
    out: list[str] = []
    policies = retention.get("policies") or []
    if policies:
        out.append("\nTAG RETENTION")
        out.append(table(("PROJECT", "POLICY", "RULES", "SCHEDULE", "NEXT RUN"),
                         [(p["project"], p["id"], p["rules"], p["schedule"] or "manual",
                           when(p.get("next_run")) if p.get("next_run") else "-")
                          for p in policies]))
    runs = retention.get("recent_executions") or []
    if runs:
        out.append("\nRECENT RETENTION RUNS")
        out.append(table(("ID", "PROJECT", "TRIGGER", "STATUS", "STARTED", "TOTAL", "RETAINED",
                          "DELETED"),
                         [(e["id"], e["project"], e["trigger"] + (" (dry run)" if e["dry_run"]
                                                                  else ""),
                           e["status"], when(e.get("start_time")), e["total"], e["retained"],
                           f"would {e['total'] - e['retained']}" if e["dry_run"]
                           else e["deleted"]) for e in runs]))
    return out


def _policies_cell(endpoint: dict[str, Any]) -> str:
    names = ", ".join(endpoint["policies"])
    more = endpoint.get("policy_count", len(endpoint["policies"])) - len(endpoint["policies"])
    return f"{names} +{more} more" if more > 0 else names


def _page_note(status: dict[str, Any], shown: Sequence[Any]) -> str:
    """', 1-20 of 10000: --page 2 for more' when the report holds one page of many."""
    page = status.get("policies_page")
    if not page or page["total"] <= len(shown):
        return ""
    first = (page["page"] - 1) * page["page_size"] + 1
    note = f", {first}-{first + len(shown) - 1} of {page['total']}"
    if first + len(shown) - 1 < page["total"]:
        note += f": --page {page['page'] + 1} for more, --project/--policy to narrow"
    return note


def replay_text(result: dict[str, Any]) -> str:
    out = []
    requeued = result["requeued"]
    if requeued:
        out.append(f"re-queued {len(requeued)} deliveries:")
        out.append(deliveries_table(requeued))
    else:
        out.append("nothing re-queued")
    for item in result["skipped"]:
        out.append(f"skipped {item['id']}: {item['reason']}")
    return "\n".join(out)
