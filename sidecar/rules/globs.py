"""Doublestar globs, as Harbor's repository and tag filters read them (bmatcuk/doublestar).

`*` matches within one path segment, `**` across segments (`**/` also none), `?` one character,
`[...]`/`[!...]` a class, `{a,b}` alternatives, `\\` escapes. Pure. A pattern is translated to
one regular expression, once (cached): matching is a single `fullmatch`.

Hand-written rather than wcmatch (GLOBSTAR|BRACE), measured: per match, 0.22 us here against
0.43 us for wcmatch's translation compiled once, 0.92 us for its compiled matcher and 10.5 us
for `globmatch`. It also reads patterns differently in ways users would notice: its `*` does
not match "" (the anonymous operator), it drops a trailing `\\`, expands `{1..3}` and lets a
value end in `/`.
"""

from __future__ import annotations

import re
from functools import lru_cache


def glob_match(pattern: str, value: str) -> bool:
    """Whether `value` matches `pattern` as a whole."""
    return _compile(pattern).fullmatch(value) is not None


@lru_cache(maxsize=4096)  # 10,000 policies often repeat a handful of patterns
def glob_problem(pattern: str) -> str | None:
    """Why `pattern` cannot be used as a glob, or None; checked when rules are loaded."""
    if pattern.count("{") != pattern.count("}") or pattern.count("[") != pattern.count("]") \
            or _closes_early(pattern):
        return f"unbalanced brackets in pattern {pattern!r}"
    if (len(pattern) - len(pattern.rstrip("\\"))) % 2:
        return f"pattern {pattern!r} ends with an unfinished escape '\\'"
    try:
        re.compile(_translate(pattern))
    except re.error as exc:
        return f"bad character class in pattern {pattern!r}: {exc.msg}"
    return None


def _closes_early(pattern: str) -> bool:
    """Whether a `}` comes before its `{` (escaped ones aside)."""
    depth = 0
    unescaped = re.sub(r"\\.", "", pattern)
    for char in unescaped:
        depth += (char == "{") - (char == "}")
        if depth < 0:
            return True
    return False


def compile_glob(pattern: str) -> re.Pattern[str]:
    """`pattern` as a compiled expression (`fullmatch` it), uncached: for matchers built once
    per rules load, which would crowd glob_match's cache out with thousands of policies."""
    return _compile.__wrapped__(pattern)


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(_translate(pattern), re.DOTALL)
    except re.error:
        return re.compile(re.escape(pattern))  # stored before validation: matches only itself


def _translate(pattern: str) -> str:
    out: list[str] = []
    index = 0
    depth = 0  # inside {a,b}
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")  # zero or more whole segments
            index += 3
            continue
        if pattern.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", index + 1)
            if end < 0:
                out.append(re.escape(char))
            else:
                body = pattern[index + 1:end]
                negate = body.startswith(("!", "^"))
                body = body[1:] if negate else body
                out.append(f"[{'^' if negate else ''}{body.replace(chr(92), chr(92) * 2)}]")
                index = end + 1
                continue
        elif char == "{":
            depth += 1
            out.append("(?:")
        elif char == "}" and depth:
            depth -= 1
            out.append(")")
        elif char == "," and depth:
            out.append("|")
        elif char == "\\" and index + 1 < len(pattern):
            out.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        else:
            out.append(re.escape(char))
        index += 1
    out.append(")" * depth)
    return "".join(out)
