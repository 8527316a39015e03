"""The quota event family: QUOTA_EXCEED and QUOTA_WARNING, in Harbor's words.

What a refused client reads (the 403 DENIED body) and what a receiver reads
(`custom_attributes.Details`) are the same sentence, built here from three numbers, so the two
can never disagree. Whether a warning fires is decided here too, from the usage before and
after a change and the project's last warning state, so every worker and sidecar that settles
a push in the store applies the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sidecar.events.manifest import parse_manifest
from sidecar.events.model import QUOTA_EXCEED
from sidecar.events.model import QUOTA_WARNING
from sidecar.events.payload import encode

__all__ = ["QUOTA_EXCEED", "QUOTA_WARNING", "QuotaEvent", "WarningDecision", "decide_warning",
           "denied_body", "display_size", "exceed_message", "manifest_refs", "quota_payload",
           "warning_message"]

#: Harbor answers a refused push with 403 and this content type (lib/http SendError).
DENIED_STATUS = 403
DENIED_CONTENT_TYPE = "application/json; charset=utf-8"
EVERY_PUSH = "every_push"


def display_size(value: int) -> str:
    """A byte count as Harbor's quota messages print it: `100 B`, `2.1 MiB`, `10.0 GiB`.

    Below 1024 the bytes themselves; above, one decimal of the largest binary unit that keeps
    the integer quotient under 1024, so 1048575 bytes is `1024.0 KiB`, as in Harbor. Python's
    `.1f` and Go's `%.1f` both round the exact binary value half to even, so they agree.
    """
    value = int(value)
    if value < 1024:
        return f"{value} B"
    divisor, exponent, quotient = 1024, 0, value // 1024
    while quotient >= 1024:
        quotient //= 1024
        divisor *= 1024
        exponent += 1
    # float(value) / float(divisor), as Go's float64 conversions: int / int would round once
    # where Go rounds twice, and past 2**53 bytes the two can differ
    return f"{float(value) / float(divisor):.1f} {'KMGTPE'[exponent]}iB"


def exceed_message(delta: int, current: int, hard: int) -> str:
    """Harbor's ResourceOverflow sentence for a request that would take `current` past `hard`."""
    operation = "adding" if delta > 0 else "subtracting"
    return (f"{operation} {display_size(abs(delta))} of storage resource, which when updated to "
            f"current usage of {display_size(current)} will exceed the configured upper limit "
            f"of {display_size(hard)}.")


def warning_message(percent: int, used: int, hard: int) -> str:
    """Harbor's QUOTA_WARNING detail (its `85` is our configurable threshold)."""
    return (f"quota usage reach {int(percent)}%: resource storage used {display_size(used)} "
            f"of {display_size(hard)}")


def denied_body(message: str) -> bytes:
    """The body of Harbor's 403: docker, podman and skopeo print `message` to the user."""
    return encode({"errors": [{"code": "DENIED", "message": message}]}) + b"\n"


#: Layers a registry does not store (pulled from their `urls`): Harbor's quota skips Docker's
#: foreign layers; OCI's non-distributable layers are the same thing.
FOREIGN_MEDIA_TYPES = frozenset({
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
})


def manifest_refs(body: bytes) -> tuple[tuple[str, int], ...] | None:
    """The blobs a manifest push brings into a project, at their declared sizes: its config
    and layers (an index: its manifests), foreign layers left out, each digest once.

    None when the body is not a manifest (the registry will refuse it; nothing is counted).
    A descriptor without a digest or a whole non-negative size counts for nothing: the
    registry refuses such a manifest too, and a lie cannot make usage negative.
    """
    manifest = parse_manifest(body)
    if manifest is None:
        return None
    descriptors: list[Any] = [manifest.get("config")]
    for key in ("layers", "manifests", "blobs"):
        items = manifest.get(key)
        if isinstance(items, list):
            descriptors.extend(items)
    refs: dict[str, int] = {}
    for item in descriptors:
        if not isinstance(item, dict) or item.get("mediaType") in FOREIGN_MEDIA_TYPES:
            continue
        digest, size = item.get("digest"), item.get("size")
        if (isinstance(digest, str) and digest and isinstance(size, int)
                and not isinstance(size, bool) and size >= 0):
            refs.setdefault(digest, size)
    return tuple(refs.items())


@dataclass(frozen=True)
class WarningDecision:
    fire: bool
    warned: bool  # the state to keep for the next decision


def decide_warning(previous: int, new: int, hard: int, percent: int, repeat: str,
                   warned: bool) -> WarningDecision:
    """Whether a change of usage from `previous` to `new` fires QUOTA_WARNING.

    Harbor fires after every successful push while usage is at or above the threshold
    (`used*100 >= hard*percent`): one image push, a dozen webhooks. Here it fires once per
    crossing: `warned` stays set while usage is above, and clears only when usage falls below,
    so the next crossing fires again. `every_push` gives Harbor's behaviour back. Only a change
    that added bytes fires; unlimited quotas never do.
    """
    if hard < 0 or new * 100 < hard * percent:
        return WarningDecision(fire=False, warned=False)
    grew = new > previous
    if repeat == EVERY_PUSH:
        return WarningDecision(fire=grew, warned=True)
    return WarningDecision(fire=grew and not warned, warned=warned or grew)


@dataclass(frozen=True)
class QuotaEvent:
    """A refused push (QUOTA_EXCEED) or a crossed threshold (QUOTA_WARNING) of one project.

    A project-wide event in the events contract: `repository` is "" so repository and tag
    filters do not apply, and `project` names the project. `repo_name` is the repository of
    the request that caused it, which Harbor's payload shows; `digest`/`tag` are known only
    for a manifest push (Harbor sends `resources` only then). `details` is the message.
    """

    type: str
    project: str
    occur_at: int
    operator: str
    details: str
    repo_name: str = ""
    digest: str = ""
    tag: str = ""
    request_id: str = ""

    @property
    def repository(self) -> str:
        return ""

    @property
    def name(self) -> str:
        return ""

    @property
    def tags(self) -> tuple[str, ...]:
        return (self.tag,) if self.tag else ()


def quota_payload(event: QuotaEvent, *, hostname: str = "", public: bool = False,
                  date_created: int | None = None) -> dict[str, Any]:
    """Harbor's Default payload of a quota event (constructQuotaPayload), field for field.

    No `resource_url` and no `date_created`, as Harbor; `resources` only when a digest or tag
    is known. An event with no repository (none in Harbor) leaves `repository` out rather than
    sending empty names a receiver would try to use.
    """
    event_data: dict[str, Any] = {}
    if event.digest or event.tag:
        resource: dict[str, Any] = {}
        if event.digest:
            resource["digest"] = event.digest
        if event.tag:
            resource["tag"] = event.tag
        event_data["resources"] = [resource]
    if event.repo_name:
        event_data["repository"] = {
            "name": event.repo_name.partition("/")[2],
            "namespace": event.project,
            "repo_full_name": event.repo_name,
            "repo_type": "public" if public else "private",
        }
    event_data["custom_attributes"] = {"Details": event.details}
    return {
        "type": event.type,
        "occur_at": int(event.occur_at),
        "operator": event.operator,
        "event_data": event_data,
    }
