"""A user who ran `pip install .` (no `postgres` extra) and points the sidecar at PostgreSQL is
told at start how to get the driver, instead of peewee's bare "driver not found"."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support.sidecar import sidecar_command

FIX = "pip install 'registry-webhook-sidecar[postgres]'"


@pytest.fixture
def without_psycopg2(tmp_path) -> dict[str, str]:
    """An environment in which `import psycopg2` fails, as in a venv without the extra."""
    shadow = tmp_path / "no-psycopg2"
    shadow.mkdir()
    (shadow / "psycopg2.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg2'\", name='psycopg2')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(shadow), *filter(None, [os.environ.get("PYTHONPATH")])])}


def run(args: list[str], env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([*sidecar_command(), *args], capture_output=True, text=True,
                          timeout=60, env=env, cwd=cwd)


def test_serve_names_the_extra_when_the_driver_is_missing(tmp_path, without_psycopg2):
    result = run(["serve", "--bind", "127.0.0.1:1", "--upstream", "http://127.0.0.1:1",
                  "--database", "postgresql://sidecar:s3cret-pw@127.0.0.1:5432/sidecar"],
                 without_psycopg2, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "sidecar: cannot open database postgresql://sidecar:***@127.0.0.1:5432/sidecar: "
        f"PostgreSQL needs the psycopg2 driver, which is not installed: {FIX}")


def test_operator_commands_say_the_same(tmp_path, without_psycopg2):
    result = run(["status", "--database", "postgresql://sidecar@127.0.0.1:5432/sidecar"],
                 without_psycopg2, tmp_path)
    assert result.returncode != 0
    assert FIX in result.stderr
