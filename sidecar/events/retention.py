"""TAG_RETENTION: one event per repository task of a retention run that deleted something.

Harbor builds it in `src/controller/event/handler/webhook/artifact/retention.go`
(`constructRetentionPayload`) from the struct `Retention` in `src/controller/event/model/event.go`,
and fires none for a dry run or a task that deleted nothing (`src/pkg/retention/callback.go`).
The event is project-wide (policies match it without repository or tag filters, as Harbor's
GetRelatedPolices does), so `repository`, `name`, `tags` and `digest` are empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.events.model import TAG_RETENTION
from sidecar.events.payload import split_hostname

#: What Harbor's retention callback writes in `result`, and each deleted artifact's `status`.
SUCCESS = "SUCCESS"
#: The operator of scheduled runs and of the deletions a run makes (Harbor's jobservice user).
JOBSERVICE_OPERATOR = "harbor-jobservice"


@dataclass(frozen=True)
class DeletedArtifact:
    """One artifact a task deleted. `repository` is the name inside the project (`a/b`)."""

    repository: str
    digest: str
    tags: tuple[str, ...] = ()  # newest first, as Harbor lists them: the payload names tags[0]

    @property
    def name_tag(self) -> str:
        if self.tags:
            return f"{self.repository}:{self.tags[0]}"
        return f"{self.repository}@{self.digest}"


@dataclass(frozen=True)
class TagRetentionEvent:
    """A retention task's result, as Harbor's `RetentionEvent` carries it.

    `rules` are the policy's rules in Harbor's JSON shape (all of them, disabled ones too, as
    Harbor copies `md.Rules`); `total` and `retained` count the task's candidates, `deleted`
    lists only the deletions that succeeded.
    """

    project: str
    occur_at: int
    operator: str
    policy_id: int
    total: int
    retained: int
    deleted: tuple[DeletedArtifact, ...]
    rules: tuple[Mapping[str, Any], ...] = ()
    request_id: str = ""
    type: str = TAG_RETENTION
    repository: str = ""  # project-wide (see the contract in events/model.py)
    name: str = ""
    tags: tuple[str, ...] = ()
    digest: str = ""


def harbor_hostname(hostname: str) -> str:
    """The host of `external_url`, without scheme or port (Harbor splits ExtURL() at ':')."""
    return split_hostname(hostname)[1].split("/")[0].split(":")[0]


def retention_payload(event: TagRetentionEvent, *, hostname: str, public: bool = False,
                      date_created: int | None = None) -> dict[str, Any]:
    """Harbor's Default payload of TAG_RETENTION, keys in the Go struct's order.

    Harbor (v2.10+) also writes `"references": null` in every deleted artifact; the sidecar
    sends no null (strict receivers refuse it) and leaves the key out, as Harbor up to v2.9.
    """
    retention: dict[str, Any] = {"total": int(event.total), "retained": int(event.retained)}
    host = harbor_hostname(hostname)
    if host:
        retention["harbor_hostname"] = host
    if event.deleted and event.project:  # Harbor: Deleted[0].Target.Namespace
        retention["project_name"] = event.project
    if event.policy_id:
        retention["retention_policy_id"] = int(event.policy_id)
    rules = [_rule(rule) for rule in event.rules]
    if rules:
        retention["retention_rule"] = rules
    retention["result"] = SUCCESS
    if event.deleted:
        retention["deleted_artifact"] = [
            {"type": "image", "status": SUCCESS, "name_tag": artifact.name_tag}
            for artifact in event.deleted
        ]
    return {
        "type": event.type,
        "occur_at": int(event.occur_at),
        "operator": event.operator,
        "event_data": {"retention": retention},
    }


def _rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """evtModel.RetentionRule: four omitempty members; selectors keep all four keys."""
    out: dict[str, Any] = {}
    if rule.get("template"):
        out["template"] = rule["template"]
    if rule.get("params"):
        out["params"] = dict(sorted(rule["params"].items()))
    if rule.get("tag_selectors"):
        out["tag_selectors"] = [_selector(s) for s in rule["tag_selectors"]]
    scope = rule.get("scope_selectors") or {}
    if scope:
        out["scope_selectors"] = {key: [_selector(s) for s in scope[key]]
                                  for key in sorted(scope)}
    return out


def _selector(selector: Mapping[str, Any]) -> dict[str, str]:
    return {"kind": selector.get("kind", ""), "decoration": selector.get("decoration", ""),
            "pattern": selector.get("pattern", ""), "extras": selector.get("extras", "")}
