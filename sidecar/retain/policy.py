"""Which artifacts a retention run keeps: Harbor's retention engine, as a pure function.

Harbor plans a run in `src/pkg/retention/launcher.go` (one task per repository that at least
one enabled rule's repository selectors pick) and evaluates each task with the "or" processor
(`policy/alg/or/processor.go`): every rule selects candidates through its tag selectors in turn,
its template keeps some of them, and the retain performer (`policy/action/performer.go`)
deletes every candidate of the repository that no rule kept, including artifacts no selector
picked. No clock here: the caller passes `now` and the time the run started.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass

from sidecar.rules.globs import glob_match
from sidecar.rules.retention import ALWAYS
from sidecar.rules.retention import LAST_X_DAYS
from sidecar.rules.retention import LATEST_ACTIVE_K
from sidecar.rules.retention import LATEST_PULLED_N
from sidecar.rules.retention import LATEST_PUSHED_K
from sidecar.rules.retention import N_DAYS_SINCE_LAST_PULL
from sidecar.rules.retention import N_DAYS_SINCE_LAST_PUSH
from sidecar.rules.retention import NOTHING
from sidecar.rules.retention import RetentionPolicy
from sidecar.rules.retention import RetentionRule
from sidecar.rules.retention import Selector

#: Go's zero time.Time as Unix seconds: Harbor's pull time of a never-pulled artifact.
NEVER = -62135596800
DAY = 86400


@dataclass(frozen=True)
class Candidate:
    """One artifact (a digest) of a repository with all its tags.

    `tags` come newest-pushed first, as Harbor lists them (the payload names the first).
    `pushed_at` is what the sidecar recorded, Harbor's max(artifact push, tag pushes);
    `created_at` (the image config's `created`) stands in when nothing was recorded.
    `pulled_at` is the last pull the sidecar saw: None counts as never pulled.
    """

    digest: str
    tags: tuple[str, ...] = ()
    pushed_at: int | None = None
    pulled_at: int | None = None
    created_at: int | None = None

    @property
    def pushed_time(self) -> int:
        if self.pushed_at is not None:
            return self.pushed_at
        return self.created_at if self.created_at is not None else NEVER

    @property
    def pulled_time(self) -> int:
        return self.pulled_at if self.pulled_at is not None else NEVER


@dataclass(frozen=True)
class Decision:
    """One repository's outcome; both lists keep the candidates' order."""

    retained: tuple[Candidate, ...]
    deleted: tuple[Candidate, ...]
    #: pushed (or re-tagged) after the run started: kept without being evaluated
    protected: tuple[Candidate, ...] = ()

    @property
    def total(self) -> int:
        return len(self.retained) + len(self.deleted)


def plan(policy: RetentionPolicy, repositories: Iterable[str]
         ) -> dict[str, tuple[RetentionRule, ...]]:
    """Repository (name inside the project) -> the enabled rules that select it.

    A repository no enabled rule selects gets no task and is never touched. A rule without
    repository selectors selects every repository; several selectors must all agree.
    """
    names = list(dict.fromkeys(repositories))
    out: dict[str, list[RetentionRule]] = {}
    for rule in policy.rules:
        if rule.disabled:
            continue
        for name in names:
            if all(_repository_selected(s, name) for s in rule.repository_selectors):
                out.setdefault(name, []).append(rule)
    return {name: tuple(out[name]) for name in names if name in out}


def evaluate(rules: Sequence[RetentionRule], candidates: Sequence[Candidate], *, now: int,
             started_at: int | None = None) -> Decision:
    """Keep what any rule keeps; delete the rest of the repository.

    `candidates` come in Harbor's listing order (newest push first); templates that rank
    (latestPushedK...) break ties in that order, where Harbor's unstable sort leaves them
    unspecified. A candidate pushed after `started_at` is kept unevaluated: a run never
    deletes what was pushed while it ran, even when it resumes after a crash.
    """
    protected = tuple(c for c in candidates
                      if started_at is not None and c.pushed_time > started_at)
    late = {c.digest for c in protected}
    pool = [c for c in candidates if c.digest not in late]
    # the processor registers only rules with tag selectors; with none, nothing is deleted
    active = [rule for rule in rules if rule.tag_selectors]
    if not pool or not active:
        return Decision(retained=tuple(candidates), deleted=(), protected=protected)
    kept: set[str] = set()
    for rule in active:
        selected = list(pool)
        for selector in rule.tag_selectors:
            selected = [c for c in selected if _tag_selected(selector, c)]
        kept.update(c.digest for c in _TEMPLATES[rule.template](selected, rule.value, now))
    retained = tuple(c for c in candidates if c.digest in kept or c.digest in late)
    deleted = tuple(c for c in pool if c.digest not in kept)
    return Decision(retained=retained, deleted=deleted, protected=protected)


def _match(pattern: str, value: str) -> bool:
    # Harbor's selector matches everything with an empty pattern before doublestar sees it
    return pattern == "" or glob_match(pattern, value)


def _repository_selected(selector: Selector, name: str) -> bool:
    matched = _match(selector.pattern, name)
    return not matched if selector.decoration == "repoExcludes" else matched


def _tag_selected(selector: Selector, candidate: Candidate) -> bool:
    """doublestar tagSelectMatch / tagSelectExclude: any one tag decides."""
    if not candidate.tags:
        return selector.untagged if selector.decoration == "matches" else not selector.untagged
    if selector.decoration == "excludes":
        return any(not _match(selector.pattern, tag) for tag in candidate.tags)
    return any(_match(selector.pattern, tag) for tag in candidate.tags)


_Template = Callable[[list[Candidate], int | None, int], Iterable[Candidate]]


def _latest(key: Callable[[Candidate], int]) -> _Template:
    def keep(selected: list[Candidate], count: int | None, now: int) -> list[Candidate]:
        ranked = sorted(selected, key=lambda c: -key(c))  # stable: listing order breaks ties
        return ranked[:count or 0]
    return keep


def _within_days(key: Callable[[Candidate], int]) -> _Template:
    def keep(selected: list[Candidate], days: int | None, now: int) -> list[Candidate]:
        oldest = now - (days or 0) * DAY  # inclusive, in seconds (dayspl/daysps)
        return [c for c in selected if key(c) >= oldest]
    return keep


def _after_days(selected: list[Candidate], days: int | None, now: int) -> list[Candidate]:
    cutoff = now - (days or 0) * DAY  # lastx: strictly after
    return [c for c in selected if c.pushed_time > cutoff]


def _pushed(c: Candidate) -> int:
    return c.pushed_time


def _pulled(c: Candidate) -> int:
    return c.pulled_time


def _active(c: Candidate) -> int:
    return max(c.pushed_time, c.pulled_time)


_TEMPLATES: dict[str, _Template] = {
    ALWAYS: lambda selected, _value, _now: selected,
    NOTHING: lambda _selected, _value, _now: (),
    LATEST_PUSHED_K: _latest(_pushed),
    LATEST_PULLED_N: _latest(_pulled),
    LATEST_ACTIVE_K: _latest(_active),
    N_DAYS_SINCE_LAST_PUSH: _within_days(_pushed),
    N_DAYS_SINCE_LAST_PULL: _within_days(_pulled),
    LAST_X_DAYS: _after_days,
}
