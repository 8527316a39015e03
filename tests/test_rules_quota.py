"""A project's `quota` section in the rules file: sizes, warning threshold, mistakes at lines."""

from __future__ import annotations

import pytest

from sidecar.rules.load import RulesError
from sidecar.rules.load import parse_rules
from sidecar.rules.quota import QuotaRule
from sidecar.rules.quota import parse_percent
from sidecar.rules.quota import parse_size

SOURCE = "rules.yaml"


def quota_text(body: str) -> str:
    """A rules file whose first project has the quota `body` (lines indented under quota:)."""
    lines = "".join(f"      {line}\n" for line in body.splitlines())
    return ("# quotas\nprojects:\n  - name: other\n  - name: library\n    public: true\n"
            f"    quota:\n{lines}    webhooks: []\n")


def problems(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(RulesError) as info:
        parse_rules(text, SOURCE, environ or {})
    return info.value.problems


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(("value", "expected"), [
    ("10GiB", 10 * 1024 ** 3),
    ("10 GiB", 10 * 1024 ** 3),
    ("10gib", 10 * 1024 ** 3),
    ("512MiB", 512 * 1024 ** 2),
    ("1.5GiB", 1536 * 1024 ** 2),
    ("0.1KiB", 102),  # a fraction of a unit rounds down to whole bytes
    ("64KiB", 65536),
    ("2TiB", 2 * 1024 ** 4),
    ("1024TiB", 1024 ** 5),  # Harbor's maximum
    ("100B", 100),
    ("1048576", 1048576),
    (1048576, 1048576),
    (-1, -1),
    ("-1", -1),
    (" 3 MiB ", 3 * 1024 ** 2),
])
def test_sizes_in_binary_units_or_bytes(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize(("value", "reason"), [
    ("10GB", "use binary units (GiB, 1024-based)"),
    ("10G", "use binary units (GiB, 1024-based)"),
    ("5 MB", "use binary units (MiB, 1024-based)"),
    ("10PiB", "unknown unit 'PiB'"),
    ("ten GiB", "is not a size"),
    ("-5GiB", "is not a size"),
    ("", "is not a size"),
    ("1.5", "bytes must be a whole number"),
    ("1.5B", "bytes must be a whole number"),
    (0, "invalid non-positive value for quota limit, value=0"),
    ("0GiB", "invalid non-positive value for quota limit, value=0"),
    (-2, "invalid non-positive value for quota limit, value=-2"),
    ("1025TiB", "exceeded 1024TB, which is 1125899906842624 Bytes, value=1126999418470400"),
    (True, "storage must be a size"),
    (1.5, "storage must be a size"),
    (None, "storage must be a size"),
])
def test_bad_sizes_say_why(value, reason):
    with pytest.raises(ValueError) as info:
        parse_size(value)
    assert reason in str(info.value)


@pytest.mark.parametrize(("value", "expected"), [("85%", 85), (80, 80), ("100%", 100),
                                                 ("1%", 1), ("90 %", 90), ("70", 70)])
def test_warning_percent(value, expected):
    assert parse_percent(value) == expected


@pytest.mark.parametrize("value", ["0%", "101%", "85.5%", "0.85", "-5%", True, 0.85, "high"])
def test_bad_warning_percent(value):
    with pytest.raises(ValueError):
        parse_percent(value)


def test_quota_section_gives_the_project_its_rule():
    text = quota_text("storage: 10GiB\nwarning: 90%\nwarning_repeat: every_push")
    rules = parse_rules(text, SOURCE, {})
    assert rules.project("library").quota == QuotaRule(10 * 1024 ** 3, 90, "every_push")
    assert rules.project("other").quota is None  # no section: no quota, nothing is counted


def test_warning_defaults_to_harbors_85_percent_once_per_crossing():
    rules = parse_rules(quota_text("storage: -1"), SOURCE, {})
    quota = rules.project("library").quota
    assert quota == QuotaRule(-1, 85, "once") and quota.unlimited


def test_quota_sizes_come_from_the_environment():
    text = quota_text("storage: ${LIBRARY_QUOTA:-1GiB}")
    assert parse_rules(text, SOURCE, {}).project("library").quota.storage == 1024 ** 3
    environ = {"LIBRARY_QUOTA": "2GiB"}
    assert parse_rules(text, SOURCE, environ).project("library").quota.storage == 2 * 1024 ** 3
    text = quota_text("storage: ${LIBRARY_QUOTA}")
    assert problems(text) == [f"{SOURCE}:{line_of(text, 'storage:')}: environment variable "
                              "LIBRARY_QUOTA is not set", f"{SOURCE}:{line_of(text, 'storage:')}: "
                              "storage '' is not a size: use a number with B, KiB, MiB, GiB or "
                              "TiB (10GiB), plain bytes, or -1 for unlimited"]


def test_every_mistake_is_reported_at_its_line():
    text = quota_text("storage: 10GB\nwarning: 120%\nwarning_repeat: always\nhard: 5")
    assert problems(text) == [
        f"{SOURCE}:{line_of(text, 'hard:')}: unknown key 'hard' in quota (expected storage, "
        "warning, warning_repeat)",
        f"{SOURCE}:{line_of(text, 'storage:')}: storage '10GB': use binary units (GiB, "
        "1024-based), as Harbor shows sizes",
        f"{SOURCE}:{line_of(text, 'warning:')}: warning must be between 1% and 100%, got 120%",
        f"{SOURCE}:{line_of(text, 'warning_repeat:')}: warning_repeat must be once or "
        "every_push, got 'always'",
    ]


def test_quota_without_storage_or_not_a_mapping_is_refused():
    text = quota_text("warning: 80%")
    assert problems(text) == [f"{SOURCE}:{line_of(text, 'quota:')}: quota needs 'storage': "
                              "a size such as 10GiB, or -1"]
    text = "projects:\n  - name: library\n    quota: 10GiB\n"
    assert problems(text) == [f"{SOURCE}:3: quota must be a mapping with 'storage' (and "
                              "optionally 'warning' and 'warning_repeat')"]


def test_a_bad_quota_refuses_the_whole_file_with_other_mistakes_too():
    text = ("projects:\n  - name: library\n    quota: {storage: 0}\n"
            "  - name: Bad\n")
    assert problems(text) == [
        f"{SOURCE}:3: invalid non-positive value for quota limit, value=0 (use -1 for unlimited)",
        f"{SOURCE}:4: invalid project name 'Bad': use lower-case letters, digits and . _ - "
        "between them",
    ]
