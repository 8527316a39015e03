"""YAML read into dicts and lists that remember the line of every mapping, key and list item.

The rules file's error messages name lines, so plain `yaml.safe_load` will not do. PyYAML's
loader (compose every node, then construct) took 3.7 s of a 3 MB, 10,000-policy file; most of
it is building and resolving node objects that are thrown away. `load` builds the values
straight from libyaml's events instead and resolves each distinct plain scalar once, with
PyYAML's own resolver and constructors, so the values are the ones SafeLoader gives.

Anything outside the common subset (merge keys, explicit tags, complex keys, several
documents) goes to the node-based loader, which gives the same values and PyYAML's own
messages; so does every file when PyYAML was built without libyaml.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.events import DocumentEndEvent
from yaml.events import DocumentStartEvent
from yaml.events import MappingEndEvent
from yaml.events import MappingStartEvent
from yaml.events import ScalarEvent
from yaml.events import SequenceEndEvent
from yaml.events import SequenceStartEvent
from yaml.events import StreamEndEvent
from yaml.events import StreamStartEvent

_STR = "tag:yaml.org,2002:str"
#: plain scalars these resolve to are built by SafeLoader's own constructors
_BUILT = frozenset(f"tag:yaml.org,2002:{kind}"
                   for kind in ("bool", "int", "float", "null", "timestamp"))


class LineDict(dict):
    """A mapping and the lines of it (`line`) and of each of its keys (`key_lines`)."""

    line: int = 0
    key_lines: dict[Any, int]


class LineList(list):
    """A sequence and the lines of it (`line`) and of each of its items (`item_lines`)."""

    line: int = 0
    item_lines: list[int]


class NodeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """SafeLoader whose mappings and sequences are LineDict and LineList: the general path."""


def _construct_mapping(loader: NodeLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise yaml.MarkedYAMLError(
                problem="a mapping key must be a plain value", problem_mark=key_node.start_mark
            )
        if key in out:
            raise _duplicate(key, key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader: NodeLoader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


NodeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
NodeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _duplicate(key: Any, mark: Any) -> yaml.MarkedYAMLError:
    return yaml.MarkedYAMLError(problem=f"duplicate key '{key}'", problem_mark=mark)


class _Unusual(Exception):
    """The text uses something the event path leaves to the node-based loader."""


def load(text: str) -> Any:
    """The document in `text`, mappings as LineDict and sequences as LineList (None if empty).

    Raises yaml.YAMLError (a MarkedYAMLError where libyaml or the checks know the place).
    """
    if hasattr(yaml, "CSafeLoader"):
        try:
            return _from_events(text)
        except _Unusual:
            pass
    return yaml.load(text, Loader=NodeLoader)  # noqa: S506 - a SafeLoader subclass


def _from_events(text: str) -> Any:
    loader = NodeLoader(text)
    try:
        return _build(loader)
    finally:
        loader.dispose()


def _build(loader: NodeLoader) -> Any:  # noqa: C901 - one loop over the event kinds
    get = loader.get_event
    if not isinstance(get(), StreamStartEvent):  # pragma: no cover - libyaml always starts so
        raise _Unusual
    event = get()
    if isinstance(event, StreamEndEvent):
        return None
    if not isinstance(event, DocumentStartEvent):  # pragma: no cover
        raise _Unusual
    plain: dict[str, Any] = {}  # each distinct plain scalar, resolved and built once
    anchors: dict[str, Any] = {}
    # open containers: [container, is_mapping, key, key_line, has_key]
    stack: list[list[Any]] = []
    root: Any = None
    while True:
        event = get()
        kind = event.__class__
        if kind is ScalarEvent:
            if event.tag is not None and event.tag != "!":
                raise _Unusual
            if event.implicit[0]:  # plain: null, booleans, numbers, dates, `<<` ...
                value = plain.get(event.value, plain)
                if value is plain:
                    value = plain[event.value] = _plain(loader, event)
            else:
                value = event.value
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            if event.tag is not None:
                raise _Unusual
            if kind is MappingStartEvent:
                value = LineDict()
                value.key_lines = {}
            else:
                value = LineList()
                value.item_lines = []
            value.line = event.start_mark.line + 1
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            stack.pop()
            continue
        elif kind is AliasEvent:
            if event.anchor not in anchors:
                raise _Unusual  # PyYAML's message for an undefined alias
            value, line = anchors[event.anchor]
        elif kind is DocumentEndEvent:
            if not isinstance(get(), StreamEndEvent):
                raise _Unusual  # a second document: PyYAML's message
            return root
        else:  # pragma: no cover - no other event inside a document
            raise _Unusual
        if kind is not AliasEvent:
            line = event.start_mark.line + 1  # an alias is at its anchor's line, as a node is
            if event.anchor is not None:
                anchors[event.anchor] = value, line
        if not stack:
            root = value
        else:
            top = stack[-1]
            parent = top[0]
            if not top[1]:
                parent.append(value)
                parent.item_lines.append(line)
            elif not top[4]:
                if kind is not ScalarEvent:
                    raise _Unusual  # complex and aliased keys: PyYAML's rules
                if value in parent:
                    raise _duplicate(value, event.start_mark)
                top[2], top[3], top[4] = value, line, True
            else:
                parent[top[2]] = value
                parent.key_lines[top[2]] = top[3]
                top[4] = False
        if kind is MappingStartEvent:
            stack.append([value, True, None, 0, False])
        elif kind is SequenceStartEvent:
            stack.append([value, False, None, 0, False])


def _plain(loader: NodeLoader, event: ScalarEvent) -> Any:
    """A plain scalar as SafeLoader builds it (the tag its resolver picks, its constructor)."""
    tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
    if tag == _STR:
        return event.value
    if tag not in _BUILT:
        raise _Unusual  # `<<` as a value, `=` ...
    node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
    return loader.yaml_constructors[tag](loader, node)
