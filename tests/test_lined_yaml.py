"""The rules file's YAML reader: the event path must read every file as SafeLoader does.

Values, types and the line of every mapping, key and item are compared with the node-based
loader (PyYAML's own composer and constructors) on the shapes rules files use and on YAML
1.1's surprises; what the event path leaves alone must still come out right.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from sidecar.rules import lined_yaml
from sidecar.rules.lined_yaml import LineDict
from sidecar.rules.lined_yaml import LineList

ROOT = Path(__file__).resolve().parent.parent

COMMON = {
    "scalars": """\
yes_word: yes
no_word: no
on_word: on
off_word: Off
true_word: True
tilde: ~
null_word: null
empty:
quoted: 'yes'
double: "012"
int: 123
octal: 017
hex: 0x1f
grouped: 1_000
sexagesimal: 190:20:30
float: 1.5e3
inf: -.inf
date: 2026-11-30
stamp: 2026-11-30T01:02:03Z
text: plain text, with a comma
~: null key
7: int key
""",
    "blocks": """\
literal: |
  line one
  line two
folded: >-
  folded
  text
flow: {a: 1, b: [x, 'y', "z"], c: {}}
nested:
  - - 1
    - 2
  -
    - []
  - {}
""",
    "anchors": """\
base: &base
  event_types: [PUSH_ARTIFACT]
  targets:
    - &target {type: http, address: "http://h:1/x"}
again: *base
targets: [*target, *target]
name: &n shared
names: [*n]
""",
    "top list": "- a\n- b: 1\n  c: [2]\n",
    "top scalar": "just text\n",
    "explicit document": "---\nprojects: []\n...\n",
}

UNUSUAL = {
    "merge key": "base: &b {a: 1}\nchild:\n  <<: *b\n  c: 2\n",
    "explicit tag": "a: !!str 123\nb: !!binary aGk=\n",
    "set": "!!set {a, b}\n",
}


def _compare(fast, slow) -> None:
    assert type(fast) is type(slow)
    if isinstance(slow, float) and math.isnan(slow):
        assert math.isnan(fast)
        return
    assert fast == slow
    if isinstance(slow, LineDict):
        assert (fast.line, fast.key_lines) == (slow.line, slow.key_lines)
        for key in slow:
            _compare(fast[key], slow[key])
    elif isinstance(slow, LineList):
        assert (fast.line, fast.item_lines) == (slow.line, slow.item_lines)
        for a, b in zip(fast, slow, strict=True):
            _compare(a, b)


def _node(text: str):
    return yaml.load(text, Loader=lined_yaml.NodeLoader)  # noqa: S506 - SafeLoader subclass


@pytest.mark.parametrize("name", sorted(COMMON))
def test_the_event_path_reads_what_safe_loader_reads(name):
    text = COMMON[name]
    _compare(lined_yaml._from_events(text), _node(text))
    assert lined_yaml._from_events(text) == yaml.safe_load(text)


def test_the_example_rules_file_reads_the_same_on_both_paths():
    text = (ROOT / "rules" / "example.yaml").read_text()
    fast = lined_yaml._from_events(text)
    _compare(fast, _node(text))
    assert fast["projects"], "the example declares projects"


def test_aliases_share_the_anchored_value_as_safe_loader_does():
    loaded = lined_yaml.load(COMMON["anchors"])
    assert loaded["again"] is loaded["base"]
    assert loaded["targets"][0] is loaded["targets"][1]


@pytest.mark.parametrize("name", sorted(UNUSUAL))
def test_unusual_yaml_still_reads_right(name):
    text = UNUSUAL[name]
    with pytest.raises(lined_yaml._Unusual):
        lined_yaml._from_events(text)
    _compare(lined_yaml.load(text), _node(text))


def test_merge_keys_merge():
    assert lined_yaml.load(UNUSUAL["merge key"])["child"] == {"a": 1, "c": 2}


def test_a_key_that_is_not_a_plain_value_is_refused():
    with pytest.raises(yaml.MarkedYAMLError, match="a mapping key must be a plain value"):
        lined_yaml.load("? [a, b]\n: c\n")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_an_empty_file_is_none(text):
    assert lined_yaml.load(text) is None


@pytest.mark.parametrize("text, line, problem", [
    ("a: 1\nb:\n  c: 2\n  c: 3\n", 4, "duplicate key 'c'"),
    ("a: 1\na: 2\n", 2, "duplicate key 'a'"),
])
def test_a_duplicate_key_is_refused_with_its_line_on_both_paths(text, line, problem):
    for read in (lined_yaml._from_events, _node):
        with pytest.raises(yaml.MarkedYAMLError) as caught:
            read(text)
        assert caught.value.problem == problem
        assert caught.value.problem_mark.line + 1 == line


@pytest.mark.parametrize("text", [
    "a: [1, 2\nb: 3\n",
    "a: 'unclosed\n",
    "a:\n  - x\n - y\n",
    "a: *nowhere\n",
    "one\n---\ntwo\n",
])
def test_broken_yaml_gets_safe_loaders_message_and_line(text):
    with pytest.raises(yaml.YAMLError) as fast:
        lined_yaml.load(text)
    with pytest.raises(yaml.YAMLError) as slow:
        _node(text)
    assert str(fast.value) == str(slow.value)
