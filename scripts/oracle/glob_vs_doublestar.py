"""glob_match (sidecar.rules.match) vs bmatcuk/doublestar v1.3.4 Match, for tags and repository names."""
import os, random, subprocess, sys
from sidecar.rules.globs import glob_match
ORACLE = os.environ.get("ORACLE", os.path.join(os.path.dirname(os.path.abspath(__file__)), "oracle"))
rng = random.Random(5)
PAT = ["**", "*", "v*", "v1.*", "*-rc*", "release-?", "{v1,v2}*", "[0-9]*", "[!a-z]*", "a/**", "**/b", "a/*", "a/**/b", "*/*", "a**", "**b", "a/b", "latest", "v[12].*", "{a,b/c}", "**/*", "a/*/c", "", "[a", "{a", "\\*", "a?c"]
VAL = ["v1", "v1.2", "v2.0-rc1", "latest", "release-1", "release-10", "9x", "a", "a/b", "a/b/c", "a/x/b", "b", "ab", "a/c", "x/b", "*", "abc", "a/bc", "b/c"]
cases = [(p, v) for p in PAT for v in VAL]
out = subprocess.run([ORACLE], input="".join(f"glob\t{p}\t{v}\n" for p, v in cases), capture_output=True, text=True).stdout.splitlines()
bad = 0
for (p, v), answer in zip(cases, out, strict=True):
    kind, _, value = answer.partition("\t")
    go = value == "true" if kind == "ok" else f"error {value}"
    py = (p == "" or glob_match(p, v))
    if go != py:
        bad += 1; print(f"  pattern {p!r} value {v!r}: doublestar {go}, glob_match {py}")
print(f"{len(cases)} cases, {bad} differ")
