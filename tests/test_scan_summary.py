"""Harbor's NativeReportSummary of an adapter report, and what counts as a report that parses.

Harbor's rules (2.10, GenerateNativeSummary): one count per id/package/version, overall
severity = the highest item's (None when there are none, and Unknown ranks with None),
fixable = items with a fix_version, only the severities present; times as Go writes them.
"""

from __future__ import annotations

import json

import pytest

from sidecar.scan import summary
from sidecar.scan.report import ReportError
from sidecar.scan.report import parse_report
from sidecar.scan.report import report_from
from tests.scanner_spec import assert_valid


def vuln(vid: str, severity: str, *, package: str = "openssl", version: str = "1.0",
         fix: str = "") -> dict:
    return {"id": vid, "package": package, "version": version, "fix_version": fix,
            "severity": severity}


def summarize(vulnerabilities, **extra) -> dict:
    report = report_from({"scanner": {"name": "S", "vendor": "V", "version": "1"},
                          "vulnerabilities": vulnerabilities, **extra})
    return summary.completed(report, report_id="r", start_time=100.0, end_time=107.9).as_dict()


def test_counts_per_severity_only_those_present_and_fixable():
    got = summarize([vuln("A", "High", fix="1.1"), vuln("B", "Low"), vuln("C", "Low", fix="2"),
                     vuln("D", "Critical")])
    assert got["summary"] == {"total": 4, "fixable": 2,
                              "summary": {"Critical": 1, "High": 1, "Low": 2}}
    assert list(got["summary"]["summary"]) == ["Critical", "High", "Low"]  # Go sorts map keys
    assert got["severity"] == "Critical"
    assert got["scan_status"] == "Success" and got["complete_percent"] == 100


def test_one_finding_listed_twice_counts_once_but_other_versions_count_apart():
    got = summarize([vuln("A", "High", fix="1.1"), vuln("A", "High", fix="1.1"),
                     vuln("A", "High", version="2.0"), vuln("A", "High", package="libssl")])
    assert got["summary"]["total"] == 3
    assert got["summary"]["fixable"] == 1
    assert got["summary"]["summary"] == {"High": 3}


def test_no_findings_is_severity_none_with_an_empty_map():
    for empty in ([], None):
        got = summarize(empty)
        assert got["severity"] == "None"
        assert got["summary"] == {"total": 0, "fixable": 0, "summary": {}}


def test_unknown_findings_rank_with_none():
    assert summarize([vuln("A", "Unknown")])["severity"] == "None"
    assert summarize([vuln("A", "Unknown"), vuln("B", "Negligible")])["severity"] == "Negligible"


def test_the_reports_own_overall_severity_is_not_trusted():
    assert summarize([vuln("A", "Low")], severity="Critical")["severity"] == "Low"


def test_field_order_times_and_duration_as_harbor_writes_them():
    got = summarize([])
    assert list(got) == ["report_id", "scan_status", "severity", "duration", "summary",
                         "start_time", "end_time", "scanner", "complete_percent"]
    assert got["start_time"] == "1970-01-01T00:01:40Z"
    assert got["end_time"] == "1970-01-01T00:01:47.9Z"
    assert got["duration"] == 7  # whole seconds of each end, as Go's Unix() - Unix()


@pytest.mark.parametrize(("timestamp", "text"), [
    (1604653672.12667, "2020-11-06T09:07:52.12667Z"),
    (1604653672.0, "2020-11-06T09:07:52Z"),
    (1604653672.5, "2020-11-06T09:07:52.5Z"),
    (1604653672.0000004, "2020-11-06T09:07:52Z"),
])
def test_go_time(timestamp, text):
    assert summary.go_time(timestamp) == text


def test_a_report_without_scanner_has_no_scanner_member():
    report = report_from({"vulnerabilities": []})
    got = summary.completed(report, report_id="r", start_time=1, end_time=2).as_dict()
    assert "scanner" not in got


@pytest.mark.parametrize("status", ["Error", "Stopped"])
def test_an_unfinished_scan_has_no_counts_scanner_or_severity(status):
    got = summary.unfinished(status, report_id="r", start_time=10, end_time=5).as_dict()
    assert got == {"report_id": "r", "scan_status": status, "severity": "", "duration": 0,
                   "start_time": "1970-01-01T00:00:10Z", "end_time": "1970-01-01T00:00:05Z",
                   "complete_percent": 0}
    with pytest.raises(ValueError):
        summary.unfinished("Success", report_id="r", start_time=1, end_time=2)


# --- what parses -----------------------------------------------------------------------------

SPEC_EXAMPLE = {  # the spec README's sample report (sample interaction, step 5), one item
    "generated_at": "2021-03-09T11:40:28.154072066Z",
    "artifact": {"repository": "library/docker", "digest":
                 "sha256:7215e8e09ea282e517aa350fc5380c1773c117b1867316fb59076d901e252d15",
                 "mime_type": "application/vnd.docker.distribution.manifest.v2+json"},
    "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "v0.16.0"},
    "severity": "High",
    "vulnerabilities": [{
        "id": "CVE-2020-1967", "package": "libcrypto1.1", "version": "1.1.1c-r0",
        "fix_version": "1.1.1g-r0", "severity": "High", "description": "...",
        "links": ["https://avd.aquasec.com/nvd/cve-2020-1967"],
        "preferred_cvss": {"score_v2": 5, "score_v3": 7.5,
                           "vector_v2": "AV:N/AC:L/Au:N/C:N/I:N/A:P",
                           "vector_v3": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"},
        "cwe_ids": ["CWE-476"],
        "vendor_attributes": {"CVSS": {"nvd": {"V2Score": 5, "V3Score": 7.5}}},
    }],
}


def test_the_spec_example_report_is_valid_and_parses():
    assert_valid("HarborVulnerabilityReport", SPEC_EXAMPLE)
    report = parse_report(json.dumps(SPEC_EXAMPLE).encode())
    assert report.scanner.name == "Trivy"
    assert [v.id for v in report.vulnerabilities] == ["CVE-2020-1967"]


def test_nulls_are_zero_values_as_go_reads_them():
    report = report_from({"scanner": None, "vulnerabilities": [
        {"id": None, "package": "p", "version": None, "fix_version": None, "severity": "Low",
         "links": None, "preferred_cvss": None, "cwe_ids": None, "vendor_attributes": None}]})
    assert report.scanner is None
    assert report.vulnerabilities[0].fix_version == ""


@pytest.mark.parametrize(("body", "reason"), [
    (b"<html>bad gateway</html>", "the report is not JSON"),
    (b"\xff\xfe", "the report is not JSON"),
    (b"[]", "the report must be a JSON object, not list"),
    (b'{"vulnerabilities": "many"}', "vulnerabilities must be a list"),
    (b'{"vulnerabilities": [1]}', r"vulnerabilities\[0\] must be an object"),
    (b'{"vulnerabilities": [{"severity": "High", "id": 7}]}',
     r"vulnerabilities\[0\].id must be a string, not int"),
    (b'{"vulnerabilities": [{"severity": "SEVERE"}]}',
     r"vulnerabilities\[0\].severity 'SEVERE' is not one of Harbor's severities"),
    (b'{"vulnerabilities": [{"id": "x"}]}', r"vulnerabilities\[0\].severity None is not one"),
    (b'{"vulnerabilities": [{"severity": "Low", "links": "http://x"}]}',
     r"vulnerabilities\[0\].links must be a list"),
    (b'{"vulnerabilities": [{"severity": "Low", "preferred_cvss": {"score_v3": true}}]}',
     r"preferred_cvss.score_v3 must be a number, not bool"),
    (b'{"vulnerabilities": [{"severity": "Low", "cwe_ids": [1]}]}',
     r"cwe_ids\[0\] must be a string"),
    (b'{"scanner": "trivy"}', "scanner must be an object"),
    (b'{"scanner": {"name": 1}}', "scanner.name must be a string"),
    (b'{"generated_at": 5}', "generated_at must be a string"),
])
def test_reports_that_do_not_parse_say_where(body, reason):
    with pytest.raises(ReportError, match=reason):
        parse_report(body)
