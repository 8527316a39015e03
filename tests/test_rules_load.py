"""The rules file: Harbor's WebhookPolicy validation, in Harbor's words, at the right file:line."""

from __future__ import annotations

import textwrap

import pytest

from sidecar.rules.load import RulesError
from sidecar.rules.load import expand_env
from sidecar.rules.load import load_rules
from sidecar.rules.load import parse_rules

SOURCE = "rules.yaml"

VALID = """\
# a comment first, so lines are not all off by one
projects:
  - name: library
    public: true
    webhooks:
      - name: ci
        description: tell CI
        enabled: true
        event_types: [PUSH_ARTIFACT, DELETE_ARTIFACT, PUSH_ARTIFACT]
        targets:
          - type: http
            address: http://127.0.0.1:9000/hook?x=1
            auth_header: Bearer s3cret
            skip_cert_verify: true
            payload_format: CloudEvents
          - address: https://chat.example/hook
      - name: chat
        event_types:
          - PULL_ARTIFACT
        targets:
          - type: slack
            address: https://hooks.slack.com/services/T/B/X
  - name: team-b.dev_x
    webhooks: []
  - name: empty
"""


def policy_text(body: str, *, project: str = "proj") -> str:
    """A rules file with one project whose webhooks list is `body` (indented YAML items)."""
    return f"projects:\n  - name: {project}\n    webhooks:\n" + textwrap.indent(
        textwrap.dedent(body), "      ")


HOOK = """\
- name: ci
  event_types: [PUSH_ARTIFACT]
  targets:
    - address: http://ci.example/hook
"""


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line of the nth line containing `needle` (so tests name lines by content)."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) >= nth, f"{needle!r} not in text"
    return hits[nth - 1]


def problems(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(RulesError) as info:
        parse_rules(text, SOURCE, environ or {})
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def test_valid_file_gives_projects_policies_and_targets():
    rules = parse_rules(VALID, SOURCE, {})
    assert [p.name for p in rules.projects] == ["library", "team-b.dev_x", "empty"]
    assert rules.source == SOURCE
    library = rules.project("library")
    assert library.public is True
    assert rules.project("empty").public is False
    assert rules.project("empty").policies == ()
    assert rules.project("missing") is None
    ci, chat = library.policies
    assert ci.name == "ci" and ci.description == "tell CI" and ci.enabled is True
    assert ci.event_types == ("PUSH_ARTIFACT", "DELETE_ARTIFACT")  # duplicates dropped
    assert ci.line == line_of(VALID, "- name: ci")
    first, second = ci.targets
    assert first.type == "http"
    assert first.address == "http://127.0.0.1:9000/hook?x=1"  # stored as given, query kept
    assert first.auth_header == "Bearer s3cret"
    assert first.skip_cert_verify is True
    assert first.payload_format == "CloudEvents"
    # Harbor's defaults: an http target without a format is Default
    assert (second.type, second.payload_format, second.skip_cert_verify) == ("http", "Default",
                                                                             False)
    assert chat.line == line_of(VALID, "- name: chat")
    assert chat.targets[0].type == "slack"
    assert chat.targets[0].payload_format == ""


def test_policy_without_enabled_is_enabled():
    rules = parse_rules(policy_text(HOOK), SOURCE, {})
    assert rules.projects[0].policies[0].enabled is True


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "projects:\n", "projects: []\n"])
def test_empty_file_means_no_projects(text):
    assert parse_rules(text, SOURCE, {}).projects == ()


def test_load_rules_reads_the_file_and_names_it(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(VALID)
    assert len(load_rules(str(path), environ={}).projects) == 3
    path.write_text(policy_text(HOOK.replace("PUSH_ARTIFACT", "PUSH")))
    with pytest.raises(RulesError) as info:
        load_rules(str(path), environ={})
    assert info.value.problems == [f"{path}:{line_of(path.read_text(), 'PUSH')}: "
                                   "unsupported event type PUSH"]


def test_missing_file_is_a_clear_error(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(RulesError, match=rf"^{path}: cannot read rules file: No such file"):
        load_rules(str(path))


# --- Harbor's validation messages, each at its line -----------------------------------------------

HARBOR_MESSAGES = [
    ("empty event type", """\
- name: ci
  event_types: []
  targets:
    - address: http://ci.example/hook
""", "event_types", "empty event type"),
    ("missing event types", """\
- name: ci
  targets:
    - address: http://ci.example/hook
""", "- name: ci", "empty event type"),
    ("unsupported event type", """\
- name: ci
  event_types:
    - PUSH_ARTIFACT
    - pushImage
  targets:
    - address: http://ci.example/hook
""", "pushImage", "unsupported event type pushImage"),
    ("empty targets", """\
- name: ci
  event_types: [PUSH_ARTIFACT]
  targets: []
""", "targets", "empty notification target with policy ci"),
    ("missing targets", """\
- name: ci
  event_types: [PUSH_ARTIFACT]
""", "- name: ci", "empty notification target with policy ci"),
    ("empty URL", """\
- name: ci
  event_types: [PUSH_ARTIFACT]
  targets:
    - type: http
      address: "  "
""", "address", "empty URL"),
    ("missing URL", """\
- name: ci
  event_types: [PUSH_ARTIFACT]
  targets:
    - type: http
""", "type: http", "empty URL"),
    ("invalid scheme", """\
- name: ci
  event_types: [PUSH_ARTIFACT]
  targets:
    - address: ftp://ci.example/hook
""", "address", "invalid scheme: ftp"),
    ("unsupported target type", """\
- name: ci
  event_types: [PUSH_ARTIFACT]
  targets:
    - type: email
      address: http://ci.example/hook
""", "type: email", "unsupported target type email with policy ci"),
    ("payload format on slack", """\
- name: ci
  event_types: [PUSH_ARTIFACT]
  targets:
    - type: slack
      address: https://hooks.slack.com/services/x
      payload_format: Default
""", "payload_format", "set payload format is not allowed for slack"),
    ("unsupported payload format", """\
- name: ci
  event_types: [PUSH_ARTIFACT]
  targets:
    - address: http://ci.example/hook
      payload_format: CloudEvent
""", "payload_format", "unsupported payload format type: CloudEvent"),
    ("duplicate policy name", """\
- name: ci
  event_types: [PUSH_ARTIFACT]
  targets:
    - address: http://ci.example/a
- name: ci
  event_types: [PULL_ARTIFACT]
  targets:
    - address: http://ci.example/b
""", ("- name: ci", 2), "notification policy named ci already exists"),
]


@pytest.mark.parametrize(("body", "needle", "message"), [c[1:] for c in HARBOR_MESSAGES],
                         ids=[c[0] for c in HARBOR_MESSAGES])
def test_harbor_validation_messages_at_their_line(body, needle, message):
    text = policy_text(body)
    needle, nth = needle if isinstance(needle, tuple) else (needle, 1)
    assert problems(text) == [f"{SOURCE}:{line_of(text, needle, nth)}: {message}"]


@pytest.mark.parametrize(("address", "message"), [
    ("ci.example/hook", "invalid scheme: the address must start with http:// or https://"),
    ("ci.example:8080/hook", "invalid scheme: the address must start with http:// or https://"),
    ("gopher://ci.example", "invalid scheme: gopher"),
    ("http://", 'parse "http://": invalid host'),
    ("http://ci.example:99999/", 'parse "http://ci.example:99999/": Port out of range 0-65535'),
])
def test_unusable_addresses(address, message):
    text = policy_text(HOOK.replace("http://ci.example/hook", address))
    assert problems(text) == [f"{SOURCE}:{line_of(text, 'address')}: {message}"]


def test_every_problem_is_reported_not_just_the_first():
    text = policy_text("""\
- name: a
  event_types: [NOPE]
  targets:
    - type: carrier-pigeon
      address: ftp://x
- name: b
  event_types: []
  targets: []
""")
    assert problems(text) == [
        f"{SOURCE}:{line_of(text, 'NOPE')}: unsupported event type NOPE",
        f"{SOURCE}:{line_of(text, 'carrier-pigeon')}: unsupported target type carrier-pigeon "
        "with policy a",
        f"{SOURCE}:{line_of(text, 'ftp://x')}: invalid scheme: ftp",
        f"{SOURCE}:{line_of(text, 'event_types: []')}: empty event type",
        f"{SOURCE}:{line_of(text, 'targets: []')}: empty notification target with policy b",
    ]


def test_read_only_harbor_keys_are_accepted():
    text = policy_text("""\
- id: 7
  project_id: 3
  creator: admin
  creation_time: "2025-08-20T00:00:00.000Z"
  update_time: "2025-08-21T00:00:00.000Z"
  name: copied-from-harbor
  description: ""
  enabled: false
  event_types: [PUSH_ARTIFACT]
  targets:
    - type: http
      address: http://ci.example/hook
      auth_header: ""
      skip_cert_verify: false
      payload_format: Default
""")
    policy = parse_rules(text, SOURCE, {}).projects[0].policies[0]
    assert policy.name == "copied-from-harbor"
    assert policy.enabled is False


# --- structure: unknown and duplicate keys, projects ---------------------------------------------

def test_unknown_keys_at_every_level():
    text = """\
project:
  - x
projects:
  - name: proj
    pubic: true
    webhooks:
      - name: ci
        event_type: [PUSH_ARTIFACT]
        event_types: [PUSH_ARTIFACT]
        targets:
          - address: http://ci.example/hook
            auth: Bearer x
"""
    assert problems(text) == [
        f"{SOURCE}:1: unknown top-level key 'project' (expected 'projects' or 'scanners' or "
        "'registries' or 'replication')",
        f"{SOURCE}:5: unknown key 'pubic' in project",
        f"{SOURCE}:8: unknown key 'event_type' in webhook policy",
        f"{SOURCE}:12: unknown key 'auth' in target",
    ]


def test_duplicate_keys_are_refused_at_the_second_one():
    text = policy_text("""\
- name: ci
  event_types: [PUSH_ARTIFACT]
  targets:
    - address: http://ci.example/a
      address: http://ci.example/b
""")
    assert problems(text) == [f"{SOURCE}:{line_of(text, 'ci.example/b')}: duplicate key 'address'"]


def test_non_scalar_mapping_keys_are_a_clear_error():
    assert problems("? [a, b]\n: 1\n") == [f"{SOURCE}:1: a mapping key must be a plain value"]


def test_duplicate_projects():
    text = policy_text(HOOK) + "  - name: other\n  - name: proj\n"
    assert problems(text) == [
        f"{SOURCE}:{line_of(text, '- name: proj', 2)}: project 'proj' is declared twice"]


def test_same_policy_name_in_two_projects_is_fine():
    text = policy_text(HOOK) + policy_text(HOOK, project="other").removeprefix("projects:\n")
    assert [p.policies[0].name for p in parse_rules(text, SOURCE, {}).projects] == ["ci", "ci"]


@pytest.mark.parametrize("name", ["Proj", "-proj", "proj-", "a..b", "my proj", "", "a/b"])
def test_invalid_project_names(name):
    text = f'projects:\n  - public: true\n    name: "{name}"\n'
    assert problems(text) == [
        f"{SOURCE}:3: invalid project name {name!r}: use lower-case letters, digits and "
        ". _ - between them"]


@pytest.mark.parametrize(("text", "line", "message"), [
    ("projects:\n  - 5\n", 2, "a project must be a mapping with 'name', 'public' and 'webhooks'"),
    ("projects: library\n", 1, "'projects' must be a list"),
    ("projects:\n  - name: p\n    public: yes please\n", 3, "public must be true or false"),
    ("projects:\n  - name: p\n    webhooks: {a: 1}\n", 3,
     "'webhooks' must be a list of webhook policies"),
    ("projects:\n  - name: p\n\n    webhooks:\n      - just-a-string\n", 5,
     "a webhook policy must be a mapping"),
])
def test_shape_errors(text, line, message):
    assert problems(text) == [f"{SOURCE}:{line}: {message}"]


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_top_level_must_be_a_mapping(text):
    assert problems(text) == [
        f"{SOURCE}:1: the rules file must be a mapping with a 'projects' list"]


@pytest.mark.parametrize(("text", "line"), [
    ("projects:\n  - name: p\n    webhooks: [\n", 4),              # unclosed flow list
    ("projects:\n  - name: p\n   public: true\n", 3),              # bad indentation
    ("projects:\n  - name: p\n\tpublic: true\n", 3),               # tab
    ("projects:\n  - name: 'p\n", 3),                              # unclosed quote
    ("a: 1\n---\nb: 2\n", 2),                                      # two documents
])
def test_yaml_syntax_errors_name_their_line(text, line):
    (problem,) = problems(text)
    assert problem.startswith(f"{SOURCE}:{line}: "), problem


# --- ${VAR} expansion --------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "environ", "expected", "missing"), [
    ("${A}", {"A": "x"}, "x", []),
    ("Bearer ${TOKEN}", {"TOKEN": "s3cret"}, "Bearer s3cret", []),
    ("${A}${B}", {"A": "1", "B": "2"}, "12", []),
    ("${A:-dflt}", {}, "dflt", []),
    ("${A:-dflt}", {"A": "set"}, "set", []),
    ("${A:-dflt}", {"A": ""}, "dflt", []),        # as in the shell: unset or empty
    ("${A:-}", {}, "", []),
    ("${A:-http://x:1/p}", {}, "http://x:1/p", []),
    ("${A}", {"A": ""}, "", []),                  # set to empty is set
    ("${A}", {}, "", ["A"]),
    ("${A} ${B}", {}, " ", ["A", "B"]),
    ("$$", {}, "$", []),
    ("pa$$word", {}, "pa$word", []),
    ("$${A}", {"A": "x"}, "${A}", []),            # escaped: not expanded
    ("$$$${A}", {"A": "x"}, "$${A}", []),
    ("$$${A}", {"A": "x"}, "$x", []),
    ("pa$word", {}, "pa$word", []),               # a lone $ stays
    ("$A", {"A": "x"}, "$A", []),                 # only the braced form expands
    ("${1A}", {"1A": "x"}, "${1A}", []),          # not a variable name
    ("${A}", {"A": "${B}"}, "${B}", []),          # values are not expanded again
])
def test_expand_env(value, environ, expected, missing):
    assert expand_env(value, environ) == (expected, missing)


def test_variables_are_expanded_in_policies():
    text = policy_text("""\
- name: ${NAME:-ci}
  event_types: [PUSH_ARTIFACT]
  targets:
    - address: ${HOOK_URL}
      auth_header: "Bearer ${TOKEN}$$"
""")
    policy = parse_rules(text, SOURCE, {"HOOK_URL": "http://ci.example/h",
                                        "TOKEN": "t"}).projects[0].policies[0]
    assert policy.name == "ci"
    assert policy.targets[0].address == "http://ci.example/h"
    assert policy.targets[0].auth_header == "Bearer t$"


def test_a_missing_variable_is_reported_at_its_line():
    text = policy_text("""\
- name: ci
  event_types: [PUSH_ARTIFACT]
  targets:
    - address: http://ci.example/hook
      auth_header: "Bearer ${CI_TOKEN}"
""")
    assert problems(text) == [
        f"{SOURCE}:{line_of(text, 'CI_TOKEN')}: environment variable CI_TOKEN is not set"]


def test_load_rules_reads_the_process_environment(tmp_path, monkeypatch):
    path = tmp_path / "rules.yaml"
    path.write_text(policy_text(HOOK.replace("http://ci.example/hook", "${HOOK_URL_FOR_TEST}")))
    monkeypatch.setenv("HOOK_URL_FOR_TEST", "http://from-env.example/")
    policy = load_rules(str(path)).projects[0].policies[0]
    assert policy.targets[0].address == "http://from-env.example/"
