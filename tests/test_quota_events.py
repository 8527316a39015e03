"""Quota events in Harbor's words: sizes, the DENIED answer, the payloads and when warnings fire.

The goldens in tests/fixtures/harbor/quota/ were written by hand from Harbor's structs and
messages (constructQuotaPayload, ResourceOverflow, the request middleware's warning), not
generated from this code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecar.events.families import payload_for
from sidecar.events.model import QUOTA_EXCEED
from sidecar.events.model import QUOTA_WARNING
from sidecar.events.payload import encode
from sidecar.events.quota import DENIED_STATUS
from sidecar.events.quota import QuotaEvent
from sidecar.events.quota import decide_warning
from sidecar.events.quota import denied_body
from sidecar.events.quota import display_size
from sidecar.events.quota import exceed_message
from sidecar.events.quota import manifest_refs
from sidecar.events.quota import warning_message
from sidecar.record.recorder import build_records
from sidecar.rules.policy import Filters
from sidecar.store.policies import ProjectPolicies
from sidecar.store.policies import StoredPolicy
from tests.consumer_rules import assert_harbor_compatible

FIXTURES = Path(__file__).parent / "fixtures" / "harbor" / "quota"
KiB, MiB, GiB, TiB = 1024, 1024 ** 2, 1024 ** 3, 1024 ** 4
NGINX_126 = "sha256:402d21757a03a114d273bbe372fa4b9eca567e8b6c332fa7ebf982b902207242"
CHILD = "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4"


# --- Harbor's byteCountToDisplaySize ------------------------------------------------------------

@pytest.mark.parametrize(("value", "shown"), [
    (0, "0 B"),
    (1, "1 B"),
    (100, "100 B"),
    (1023, "1023 B"),
    (1024, "1.0 KiB"),
    (1075, "1.0 KiB"),            # 1.0498 KiB
    (1076, "1.1 KiB"),            # 1.0508 KiB
    (1280, "1.2 KiB"),            # exactly 1.25: half to even, as Go's %.1f
    (1536, "1.5 KiB"),
    (1792, "1.8 KiB"),            # exactly 1.75: half to even
    (1048575, "1024.0 KiB"),      # the quotient stays under 1024, the rounding does not
    (MiB, "1.0 MiB"),
    (2202010, "2.1 MiB"),
    (8703181, "8.3 MiB"),
    (10 * MiB, "10.0 MiB"),
    (GiB - 1, "1024.0 MiB"),
    (GiB, "1.0 GiB"),
    (3 * GiB // 2, "1.5 GiB"),
    (10 * GiB, "10.0 GiB"),
    (TiB, "1.0 TiB"),
    (3 * TiB // 2, "1.5 TiB"),
    (1024 * TiB, "1.0 PiB"),      # Harbor's largest limit
    (2 ** 63 - 1, "8.0 EiB"),     # int64's largest
    (-1, "-1 B"),                 # unlimited, should it ever be printed
])
def test_sizes_print_as_harbor_prints_them(value, shown):
    assert display_size(value) == shown


def test_exceed_message_is_harbors_sentence():
    assert exceed_message(2202010, 8703181, 10 * MiB) == (
        "adding 2.1 MiB of storage resource, which when updated to current usage of 8.3 MiB "
        "will exceed the configured upper limit of 10.0 MiB.")
    assert exceed_message(700, 1000, 1500) == (
        "adding 700 B of storage resource, which when updated to current usage of 1000 B "
        "will exceed the configured upper limit of 1.5 KiB.")


def test_warning_message_names_the_configured_threshold():
    assert warning_message(85, 9017753, 10 * MiB) == (
        "quota usage reach 85%: resource storage used 8.6 MiB of 10.0 MiB")
    assert warning_message(90, 10 * GiB, 10 * GiB) == (
        "quota usage reach 90%: resource storage used 10.0 GiB of 10.0 GiB")


def test_denied_body_is_the_oci_error_clients_print():
    message = exceed_message(2202010, 8703181, 10 * MiB)
    body = denied_body(message)
    assert DENIED_STATUS == 403
    assert body == ('{"errors":[{"code":"DENIED","message":"' + message + '"}]}\n').encode()
    assert json.loads(body) == {"errors": [{"code": "DENIED", "message": message}]}


# --- what a manifest push brings into a project ---------------------------------------------

def descriptor(media_type: str, name: str, size, **extra) -> dict:
    return {"mediaType": media_type, "digest": "sha256:" + name * 64, "size": size, **extra}


def test_manifest_refs_are_config_and_layers_without_foreign_ones():
    body = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": descriptor("application/vnd.docker.container.image.v1+json", "c", 1469),
        "layers": [
            descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", "a", 3208942),
            descriptor("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "f",
                       99999999, urls=["https://example.com/layer"]),
            descriptor("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "n",
                       88888888),
            descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", "a", 3208942),
            descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", "b", 0),
        ],
    }).encode()
    assert manifest_refs(body) == (("sha256:" + "c" * 64, 1469), ("sha256:" + "a" * 64, 3208942),
                                   ("sha256:" + "b" * 64, 0))


def test_an_index_brings_its_manifests():
    body = json.dumps({"schemaVersion": 2,
                       "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": [
                           descriptor("application/vnd.oci.image.manifest.v1+json", "1", 528,
                                      platform={"architecture": "amd64", "os": "linux"}),
                           descriptor("application/vnd.oci.image.manifest.v1+json", "2", 529)]
                       }).encode()
    assert manifest_refs(body) == (("sha256:" + "1" * 64, 528), ("sha256:" + "2" * 64, 529))


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'"text"', b"\xff\xfe"])
def test_not_a_manifest_brings_nothing(body):
    assert manifest_refs(body) is None


def test_garbage_descriptors_count_for_nothing():
    body = json.dumps({"config": "x", "layers": [
        None, 7, {"digest": "sha256:" + "a" * 64},                 # no size
        {"digest": "sha256:" + "b" * 64, "size": -5},               # negative
        {"digest": "sha256:" + "c" * 64, "size": True},             # not a number
        {"digest": "sha256:" + "d" * 64, "size": 1.5},
        {"digest": "", "size": 10}, {"size": 10},
        {"digest": "sha256:" + "e" * 64, "size": 10},
    ], "manifests": "nope"}).encode()
    assert manifest_refs(body) == (("sha256:" + "e" * 64, 10),)


# --- when QUOTA_WARNING fires -------------------------------------------------------------------

LIMIT = 1000  # 85% = 850


@pytest.mark.parametrize(("previous", "new", "warned", "repeat", "fire", "warned_after"), [
    (100, 800, False, "once", False, False),     # below the threshold: nothing
    (800, 850, False, "once", True, True),       # reaching 85% exactly fires
    (800, 900, False, "once", True, True),       # crossing fires
    (900, 950, True, "once", False, True),       # still above: once per crossing
    (950, 950, True, "once", False, True),       # no change
    (950, 400, True, "once", False, False),      # fell below: armed again
    (400, 900, False, "once", True, True),       # ... and the next crossing fires
    (900, 800, True, "once", False, False),      # a delete below the threshold re-arms
    (900, 950, False, "once", True, True),       # above but never told (limit lowered): tell
    (950, 900, False, "once", False, False),     # shrinking never fires, and stays unwarned
    (900, 950, True, "every_push", True, True),  # Harbor's behaviour: every push while above
    (950, 950, True, "every_push", False, True),  # ... that added bytes
    (100, 800, False, "every_push", False, False),
    (999, 1200, True, "once", False, True),      # over the limit (usage recalculated)
])
def test_warning_fires_once_per_crossing(previous, new, warned, repeat, fire, warned_after):
    decision = decide_warning(previous, new, LIMIT, 85, repeat, warned)
    assert (decision.fire, decision.warned) == (fire, warned_after)


def test_warning_threshold_is_harbors_integer_comparison():
    # used*100 >= hard*percent, no floating point: 849.99...% is below
    assert not decide_warning(0, 8499, 10000, 85, "once", False).fire
    assert decide_warning(0, 8500, 10000, 85, "once", False).fire
    assert decide_warning(0, 1, 100, 1, "once", False).fire
    assert not decide_warning(0, 99, 100, 100, "once", False).fire


def test_unlimited_quota_never_warns():
    for repeat in ("once", "every_push"):
        decision = decide_warning(0, 10 * TiB, -1, 85, repeat, False)
        assert (decision.fire, decision.warned) == (False, False)


def test_a_push_sequence_warns_once_then_again_after_a_delete():
    usage, warned, fired = 0, False, []
    for step, delta in enumerate([300, 300, 300, 50, 50, -600, 200, 400, 10]):
        decision = decide_warning(usage, usage + delta, LIMIT, 85, "once", warned)
        usage, warned = usage + delta, decision.warned
        if decision.fire:
            fired.append(step)
    # 900 at step 2 crosses; 950, 1000 do not repeat; the delete to 400 re-arms; 1000 crosses
    assert fired == [2, 7]


# --- the payloads -------------------------------------------------------------------------------

# name -> (event, public)
GOLDEN = {
    "exceed_manifest": (QuotaEvent(
        type=QUOTA_EXCEED, project="library", occur_at=1755763900, operator="alice",
        details=exceed_message(2202010, 8703181, 10 * MiB), repo_name="library/nginx",
        digest=NGINX_126, tag="1.26", request_id="r-1"), False),
    "exceed_blob": (QuotaEvent(
        type=QUOTA_EXCEED, project="team", occur_at=1755763901, operator="robot$team+ci",
        details=exceed_message(512 * MiB, 10522669875, 10 * GiB),
        repo_name="team/tools/ci/runner"), True),
    "warning_blob": (QuotaEvent(
        type=QUOTA_WARNING, project="library", occur_at=1755764000, operator="alice",
        details=warning_message(85, 9017753, 10 * MiB), repo_name="library/nginx"), False),
    "warning_manifest_by_digest": (QuotaEvent(
        type=QUOTA_WARNING, project="proj", occur_at=1755764001, operator="",
        details=warning_message(90, 960000, 1000 * KiB), repo_name="proj/app",
        digest=CHILD), True),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_quota_payload_matches_golden_bytes(name):
    event, public = GOLDEN[name]
    payload = payload_for(event, hostname="https://harbor.example.com", public=public,
                          date_created=1755700000)  # quota payloads carry no date_created
    expected = (FIXTURES / f"{name}.json").read_bytes().rstrip(b"\n")
    assert encode(payload) == expected, (
        f"Harbor's quota payload changed ({name}):\n  expected: {expected.decode()}\n"
        f"  actual:   {encode(payload).decode()}")
    assert_harbor_compatible(expected)


def test_golden_files_are_the_ones_tested():
    assert {f.stem for f in FIXTURES.glob("*.json")} == set(GOLDEN)


def test_quota_event_is_project_wide_for_filters_but_names_the_request_repository():
    event = GOLDEN["exceed_manifest"][0]
    assert (event.repository, event.name, event.project) == ("", "", "library")
    assert event.tags == ("1.26",) and event.digest == NGINX_126
    assert GOLDEN["exceed_blob"][0].tags == ()


def test_quota_event_without_a_repository_leaves_it_out():
    event = QuotaEvent(type=QUOTA_WARNING, project="library", occur_at=5, operator="admin",
                       details="quota usage reach 85%: resource storage used 9.0 GiB of 10.0 GiB")
    payload = payload_for(event, hostname="h", public=False)
    assert payload == {"type": QUOTA_WARNING, "occur_at": 5, "operator": "admin",
                       "event_data": {"custom_attributes": {"Details": event.details}}}
    assert_harbor_compatible(payload)


def test_recorder_records_quota_events_with_project_level_filters_only():
    hook = {"type": "http", "address": "http://ci.example/hook"}

    def policy(pid, filters):
        return StoredPolicy(id=pid, project="library", name=f"p{pid}", enabled=True,
                            event_types=(QUOTA_EXCEED,), targets=(hook,), filters=filters)

    projects = {"library": ProjectPolicies(name="library", public=False, policies=(
        policy(1, Filters()),
        policy(2, Filters(repositories=("other/**",), tags=("v*",))),  # not for project events
        policy(3, Filters(ignore_operators=("alice",))),                # still applies
    ))}
    event = GOLDEN["exceed_manifest"][0]
    (row,) = build_records([event], projects, {}, "harbor.example.com", True)
    assert (row.type, row.project, row.repository, row.operator, row.request_id) == (
        QUOTA_EXCEED, "library", "", "alice", "r-1")
    assert [d.policy_id for d in row.deliveries] == [1, 2]
    assert encode(row.payload) == (FIXTURES / "exceed_manifest.json").read_bytes().rstrip(b"\n")
