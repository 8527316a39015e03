"""Harbor's Slack message (its SlackBodyTemplate), block for block, but as valid JSON.

Harbor fills a text template and escapes only quotes, so its body carries raw newlines and
tabs inside strings: Slack tolerates that, strict JSON parsers do not. Building the message as
data gives the same blocks and the same text. Two deliberate differences: `&`, `<` and `>` in
values are escaped as Slack's mrkdwn requires, and a section longer than Slack's 3000-character
limit (Slack refuses the whole message) is cut with a visible marker.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sidecar.dispatch.formats.base import Context
from sidecar.dispatch.formats.base import Format

CONTENT_TYPE = "application/json"
#: Slack's limit for the text of a section block.
SECTION_LIMIT = 3000
#: Harbor's hard-coded fallback for clients that cannot render the <!date> token.
DATE_FALLBACK = "February 18th, 2014 at 6:39 AM PST"
FENCE = "```"


def mrkdwn_escape(text: str) -> str:
    """The three characters Slack's mrkdwn needs escaped; everything else is literal."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int = SECTION_LIMIT, *, closing: str = "") -> str:
    """`text` (which ends with `closing`) cut to `limit` characters with a marker saying so."""
    if len(text) <= limit:
        return text
    inner = text[: len(text) - len(closing)] if closing else text
    marker = f"\n… [cut: {len(text)} characters, Slack shows at most {limit}]"
    keep = inner[: max(0, limit - len(marker) - len(closing))]
    amp = keep.rfind("&")
    if amp >= 0 and ";" not in keep[amp:]:
        keep = keep[:amp]  # never leave half an &amp; entity
    return keep + marker + closing


def event_data_text(event_data: Any) -> str:
    """The last block: event_data indented with tabs, as Go's json.MarshalIndent(v, "", "\\t")."""
    body = json.dumps(event_data, indent="\t", ensure_ascii=False)
    return clip(FENCE + mrkdwn_escape(body) + FENCE, closing=FENCE)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text)}}


def slack_message(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The Block Kit message for one Default payload."""
    occur_at = int(payload.get("occur_at") or 0)
    return {
        "blocks": [
            _section("*Harbor webhook events*"),
            _section(f"*event_type:* {payload.get('type', '')}"),
            _section(f"*occur_at:* <!date^{occur_at}^{{date}} at {{time}}|{DATE_FALLBACK}>"),
            _section(f"*operator:* {mrkdwn_escape(str(payload.get('operator', '')))}"),
            _section("*event_data:*"),
            {"type": "section",
             "text": {"type": "mrkdwn", "text": event_data_text(payload.get("event_data"))}},
        ]
    }


def render_slack(payload: Mapping[str, Any], context: Context | None = None,
                 options: Mapping[str, str] | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(slack_message(payload), separators=(",", ":"), ensure_ascii=False)
    return body.encode("utf-8"), {"Content-Type": CONTENT_TYPE}


#: Harbor ignores a Slack target's auth_header (and so do we); a signing secret is refused.
#: Slack accepts one message per second per incoming-webhook URL.
FORMAT = Format(type="slack", payload_format="", render=render_slack, vendor_type="SLACK",
                ignores=frozenset({"auth_header"}), min_interval=1.0, rank=2)
