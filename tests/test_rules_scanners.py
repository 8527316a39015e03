"""The rules file's `scanners:` section and the projects' `auto_scan` / `scanner` keys: what
is accepted, and every mistake at its file:line (in the library and through check-rules)."""

from __future__ import annotations

import base64
import subprocess

import pytest

from sidecar.rules.load import RulesError
from sidecar.rules.load import parse_rules
from sidecar.rules.scanners import Scanner
from sidecar.rules.scanners import scanner_for
from tests.support.sidecar import sidecar_command

SOURCE = "rules.yaml"
TOKEN = "scanner-t0ken-5ecret"

VALID = """\
scanners:
  - name: trivy
    url: http://trivy-adapter:8080/
    auth: Bearer
    access_credential: ${SCANNER_TOKEN}
    skip_cert_verify: false
    default: true
  - name: clair
    url: https://clair.example:8443
    auth: X-ScannerAdapter-API-Key
    access_credential: key-${SUFFIX:-1}
  - name: plain
    url: http://10.0.0.7:8080
projects:
  - name: library
    auto_scan: true
    scanner: trivy
  - name: team
    auto_scan: true
  - name: other
    scanner: clair
"""


def line_of(text: str, needle: str, nth: int = 1) -> int:
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) >= nth, f"{needle!r} not in text"
    return hits[nth - 1]


def problems(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(RulesError) as info:
        parse_rules(text, SOURCE, environ if environ is not None else {"SCANNER_TOKEN": TOKEN})
    return info.value.problems


def test_scanners_and_project_keys_as_harbor_names_them():
    rules = parse_rules(VALID, SOURCE, {"SCANNER_TOKEN": TOKEN})
    trivy, clair, plain = rules.scanners
    assert trivy == Scanner(name="trivy", url="http://trivy-adapter:8080", auth="Bearer",
                            access_credential=TOKEN, default=True, line=2)
    assert (clair.auth, clair.access_credential, clair.default, clair.line) == \
        ("APIKey", "key-1", False, line_of(VALID, "name: clair"))
    assert (plain.auth, plain.access_credential) == ("", "")
    library, team, other = rules.projects
    assert (library.auto_scan, library.scanner) == (True, "trivy")
    assert (team.auto_scan, team.scanner) == (True, "")
    assert (other.auto_scan, other.scanner) == (False, "clair")
    assert scanner_for(rules.scanners, team.scanner) is trivy  # the default
    assert scanner_for(rules.scanners, other.scanner) is clair


def test_no_scanners_at_all_is_fine():
    rules = parse_rules("projects:\n  - name: library\n", SOURCE, {})
    assert rules.scanners == ()
    assert rules.projects[0].auto_scan is False and rules.projects[0].scanner == ""


def test_the_credential_stays_out_of_reprs():
    rules = parse_rules(VALID, SOURCE, {"SCANNER_TOKEN": TOKEN})
    assert TOKEN not in repr(rules)


def test_adapter_headers_are_harbors():
    basic = Scanner(name="a", url="http://a", auth="Basic", access_credential="u:p")
    assert basic.adapter_headers() == {
        "Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
    assert Scanner(name="a", url="http://a", auth="Bearer", access_credential="t"
                   ).adapter_headers() == {"Authorization": "Bearer t"}
    assert Scanner(name="a", url="http://a", auth="APIKey", access_credential="k"
                   ).adapter_headers() == {"X-ScannerAdapter-API-Key": "k"}
    assert Scanner(name="a", url="http://a").adapter_headers() == {}


def scanners_text(body: str, projects: str = "projects: []\n") -> str:
    return "scanners:\n" + body + projects


@pytest.mark.parametrize(("body", "needle", "message"), [
    ("  - name: a\n    url: trivy:8080\n    default: true\n", "url:",
     "scanner registration validate: invalid scheme: the address must start with http:// or "
     "https://"),
    ("  - name: a\n    url: ftp://x\n    default: true\n", "url:",
     "scanner registration validate: invalid scheme: ftp"),
    ("  - name: a\n    url: http://u:pw@x\n    default: true\n", "url:",
     "scanner registration validate: credentials in the URL: use auth and access_credential "
     "instead"),
    ("  - name: a\n    default: true\n", "- name: a", "scanner registration validate: empty URL"),
    ("  - url: http://x\n    default: true\n", "- url:", "missing registration name"),
    ("  - name: a\n    url: http://x\n    auth: Digest\n    access_credential: c\n"
     "    default: true\n", "auth:",
     'auth type Digest is not supported (use "", Basic, Bearer or X-ScannerAdapter-API-Key)'),
    ("  - name: a\n    url: http://x\n    auth: Bearer\n    default: true\n", "auth:",
     "access_credential is required for auth type Bearer"),
    ("  - name: a\n    url: http://x\n    auth: Basic\n    access_credential: justatoken\n"
     "    default: true\n", "access_credential:",
     "access_credential for Basic must be user:password"),
    ("  - name: a\n    url: http://x\n    skip_cert_verify: 'no'\n    default: true\n",
     "skip_cert_verify", "skip_cert_verify must be true or false"),
    ("  - name: a\n    url: http://x\n    default: yes please\n", "default:",
     "default must be true or false"),
    ("  - name: a\n    url: http://x\n    description: d\n    default: true\n", "description",
     "unknown key 'description' in scanner (expected one of name, url, auth, "
     "access_credential, skip_cert_verify, default)"),
    ("  - just-a-string\n", "just-a-string",
     "a scanner must be a mapping with 'name' and 'url'"),
])
def test_a_bad_scanner_is_named_at_its_line(body, needle, message):
    text = scanners_text(body)
    assert problems(text) == [f"{SOURCE}:{line_of(text, needle)}: {message}"]


def test_scanners_must_be_a_list():
    assert problems("scanners:\n  trivy: http://x\n") == [
        f"{SOURCE}:1: 'scanners' must be a list of scanner registrations"]


def test_exactly_one_default():
    two = scanners_text("  - name: a\n    url: http://a\n    default: true\n"
                        "  - name: b\n    url: http://b\n    default: true\n")
    assert problems(two) == [f"{SOURCE}:{line_of(two, 'default', 2)}: two default scanners "
                             "('a' and 'b'): mark exactly one with default: true"]
    none = scanners_text("  - name: a\n    url: http://a\n")
    assert problems(none) == [
        f"{SOURCE}:1: no default scanner: mark exactly one with default: true"]


def test_a_scanner_declared_twice():
    text = scanners_text("  - name: a\n    url: http://a\n    default: true\n"
                         "  - name: a\n    url: http://b\n")
    assert problems(text) == [f"{SOURCE}:{line_of(text, 'name: a', 2)}: scanner 'a' is "
                              "declared twice"]


def test_projects_naming_an_unknown_scanner_or_scanning_with_none():
    text = VALID.replace("scanner: clair", "scanner: grype").replace(
        "  - name: team\n", "  - name: team\n    scanner: 7\n")
    assert problems(text, {"SCANNER_TOKEN": TOKEN}) == [
        f"{SOURCE}:{line_of(text, 'scanner: 7')}: scanner must be the name of a declared "
        "scanner",
        f"{SOURCE}:{line_of(text, 'scanner: grype')}: unknown scanner 'grype' (declared: "
        "trivy, clair, plain)",
    ]
    lonely = "projects:\n  - name: library\n    auto_scan: true\n    scanner: trivy\n" \
             "  - name: other\n    auto_scan: 'yes'\n  - name: third\n    auto_scan: true\n"
    assert problems(lonely, {}) == [
        f"{SOURCE}:4: unknown scanner 'trivy' (declared: none)",
        f"{SOURCE}:6: auto_scan must be true or false",
        f"{SOURCE}:8: auto_scan needs a scanner: declare one under 'scanners' (no available "
        "scanner for the project)",
    ]


def test_a_broken_scanners_section_is_not_echoed_by_every_project():
    text = VALID.replace("url: http://trivy-adapter:8080/", "url: nope")
    assert problems(text, {"SCANNER_TOKEN": TOKEN}) == [
        f"{SOURCE}:3: scanner registration validate: invalid scheme: the address must start "
        "with http:// or https://"]


def test_variables_expand_like_webhook_policies_and_missing_ones_are_named():
    assert problems(VALID, {}) == [
        f"{SOURCE}:{line_of(VALID, 'access_credential: ${SCANNER_TOKEN}')}: environment "
        "variable SCANNER_TOKEN is not set"]
    rules = parse_rules(VALID.replace("${SCANNER_TOKEN}", "$${literal}"), SOURCE, {})
    assert rules.scanners[0].access_credential == "${literal}"


def test_messages_never_quote_the_credential():
    text = VALID.replace("auth: Bearer", "auth: Beaer")
    found = problems(text, {"SCANNER_TOKEN": TOKEN})
    assert found == [f"{SOURCE}:4: auth type Beaer is not supported (use \"\", Basic, Bearer "
                     "or X-ScannerAdapter-API-Key)"]
    assert TOKEN not in "\n".join(found)


def check_rules(path) -> subprocess.CompletedProcess:
    return subprocess.run([*sidecar_command(), "check-rules", str(path)], capture_output=True,
                          text=True, timeout=60, env={"SCANNER_TOKEN": TOKEN, "PATH": "/usr/bin"})


def test_check_rules_reports_scanners(tmp_path):
    good = tmp_path / "rules.yaml"
    good.write_text(VALID)
    done = check_rules(good)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{good}: OK, 3 projects, 0 webhook policies, 3 scanners"
    bad = tmp_path / "bad.yaml"
    bad.write_text(VALID.replace("default: true", "default: false"))
    done = check_rules(bad)
    assert done.returncode == 1
    assert done.stderr.strip() == \
        f"{bad}:1: no default scanner: mark exactly one with default: true"
    assert TOKEN not in done.stdout + done.stderr
