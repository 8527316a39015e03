"""The folders follow the data flow (proxy -> events -> record -> store -> dispatch; api reads
the store), and no import runs back up it: the pure core never imports the proxy, the API or
the CLI, and the registry client (sidecar/registry/, I/O) imports none of proxy, api or the
CLI. A new import that breaks this fails here, naming the file and the import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sidecar"

#: package -> the sidecar packages it may import (besides itself)
ALLOWED = {
    "events": set(),
    "rules": {"events"},
    "store": {"rules", "events"},
    "record": {"events", "rules", "store"},
    "jobs": {"store"},
    "dispatch": {"events", "rules", "store", "jobs", "neterrors"},
    "registry": {"neterrors"},
    "proxy": {"events", "neterrors", "registry"},
    "neterrors": set(),  # a leaf module: transport-error reasons for proxy and dispatch
    "api": {"events", "rules", "store", "dispatch", "metrics", "report_text", "registry"},
    "scan": {"events", "rules"},
}
PURE = ("events",)
#: pure modules inside packages that also do I/O
PURE_MODULES = ("scan/spec.py", "scan/report.py", "scan/summary.py", "scan/plan.py")
IO_MODULES = {"socket", "requests", "urllib3", "gevent", "peewee", "flask", "subprocess"}


def _files(package: str) -> list[Path]:
    """The files of a package, or the one file of a top-level module."""
    module = PACKAGE / f"{package}.py"
    files = [module] if module.exists() else sorted((PACKAGE / package).rglob("*.py"))
    assert files, f"no sidecar/{package} to check"
    return files


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_import_runs_back_up_the_data_flow(package):
    wrong = []
    for path in _files(package):
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] != "sidecar" or len(parts) < 2 or parts[1] == package:
                continue
            if parts[1] not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line}: imports {module}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", PURE)
def test_pure_core_does_no_io(package):
    wrong = [
        f"{path.relative_to(PACKAGE)}:{line}: imports {module}"
        for path in _files(package)
        for line, module in _imports(path)
        if module.split(".")[0] in IO_MODULES
    ]
    assert not wrong, "\n".join(wrong)


def test_no_module_borrows_another_modules_private_names():
    """A helper two modules need is shared under a public name, not imported as `_name`."""
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sidecar"):
                wrong.extend(
                    f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__"))
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_do_no_io(module):
    """They import no I/O library, and of the sidecar only the pure core and each other."""

    def pure(name: str) -> bool:
        parts = name.split(".")
        if parts[0] != "sidecar":
            return parts[0] not in IO_MODULES
        return parts[1] in PURE or "/".join(parts[1:]) + ".py" in PURE_MODULES

    wrong = [f"{module}:{line}: imports {name}"
             for line, name in _imports(PACKAGE / module) if not pure(name)]
    assert not wrong, "\n".join(wrong)
