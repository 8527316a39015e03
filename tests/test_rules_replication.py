"""The `registries:` and `replication:` sections: Harbor's objects, Harbor's checks and words,
at file:line; and what a policy's filters select, read as Harbor reads them."""

from __future__ import annotations

import pytest

from sidecar.rules.load import RulesError
from sidecar.rules.load import parse_rules
from sidecar.rules.registries import normalise_url
from sidecar.rules.replication import EXCLUDES
from sidecar.rules.replication import Filter
from sidecar.rules.replication import ReplicationPolicy
from sidecar.rules.replication import cron_problem
from sidecar.rules.replication import destination_repository

SOURCE = "rules.yaml"
ENV = {"DR_SECRET": "s3cret-value"}

GOOD = """\
registries:
  - name: dr
    type: docker-registry
    url: https://dr.example.com/
    credential: {type: basic, access_key: robot, access_secret: "${DR_SECRET}"}
    insecure: false
  - name: central
    type: harbor
    url: central.example.com
replication:
  - name: to-dr
    description: disaster recovery copy
    enabled: true
    dest_registry: dr
    dest_namespace: mirror
    trigger: {type: event_based}
    filters:
      - {type: name, value: "library/**"}
      - {type: tag, value: "v*"}
    replicate_deletion: true
    override: false
    speed: -1
  - name: nightly
    dest_registry: central
    trigger: {type: scheduled, trigger_settings: {cron: "0 0 2 * * *"}}
"""


def problems(text: str, environ=None) -> list[str]:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, SOURCE, ENV if environ is None else environ)
    return caught.value.problems


def test_a_good_file_reads_into_harbors_objects():
    rules = parse_rules(GOOD, SOURCE, ENV)
    dr, central = rules.registries
    assert (dr.name, dr.type, dr.url, dr.line) == ("dr", "docker-registry",
                                                   "https://dr.example.com", 2)
    assert dr.credential.access_key == "robot" and dr.credential.access_secret == ENV[
        "DR_SECRET"]
    assert "s3cret" not in repr(dr), "the secret stays out of repr (logs, tracebacks)"
    assert central.url == "http://central.example.com"  # Harbor adds http://
    assert central.credential is None
    to_dr, nightly = rules.replication
    assert to_dr.line == 11 and to_dr.dest_registry == "dr"
    assert (to_dr.trigger, to_dr.replicate_deletion, to_dr.override, to_dr.speed) == (
        "event_based", True, False, 0)  # Harbor stores a negative speed as 0
    assert to_dr.dest_namespace_replace_count == -1
    assert nightly.trigger == "scheduled" and nightly.cron == "0 0 2 * * *"
    assert nightly.override and nightly.enabled


def test_every_problem_is_named_with_its_line():
    text = """\
registries:
  - name: dr
    type: aws-ecr
    url: ftp://dr.example.com
    credential: {access_key: robot}
  - name: dr2
    url: https://ok.example.com
    colour: blue
replication:
  - name: to-dr
    dest_registry: dr2
    src_registry: somewhere
    dest_namespace: Mirror
    trigger: {type: scheduled, trigger_settings: {cron: "0 * 2 * * *"}}
    filters:
      - {type: label, value: [prod]}
      - {type: name, value: "library/**", decoration: excludes}
      - {type: tag, value: "v*", decoration: maybe}
      - {type: tag, value: "[v"}
    speed: fast
  - name: to-dr
    dest_registry: dr2
    single_active_replication: true
    trigger: {type: event_based}
"""
    assert problems(text) == [
        f"{SOURCE}:3: registry type aws-ecr is Harbor's but not supported here (supported: "
        "docker-registry, harbor; most registries speak the OCI distribution API: use "
        "docker-registry)",
        f"{SOURCE}:4: invalid HTTP scheme: ftp",
        f"{SOURCE}:5: credential.access_secret is empty",
        f"{SOURCE}:8: unknown key 'colour' in registry (expected one of name, type, url, "
        "credential, insecure, description, ca_certificate)",
        f"{SOURCE}:12: pull-mode replication (src_registry) is not supported: the sidecar "
        "replicates what is pushed to it to a dest_registry",
        f"{SOURCE}:13: invalid destination namespace: Mirror",
        f"{SOURCE}:14: * is not allowed for the Minutes field of the cron setting of "
        "replication policy",
        f"{SOURCE}:16: label filters are not supported: a plain registry has no labels "
        "(filter by name and tag)",
        f"{SOURCE}:17: only tag and label filter support decoration",
        f"{SOURCE}:18: invalid filter decoration, :maybe",
        f"{SOURCE}:19: unbalanced brackets in pattern '[v'",
        f"{SOURCE}:20: speed must be a whole number of KB/s (-1 or 0: unlimited)",
        f"{SOURCE}:23: single active replication is not allowed for event_based triggers",
    ]


def test_a_policy_naming_an_unknown_registry_is_refused():
    text = GOOD.replace("dest_registry: central", "dest_registry: nowhere")
    assert problems(text) == [f"{SOURCE}:24: registry nowhere not found (declared under "
                              "'registries': dr, central)"]


def test_names_are_unique():
    text = GOOD + "  - name: nightly\n    dest_registry: dr\n"
    assert problems(text) == [f"{SOURCE}:26: replication policy nightly already exists"]
    text = GOOD.replace("  - name: central", "  - name: dr")
    assert problems(text)[0] == f"{SOURCE}:7: registry dr already exists"


def test_an_unset_secret_is_named_once_and_never_quoted():
    found = problems(GOOD, environ={})
    assert found == [f"{SOURCE}:5: environment variable DR_SECRET is not set"]
    text = GOOD.replace('access_secret: "${DR_SECRET}"', "access_secret: 12345")
    found = problems(text)
    assert found == [f"{SOURCE}:5: credential.access_secret must be a string (quote it in "
                     "YAML)"]
    assert "12345" not in found[0]


@pytest.mark.parametrize("cron, message", [
    ("", "the cron string cannot be empty when the trigger type is scheduled"),
    ("@daily", "invalid cron string for scheduled trigger: @daily"),
    ("0 0 2 * *", "invalid cron string for scheduled trigger: 0 0 2 * *"),
    ("5 0 2 * * *", "the 1st field (indicating Seconds of time) of the cron setting must be 0"),
    ("0 * 2 * * *", "* is not allowed for the Minutes field of the cron setting of "
                    "replication policy"),
    ("0 0 2 * * *", None),
    ("0 30 2 * * 1-5", None),
])
def test_replication_schedules_are_checked_as_harbor_checks_them(cron, message):
    assert cron_problem(cron) == message


def test_deletion_is_harbors_request_field_and_replicate_deletion_its_answer():
    base = "registries: [{name: dr, url: dr.example.com}]\nreplication:\n  - name: p\n" \
           "    dest_registry: dr\n"
    [policy] = parse_rules(base + "    deletion: true\n", SOURCE, {}).replication
    assert policy.replicate_deletion
    assert problems(base + "    deletion: true\n    replicate_deletion: false\n") == [
        f"{SOURCE}:5: deletion and replicate_deletion disagree: write one of them"]


@pytest.mark.parametrize("raw, expected", [
    (" https://r.example.com/ ", ("https://r.example.com", None)),
    ("r.example.com:5000", ("http://r.example.com:5000", None)),
    ("https://r.example.com/sub?x=1", ("https://r.example.com/sub", None)),
    ("", ("", "empty string")),
    ("https://u:p@r.example.com", ("", "credentials in the URL: use credential.access_key "
                                       "and access_secret")),
])
def test_urls_are_normalised_as_harbor_does(raw, expected):
    assert normalise_url(raw) == expected


# -- what a policy selects -------------------------------------------------------------------

def policy(*filters: Filter) -> ReplicationPolicy:
    return ReplicationPolicy(name="p", dest_registry="dr", filters=filters)


def test_name_filters_read_the_full_path_with_its_project():
    chosen = policy(Filter("name", "library/**"))
    assert chosen.selects_repository("library/nginx")
    assert chosen.selects_repository("library/a/b")
    assert not chosen.selects_repository("team/nginx")
    assert policy(Filter("name", "library/{nginx,redis}")).selects_repository("library/redis")
    assert not policy(Filter("name", "library/*")).selects_repository("library/a/b")
    assert policy(Filter("name", "")).selects_repository("anything/at/all")
    assert policy().selects_repository("x/y")


def test_tag_filters_keep_only_the_tags_they_select():
    chosen = policy(Filter("tag", "v*"))
    assert chosen.selected_tags(("v1", "latest", "v2")) == ("v1", "v2")
    assert chosen.selected_tags(("latest",)) is None
    assert chosen.selected_tags(()) is None, "untagged is tested as '': v* does not match"
    assert policy(Filter("tag", "**")).selected_tags(()) == ()
    excluded = policy(Filter("tag", "*-rc*", EXCLUDES))
    assert excluded.selected_tags(("1.0", "1.1-rc1")) == ("1.0",)
    assert excluded.selected_tags(()) == (), "'' is not excluded by *-rc*"
    both = policy(Filter("tag", "v*"), Filter("tag", "*-rc*", EXCLUDES))
    assert both.selected_tags(("v1", "v2-rc1", "x")) == ("v1",)
    assert policy().selected_tags(("a",)) == ("a",)


@pytest.mark.parametrize("count, expected", [
    (-1, "mirror/nginx"), (0, "mirror/library/a/b/nginx"), (1, "mirror/a/b/nginx"),
    (2, "mirror/b/nginx"), (3, "mirror/nginx"),
])
def test_destination_namespaces_as_harbors_replace_count(count, expected):
    assert destination_repository("library/a/b/nginx", "mirror", count) == expected


def test_a_replace_count_beyond_the_path_is_harbors_error():
    with pytest.raises(ValueError, match="contains only 3 path components"):
        destination_repository("library/a/b/nginx", "mirror", 4)
    assert destination_repository("library/nginx", "", 4) == "library/nginx"
