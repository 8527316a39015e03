"""A project's `retention:` section: Harbor's RetentionPolicy rules, refused at file:line.

Harbor's API checks only the cron and the rule count when a policy is saved
(goharbor/harbor `src/server/v2.0/handler/retention.go`, `src/pkg/retention/policy/models.go`
`ValidateRetentionPolicy`); a bad template, param or selector fails the job later with the
messages of `src/pkg/retention/policy/rule/index/index.go` (`Get`, `Valid`), the evaluators'
`Valid` (`policy/rule/latestps/evaluator.go`, `dayspl/evaluator.go`, ...) and
`src/lib/selector/selectors/index/index.go`. Here all of it is refused when the file is read,
in those words.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sidecar.rules.load import RulesError
from sidecar.rules.load import parse_rules
from sidecar.rules.retention import RetentionPolicy
from sidecar.rules.retention import RetentionRule
from sidecar.rules.retention import Selector

SOURCE = "rules.yaml"

ISSUE_EXAMPLE = """\
projects:
  - name: library
    retention:
      schedule: "0 0 3 * * *"          # Harbor's 6-field cron; absent: manual runs only
      rules:                           # an artifact is retained when ANY rule retains it
        - template: latestPushedK
          params: {latestPushedK: 10}
          tag_selectors: [{kind: doublestar, decoration: matches, pattern: "**", extras: '{"untagged":true}'}]
          scope_selectors: {repository: [{kind: doublestar, decoration: repoMatches, pattern: "**"}]}
"""  # noqa: E501 - the issue's text, verbatim


def retention_text(body: str) -> str:
    """A rules file whose project `proj` has the retention section `body` (YAML, dedented)."""
    return "projects:\n  - name: proj\n    retention:\n" + textwrap.indent(
        textwrap.dedent(body), "      ")


def problems(text: str) -> list[str]:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, SOURCE, {})
    return caught.value.problems


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


RULE = """\
- template: {template}
  params: {params}
  tag_selectors: [{{kind: doublestar, decoration: matches, pattern: "**"}}]
"""


def one_rule(template: str, params: str = "{}") -> str:
    return retention_text("rules:\n" + textwrap.indent(
        RULE.format(template=template, params=params), "  "))


def test_the_issue_example_reads_as_harbors_policy():
    rules = parse_rules(ISSUE_EXAMPLE, SOURCE, {})
    policy = rules.project("library").retention
    assert policy == RetentionPolicy(
        schedule="0 0 3 * * *",
        rules=(RetentionRule(
            template="latestPushedK", params={"latestPushedK": 10},
            tag_selectors=(Selector("doublestar", "matches", "**", '{"untagged":true}'),),
            scope_selectors={"repository": (Selector("doublestar", "repoMatches", "**"),)}),),
    )
    assert policy.rules[0].value == 10
    assert policy.rules[0].as_harbor() == {
        "id": 0, "priority": 0, "disabled": False, "action": "retain",
        "template": "latestPushedK", "params": {"latestPushedK": 10},
        "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**",
                           "extras": '{"untagged":true}'}],
        "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches",
                                            "pattern": "**", "extras": ""}]},
    }


def test_no_retention_section_means_no_policy():
    rules = parse_rules("projects:\n  - name: proj\n", SOURCE, {})
    assert rules.project("proj").retention is None


def test_no_schedule_means_manual_runs_only():
    policy = parse_rules(one_rule("always"), SOURCE, {}).project("proj").retention
    assert policy.schedule == ""
    assert [r.template for r in policy.rules] == ["always"]


@pytest.mark.parametrize(("template", "params", "value"), [
    ("always", "{}", None),
    ("nothing", "{}", None),
    ("latestPushedK", "{latestPushedK: 0}", 0),
    ("latestPulledN", "{latestPulledN: 32766}", 32766),
    ("nDaysSinceLastPush", "{nDaysSinceLastPush: 20190904}", 20190904),
    ("nDaysSinceLastPull", "{nDaysSinceLastPull: 7}", 7),
    ("latestActiveK", "{latestActiveK: 3}", 3),
    ("lastXDays", "{lastXDays: 10}", 10),
])
def test_every_template_harbor_registers(template, params, value):
    policy = parse_rules(one_rule(template, params), SOURCE, {}).project("proj").retention
    assert policy.rules[0].template == template
    assert policy.rules[0].value == value


def test_a_policy_pasted_from_harbors_api_is_accepted():
    """GET /retentions/{id} answers algorithm, trigger (with next_scheduled_time), scope, id."""
    text = retention_text("""\
        id: 7
        algorithm: or
        scope: {level: project, ref: 3}
        trigger:
          kind: Schedule
          settings: {cron: "0 0 0 * * *", next_scheduled_time: "2026-08-22T00:00:00.000Z"}
        rules:
          - id: 1
            priority: 1
            disabled: false
            action: retain
            template: nDaysSinceLastPull
            params: {nDaysSinceLastPull: 7}
            tag_selectors: [{kind: doublestar, decoration: matches, pattern: "**", extras: ""}]
            scope_selectors:
              repository: [{kind: doublestar, decoration: repoMatches, pattern: "**"}]
        """)
    policy = parse_rules(text, SOURCE, {}).project("proj").retention
    assert policy.schedule == "0 0 0 * * *"
    assert policy.rules[0].id == 1 and policy.rules[0].priority == 1


def test_disabled_rules_are_kept_as_disabled():
    text = one_rule("always").replace("- template: always",
                                      "- disabled: true\n          template: always")
    assert parse_rules(text, SOURCE, {}).project("proj").retention.rules[0].disabled is True


# (retention section, the line's marker, Harbor's message)
BAD = [
    ('schedule: "*/5 * * * * *"\nrules: []', "schedule",
     "invalid cron string for scheduled tag retention: */5 * * * * *, error: the 1st field "
     "(indicating Seconds of time) of the cron setting must be 0"),
    ('schedule: "0 0 3 * *"\nrules: []', "schedule",
     "invalid cron string for scheduled tag retention: 0 0 3 * *, error: expected exactly 6 "
     "fields, found 5: [0 0 3 * *]"),
    ('schedule: "@daily"\nrules: []', "schedule",
     "invalid cron string for scheduled tag retention: @daily, error: parser does not accept "
     "descriptors: @daily"),
    ("schedule: 3\nrules: []", "schedule",
     "invalid cron type for scheduled tag retention: must be a string"),
    ('schedule: "0 0 0 30 2 *"\nrules: []', "schedule", "the cron string 0 0 0 30 2 * never fires"),
    ("rules:\n  - template: latestPushK\n    params: {latestPushK: 10}\n"
     "    tag_selectors: [{kind: doublestar, decoration: matches, pattern: '**'}]",
     "template", "rule evaluator latestPushK is not registered (templates: always, nothing, "
     "latestPushedK, latestPulledN, latestActiveK, nDaysSinceLastPush, nDaysSinceLastPull, "
     "lastXDays)"),
    ("rules:\n  - params: {}\n    tag_selectors: [{kind: doublestar, decoration: matches}]",
     "- params", "empty rule template ID"),
    ("rules:\n  - template: latestPulledN\n"
     "    tag_selectors: [{kind: doublestar, decoration: matches, pattern: '**'}]",
     "template", "missing required parameter latestPulledN for rule latestPulledN"),
    ("rules:\n  - template: latestPushedK\n    params:\n      latestPushedK: -1\n"
     "    tag_selectors: [{kind: doublestar, decoration: matches, pattern: '**'}]",
     "latestPushedK: -1", "latestPushedK is less than zero"),
    ("rules:\n  - template: latestPushedK\n    params:\n      latestPushedK: 32767\n"
     "    tag_selectors: [{kind: doublestar, decoration: matches, pattern: '**'}]",
     "latestPushedK: 32767", "latestPushedK is too large (at most 32766)"),
    ("rules:\n  - template: nDaysSinceLastPush\n    params:\n      nDaysSinceLastPush: 20190905\n"
     "    tag_selectors: [{kind: doublestar, decoration: matches, pattern: '**'}]",
     "nDaysSinceLastPush: 2", "nDaysSinceLastPush is too large (at most 20190904)"),
    ("rules:\n  - template: nDaysSinceLastPull\n    params:\n      nDaysSinceLastPull: '30'\n"
     "    tag_selectors: [{kind: doublestar, decoration: matches, pattern: '**'}]",
     "nDaysSinceLastPull: '30'", "nDaysSinceLastPull type error: it must be a whole number"),
    ("rules:\n  - template: latestPushedK\n    params:\n      latestPushedK: 2.5\n"
     "    tag_selectors: [{kind: doublestar, decoration: matches, pattern: '**'}]",
     "latestPushedK: 2.5", "latestPushedK type error: it must be a whole number"),
    ("rules:\n  - template: always\n    params:\n      always: 1\n"
     "    tag_selectors: [{kind: doublestar, decoration: matches, pattern: '**'}]",
     "always: 1", "unknown parameter 'always' for rule always (it takes none)"),
    ("rules:\n  - template: latestPushedK\n    params:\n      latestPushedK: 1\n      k: 2\n"
     "    tag_selectors: [{kind: doublestar, decoration: matches, pattern: '**'}]",
     "k: 2", "unknown parameter 'k' for rule latestPushedK (it takes latestPushedK)"),
    ("rules:\n  - template: always\n    action: delete\n"
     "    tag_selectors: [{kind: doublestar, decoration: matches, pattern: '**'}]",
     "action", "action delete is not registered"),
    ("rules:\n  - template: always\n    tag_selectors:\n"
     "      - {kind: regexp, decoration: matches}",
     "regexp", "selector regexp is not registered (use doublestar)"),
    ("rules:\n  - template: always\n    tag_selectors:\n      - {decoration: matches}",
     "{decoration", "empty selector kind or decoration"),
    ("rules:\n  - template: always\n    tag_selectors:\n"
     "      - kind: doublestar\n        decoration: repoMatches",
     "decoration: repoMatches", "decoration repoMatches of selector doublestar is not "
     "supported in a tag selector (use matches or excludes)"),
    ("rules:\n  - template: always\n    tag_selectors:\n"
     "      - kind: doublestar\n        decoration: matching",
     "decoration: matching", "decoration matching of selector doublestar is not supported "
     "in a tag selector (use matches or excludes)"),
    ("rules:\n  - template: always\n    tag_selectors:\n"
     "      - kind: doublestar\n        decoration: matches\n        extras: '{untagged: true}'",
     "extras", "extras is not JSON (Expecting property name enclosed in double quotes): "
     "'{untagged: true}'"),
    ("rules:\n  - template: always\n    tag_selectors:\n"
     "      - kind: doublestar\n        decoration: matches\n        extras: {untagged: true}",
     "extras", "extras must be a JSON string, e.g. '{\"untagged\":true}'"),
    ("rules:\n  - template: always\n    tag_selectors:\n"
     "      - kind: doublestar\n        decoration: matches\n        extras: '{\"untagged\":1}'",
     "extras", "extras: untagged must be true or false"),
    ("rules:\n  - template: always\n    tag_selectors:\n"
     "      - kind: doublestar\n        decoration: matches\n        extras: '[true]'",
     "extras", "extras must be a JSON object such as {\"untagged\":true}: '[true]'"),
    ("rules:\n  - template: always\n    tag_selectors:\n"
     "      - kind: doublestar\n        decoration: matches\n        pattern: 'v{1,2'",
     "pattern", "unbalanced brackets in pattern 'v{1,2'"),
    ("rules:\n  - template: always", "template: always",
     "a rule needs at least one tag selector (Harbor skips a rule without one), e.g. "
     "{kind: doublestar, decoration: matches, pattern: '**'}"),
    ("rules:\n  - template: always\n    tag_selectors: [{kind: doublestar, decoration: matches}]\n"
     "    scope_selectors:\n      repository:\n        - {kind: doublestar, decoration: matches}",
     "- {kind: doublestar, decoration: matches}", "decoration matches of selector doublestar "
     "is not supported in a repository selector (use repoMatches or repoExcludes)"),
    ("rules:\n  - template: always\n    tag_selectors: [{kind: doublestar, decoration: matches}]\n"
     "    scope_selectors:\n      namespace: []", "namespace",
     "unknown scope 'namespace' (a project's rules select by 'repository')"),
    ("rules:\n  - template: always\n    tag_selector: []", "tag_selector:",
     "unknown key 'tag_selector' in retention rule"),
    ("rules: []\ncron: '0 0 0 * * *'", "cron", "unknown key 'cron' in retention (expected "
     "'schedule' and 'rules')"),
    ("algorithm: and\nrules: []", "algorithm", "algorithm 'and' is not supported: only 'or'"),
    ("rules: {}", "rules", "'rules' must be a list of retention rules"),
]


@pytest.mark.parametrize(("body", "marker", "message"), BAD,
                         ids=[message[:50] for _, _, message in BAD])
def test_refused_at_file_and_line(body, marker, message):
    text = retention_text(body)
    assert f"{SOURCE}:{line_of(text, marker)}: {message}" in problems(text)


def test_sixteen_rules_are_too_many():
    rules = "".join(
        f"  - template: latestPushedK\n    params: {{latestPushedK: {n}}}\n"
        "    tag_selectors: [{kind: doublestar, decoration: matches, pattern: '**'}]\n"
        for n in range(16))
    text = retention_text("rules:\n" + rules)
    assert f"{SOURCE}:{line_of(text, 'rules:')}: only 15 rules are allowed at most" in \
        problems(text)


def test_two_identical_rules_conflict_as_in_harbor():
    """checkRuleConflict: rules equal once their id is zeroed; 0-based indexes."""
    rule = ("  - id: {id}\n    template: always\n"
            "    tag_selectors: [{{kind: doublestar, decoration: matches, pattern: '**'}}]\n")
    text = retention_text("rules:\n" + rule.format(id=1) + rule.format(id=2))
    second = [i for i, line in enumerate(text.splitlines(), 1) if "- id:" in line][1]
    assert problems(text) == [f"{SOURCE}:{second}: rule 1 is conflict with rule 0"]


def test_every_mistake_is_reported_not_just_the_first():
    text = retention_text("""\
        schedule: "0 0 3 * *"
        rules:
          - template: latestPushK
            tag_selectors: [{kind: doublestar, decoration: matches}]
          - template: latestPulledN
            params: {latestPulledN: -2}
            tag_selectors: [{kind: glob, decoration: matches}]
        """)
    assert len(problems(text)) == 4


def test_trigger_and_schedule_together_are_refused():
    text = retention_text("""\
        schedule: "0 0 3 * * *"
        trigger: {kind: Schedule, settings: {cron: "0 0 4 * * *"}}
        rules: []
        """)
    assert problems(text) == [f"{SOURCE}:{line_of(text, 'trigger')}: give either 'schedule' "
                              "or Harbor's 'trigger', not both"]


def test_a_bad_retention_section_refuses_the_whole_file():
    """A broken file is refused as a whole: the caller keeps the last good rules."""
    text = ISSUE_EXAMPLE.replace("latestPushedK: 10", "latestPushedK: -10")
    assert problems(text) == [f"{SOURCE}:{line_of(text, 'latestPushedK: -10')}: "
                              "latestPushedK is less than zero"]


@pytest.mark.parametrize(("decoration", "extras", "untagged"), [
    ("matches", "", True),       # Harbor's default: keep selecting untagged artifacts
    ("excludes", "", False),     # ...which for excludes means untagged=false selects them
    ("matches", '{"untagged":false}', False),
    ("excludes", '{"untagged":true}', True),
    ("matches", "{}", False),    # Go decodes a missing key as false
])
def test_untagged_reads_extras_as_harbors_selector_does(decoration, extras, untagged):
    """src/lib/selector/selectors/doublestar/selector.go `New`."""
    assert Selector("doublestar", decoration, "**", extras).untagged is untagged


def test_the_commented_example_in_rules_example_yaml_is_valid():
    """rules/example.yaml shows a retention section in comments: it must stay loadable."""
    path = Path(__file__).resolve().parents[1] / "rules" / "example.yaml"
    lines = path.read_text().splitlines()
    start = lines.index("    # retention:")
    section = [line.replace("    # ", "    ", 1) for line in lines[start:]
               if line.startswith("    # ")]
    text = "projects:\n  - name: library\n" + "\n".join(section) + "\n"
    policy = parse_rules(text, SOURCE, {}).project("library").retention
    assert policy.schedule == "0 0 3 * * *"
    assert [rule.template for rule in policy.rules] == ["latestPushedK"]
