"""Which artifacts a retention run keeps, decided as Harbor's retention engine decides.

Harbor's semantics, read in goharbor/harbor (c50c7ddd):
- `src/pkg/retention/launcher.go` `Launch`: enabled rules only; a rule's repository selectors
  apply one after another; one task per repository some rule selected.
- `src/lib/selector/selectors/doublestar/selector.go`: tag and repository selectors, the
  `untagged` extras and their defaults, an empty pattern matching everything.
- `src/pkg/retention/policy/alg/or/processor.go`: each rule selects then evaluates; results
  are unioned; a rule without tag selectors is not registered at all.
- `src/pkg/retention/policy/action/performer.go`: every candidate not retained is deleted,
  including those no selector picked.
- `src/pkg/retention/policy/rule/{always,nothing,latestps,latestpl,latestk,daysps,dayspl,
  lastx}/evaluator.go`: the templates; `src/pkg/retention/dep/client.go` `GetCandidates`:
  pushed/pulled times, never pulled = Go's zero time.
"""

from __future__ import annotations

import pytest

from sidecar.retain.policy import DAY
from sidecar.retain.policy import NEVER
from sidecar.retain.policy import Candidate
from sidecar.retain.policy import evaluate
from sidecar.retain.policy import plan
from sidecar.rules.retention import RetentionPolicy
from sidecar.rules.retention import RetentionRule
from sidecar.rules.retention import Selector

NOW = 1_800_000_000
ALL_TAGS = Selector("doublestar", "matches", "**")


def days_ago(days: float) -> int:
    return int(NOW - days * DAY)


def art(name: str, *tags: str, pushed: float | None = None, pulled: float | None = None,
        created: float | None = None) -> Candidate:
    """A candidate whose digest is its name; times in days before NOW."""
    return Candidate(
        digest=name, tags=tags,
        pushed_at=None if pushed is None else days_ago(pushed),
        pulled_at=None if pulled is None else days_ago(pulled),
        created_at=None if created is None else days_ago(created))


def rule(template: str, value: int | None = None, *selectors: Selector,
         repositories: tuple[Selector, ...] | None = None, disabled: bool = False
         ) -> RetentionRule:
    return RetentionRule(
        template=template, params={} if value is None else {template: value},
        tag_selectors=selectors or (ALL_TAGS,),
        scope_selectors={} if repositories is None else {"repository": repositories},
        disabled=disabled)


def kept(rules, candidates, **kwargs) -> list[str]:
    return [c.digest for c in evaluate(rules, candidates, now=NOW, **kwargs).retained]


def gone(rules, candidates, **kwargs) -> list[str]:
    return [c.digest for c in evaluate(rules, candidates, now=NOW, **kwargs).deleted]


def matches(pattern: str, extras: str = "") -> Selector:
    return Selector("doublestar", "matches", pattern, extras)


def excludes(pattern: str, extras: str = "") -> Selector:
    return Selector("doublestar", "excludes", pattern, extras)


# -- the worked example of harbor-jobs.md 1.7 -------------------------------------------------

def test_harbors_worked_example():
    """latestPushedK=1 on tags v* without untagged: B stays; A (with its `prod` tag), the
    untagged C and D, which no selector picked, are deleted."""
    repo = [art("D", "latest", pushed=1), art("C", pushed=2), art("B", "v2", pushed=3),
            art("A", "v1", "prod", pushed=4)]
    rules = [rule("latestPushedK", 1, matches("v*", '{"untagged":false}'))]
    assert kept(rules, repo) == ["B"]
    assert gone(rules, repo) == ["D", "C", "A"]
    # "to keep D you need a second rule, e.g. always with matches latest"; with no extras
    # that rule selects untagged artifacts too (matches: untagged defaults to true), so C stays
    rules.append(rule("always", None, matches("latest")))
    assert kept(rules, repo) == ["D", "C", "B"]
    rules[-1] = rule("always", None, matches("latest", '{"untagged":false}'))
    assert kept(rules, repo) == ["D", "B"]


# -- tag selectors (doublestar/selector.go) ---------------------------------------------------

SELECTORS = [
    # (selector, tags, selected?)
    (matches("v1"), ("v1", "latest"), True),       # any tag matching is enough
    (matches("v1"), ("latest",), False),
    (excludes("v1"), ("v1", "latest"), True),      # any tag NOT matching selects it
    (excludes("v1"), ("v1",), False),
    (excludes("v*"), ("v1", "v2"), False),
    (matches("v1.*"), ("v1.2",), True),
    (matches("v1.*"), ("v10",), False),
    (matches("*"), ("anything",), True),
    (matches("{dev,qa}-*"), ("qa-7",), True),
    (matches("release-?"), ("release-10",), False),
    (matches("[0-9]*"), ("9.1",), True),
    (matches(""), ("whatever",), True),            # empty pattern: everything
    (excludes(""), ("whatever",), False),
    # untagged artifacts: extras decide, with Harbor's defaults
    (matches("**"), (), True),                     # matches: untagged default true
    (matches("**", '{"untagged":true}'), (), True),
    (matches("**", '{"untagged":false}'), (), False),
    (matches("**", "{}"), (), False),              # Go decodes a missing key as false
    (excludes("**"), (), True),                    # excludes: untagged default false -> selected
    (excludes("**", '{"untagged":false}'), (), True),
    (excludes("**", '{"untagged":true}'), (), False),
]


@pytest.mark.parametrize(("selector", "tags", "selected"), SELECTORS)
def test_tag_selector(selector, tags, selected):
    repo = [art("X", *tags, pushed=1)]
    assert kept([rule("always", None, selector)], repo) == (["X"] if selected else [])


def test_several_tag_selectors_must_all_select():
    repo = [art("A", "v1-rc", pushed=1), art("B", "v1", pushed=2), art("C", "rc", pushed=3)]
    rules = [rule("always", None, matches("v*"), excludes("*-rc"))]
    assert kept(rules, repo) == ["B"]


# -- combining rules (or/processor.go, action/performer.go) -----------------------------------

def test_kept_when_any_rule_keeps_it_and_the_rest_of_the_repository_goes():
    repo = [art("A", "dev-3", pushed=1), art("B", "v2", pushed=2), art("C", "v1", pushed=3),
            art("D", "dev-1", pushed=9), art("E", "misc", pushed=10)]
    rules = [rule("latestPushedK", 1, matches("v*")), rule("nDaysSinceLastPush", 5,
                                                           matches("dev-*"))]
    assert kept(rules, repo) == ["A", "B"]
    assert gone(rules, repo) == ["C", "D", "E"]  # E: no selector picked it, still deleted


def test_an_artifact_kept_by_two_rules_counts_once():
    repo = [art("A", "v1", pushed=1), art("B", "v0", pushed=2)]
    decision = evaluate([rule("always", None, matches("v1")), rule("latestPushedK", 1)],
                        repo, now=NOW)
    assert [c.digest for c in decision.retained] == ["A"]
    assert decision.total == 2


def test_a_rule_without_tag_selectors_keeps_nothing_and_deletes_nothing_alone():
    """The OR processor registers an evaluator only when it has selectors: with no such rule
    no evaluator runs and the performer never runs either."""
    bare = RetentionRule(template="nothing")
    repo = [art("A", "v1", pushed=1)]
    assert gone([bare], repo) == []
    assert kept([bare, rule("always", None, matches("zzz"))], repo) == []  # the other rule ran


def test_an_empty_repository_or_no_rules_deletes_nothing():
    assert evaluate([rule("nothing")], [], now=NOW).deleted == ()
    assert gone([], [art("A", "v1", pushed=1)]) == []


def test_whole_artifacts_go_with_all_their_tags():
    repo = [art("A", "v1", "prod", pushed=1), art("B", "v2", pushed=2)]
    decision = evaluate([rule("always", None, matches("v2"))], repo, now=NOW)
    assert decision.deleted == (repo[0],)
    assert decision.deleted[0].tags == ("v1", "prod")


# -- templates -------------------------------------------------------------------------------

REPO = [  # listing order: newest push first, as Harbor lists artifacts
    art("A", "a", pushed=1, pulled=30),
    art("B", "b", pushed=2, pulled=2),
    art("C", "c", pushed=3),                 # never pulled
    art("D", "d", pushed=10, pulled=0.5),
    art("E", "e", pushed=40),                # never pulled
]

TEMPLATES = [
    ("always", None, ["A", "B", "C", "D", "E"]),
    ("nothing", None, []),
    ("latestPushedK", 0, []),
    ("latestPushedK", 2, ["A", "B"]),
    ("latestPushedK", 99, ["A", "B", "C", "D", "E"]),
    ("latestPulledN", 1, ["D"]),
    ("latestPulledN", 3, ["A", "B", "D"]),
    ("latestPulledN", 4, ["A", "B", "C", "D"]),  # never pulled come last, yet fill slots
    ("latestActiveK", 2, ["A", "D"]),            # max(pushed, pulled): A 1 day, D half a day
    ("nDaysSinceLastPush", 3, ["A", "B", "C"]),  # inclusive boundary: C pushed 3 days ago
    ("nDaysSinceLastPush", 0, []),
    ("nDaysSinceLastPush", 40, ["A", "B", "C", "D", "E"]),
    ("nDaysSinceLastPull", 2, ["B", "D"]),       # inclusive; never pulled never kept
    ("nDaysSinceLastPull", 100000, ["A", "B", "D"]),
    # past ~740,000 days the window reaches back beyond Go's zero time, which Harbor gives
    # never-pulled artifacts: they are kept then, in Harbor as here
    ("nDaysSinceLastPull", 20190904, ["A", "B", "C", "D", "E"]),
    ("lastXDays", 3, ["A", "B"]),                # strictly after: C at the boundary goes
    ("lastXDays", 41, ["A", "B", "C", "D", "E"]),
]


@pytest.mark.parametrize(("template", "value", "retained"), TEMPLATES,
                         ids=[f"{t}={v}" for t, v, _ in TEMPLATES])
def test_template(template, value, retained):
    assert kept([rule(template, value)], REPO) == retained


def test_one_second_outside_the_window_is_deleted():
    repo = [Candidate("in", ("a",), pushed_at=NOW - 7 * DAY, pulled_at=NOW - 7 * DAY),
            Candidate("out", ("b",), pushed_at=NOW - 7 * DAY - 1, pulled_at=NOW - 7 * DAY - 1)]
    assert kept([rule("nDaysSinceLastPush", 7)], repo) == ["in"]
    assert kept([rule("nDaysSinceLastPull", 7)], repo) == ["in"]
    assert kept([rule("lastXDays", 7)], repo) == []


def test_ties_keep_the_listing_order():
    """Harbor's sort.Slice leaves ties unspecified; here the first listed wins."""
    repo = [art("A", "a", pushed=1), art("B", "b", pushed=1), art("C", "c", pushed=1)]
    assert kept([rule("latestPushedK", 2)], repo) == ["A", "B"]
    assert kept([rule("latestPushedK", 2)], list(reversed(repo))) == ["C", "B"]
    never = [art("X", "x", pushed=1), art("Y", "y", pushed=1)]
    assert kept([rule("latestPulledN", 1)], never) == ["X"]


def test_the_config_created_time_stands_in_for_an_unrecorded_push():
    repo = [art("recorded", "a", pushed=5, created=100), art("old", "b", created=1),
            art("unknown", "c")]
    assert kept([rule("latestPushedK", 1)], repo) == ["old"]
    assert kept([rule("nDaysSinceLastPush", 6)], repo) == ["recorded", "old"]
    # nothing known at all: Go's zero time, the oldest there is
    assert repo[2].pushed_time == NEVER and repo[2].pulled_time == NEVER
    assert kept([rule("latestPushedK", 2)], repo) == ["recorded", "old"]


def test_the_rules_see_only_what_their_selectors_picked():
    """latestPushedK counts within the rule's selection, not the repository."""
    repo = [art("new-dev", "dev", pushed=1), art("v3", "v3", pushed=2),
            art("v2", "v2", pushed=3), art("v1", "v1", pushed=4)]
    assert kept([rule("latestPushedK", 2, matches("v*"))], repo) == ["v3", "v2"]


# -- a run never deletes what was pushed while it ran -----------------------------------------

def test_artifacts_pushed_after_the_run_started_are_kept_unevaluated():
    started = NOW - 60
    late = Candidate("late", ("v9",), pushed_at=NOW - 10)
    repo = [late, art("B", "v2", pushed=1), art("A", "v1", pushed=2)]
    decision = evaluate([rule("latestPushedK", 1)], repo, now=NOW, started_at=started)
    assert [c.digest for c in decision.retained] == ["late", "B"]  # late takes no slot
    assert [c.digest for c in decision.deleted] == ["A"]
    assert decision.protected == (late,)
    assert decision.total == 3
    # even a rule set that keeps nothing leaves it alone
    assert gone([rule("nothing")], repo, started_at=started) == ["B", "A"]


def test_a_retagged_old_artifact_is_protected_too():
    """Its pushed time moves with the new tag (max of artifact and tag pushes)."""
    retagged = Candidate("old", ("v1", "hotfix"), pushed_at=NOW - 5, created_at=days_ago(300))
    assert gone([rule("nothing")], [retagged], started_at=NOW - 60) == []


# -- planning: which repositories get a task (launcher.go) ------------------------------------

def repo_matches(pattern: str) -> Selector:
    return Selector("doublestar", "repoMatches", pattern)


def repo_excludes(pattern: str) -> Selector:
    return Selector("doublestar", "repoExcludes", pattern)


NAMES = ["app", "web/ui", "web/api", "tools/ci/runner", "base"]

PLANS = [
    # (repository selectors of the one rule, repositories with a task)
    (None, NAMES),
    ((), NAMES),
    ((repo_matches("**"),), NAMES),
    ((repo_matches(""),), NAMES),
    ((repo_matches("web/*"),), ["web/ui", "web/api"]),
    ((repo_matches("*"),), ["app", "base"]),               # * stays inside one segment
    ((repo_matches("tools/**"),), ["tools/ci/runner"]),
    ((repo_matches("{app,base}"),), ["app", "base"]),
    ((repo_excludes("web/**"),), ["app", "tools/ci/runner", "base"]),
    ((repo_matches("web/*"), repo_excludes("*/api")), ["web/ui"]),  # AND
    ((repo_matches("library/app"),), []),                  # names are inside the project
]


@pytest.mark.parametrize(("selectors", "planned"), PLANS)
def test_repository_selection(selectors, planned):
    policy = RetentionPolicy(rules=(rule("always", repositories=selectors),))
    assert list(plan(policy, NAMES)) == planned


def test_each_repository_gets_the_rules_that_selected_it_and_disabled_rules_none():
    web = rule("latestPushedK", 3, repositories=(repo_matches("web/**"),))
    everything = rule("always", None, matches("stable"))
    off = rule("nothing", repositories=(repo_matches("app"),), disabled=True)
    policy = RetentionPolicy(rules=(web, everything, off))
    assert plan(policy, ["app", "web/ui"]) == {"app": (everything,), "web/ui": (web, everything)}
    assert plan(RetentionPolicy(rules=(off,)), ["app"]) == {}
