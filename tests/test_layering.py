"""The folders follow the data flow (proxy -> events -> record -> store -> dispatch; the API,
the UI, the operators' pages and the CLI read the store), and no import runs back up it: the
pure core never imports the proxy, the API or the CLI, and the registry client
(sidecar/registry/, I/O) imports none of proxy, api or the CLI. A new import that breaks this
fails here, naming the file and the import; a new package or top-level module fails until it
says here what it may import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sidecar"

#: unit (a package, a sub-package or a top-level module) -> the units it may import (besides
#: itself). A file belongs to the longest unit its path starts with.
ALLOWED = {
    "events": set(),
    # the formats table says which target types, payload formats and fields exist
    "rules": {"events", "dispatch.formats"},
    "dispatch.formats": {"events"},
    "dispatch": {"events", "rules", "store", "jobs", "neterrors", "dispatch.formats", "lazy",
                 "keepalive"},
    "store": {"rules", "events", "redact", "native"},
    "record": {"events", "rules", "store"},
    "jobs": {"store", "rules"},  # rules.cron: Harbor's schedules
    "registry": {"neterrors", "lazy"},
    "proxy": {"events", "neterrors", "registry", "keepalive"},
    "server": {"proxy"},
    # a leaf: the client's address behind trusted front proxies (sidecar.trusted_proxies)
    "clientaddr": set(),  # the gunicorn worker hands proxied requests to the proxy
    "neterrors": set(),  # a leaf module: transport-error reasons for proxy and dispatch
    "lazy": set(),  # a leaf: libraries imported on first use (a worker's memory, issue 13)
    "keepalive": {"native"},  # whether an idle kept-alive connection is still usable
    "native": set(),  # a leaf: the standard library's objects as they were before gevent
    "scan": {"events", "rules", "store", "jobs", "registry", "lazy"},
    "retain": {"events", "rules", "store", "jobs", "registry"},
    "replicate": {"events", "rules", "store", "jobs", "registry", "lazy"},
    # storage quotas: the books and the recalculation job (the gate is proxy's)
    "quota": {"events", "rules", "store", "registry", "jobs"},
    "redact": {"rules"},
    "timefmt": set(),
    "config": {"registry", "rules"},
    "metrics": set(),
    # what the three audiences share: Basic auth, the global switch
    "api": {"store", "clientaddr"},
    "api.harbor": {"api", "events", "rules", "store", "dispatch", "dispatch.formats",
                   "redact", "timefmt", "scan", "replicate"},
    # the status report pages its policies with Harbor's conventions (api.harbor.params)
    "api.ops": {"api", "api.harbor", "events", "store", "redact", "timefmt", "metrics",
                "registry"},
    # a UI delivery row is the status page's (api.ops.report); lists page as Harbor's do
    "api.ui": {"api", "api.harbor", "api.ops", "events", "rules", "store", "dispatch",
               "dispatch.formats", "redact", "timefmt", "replicate"},
    "cli": {"api.ops", "app", "preload", "config", "events", "rules", "store", "dispatch",
            "dispatch.formats", "redact", "timefmt", "proxy", "serve", "registry", "scan",
            "replicate"},
    "app": {"api", "api.harbor", "api.ops", "api.ui", "clientaddr", "config", "dispatch",
            "events", "jobs",
            "metrics",
            "preload",
            "proxy", "quota", "record", "registry", "replicate", "retain", "rules", "scan",
            "store"},
    "serve": {"config", "app"},
    # the master's rules preload: only what it needs, so the master stays small
    "preload": {"config", "rules", "store", "native"},
    "main": {"cli"},
}
#: No I/O library imported here: rendering and rule checking are testable without a network
#: or a database, and cannot block a worker.
PURE = ("events", "clientaddr", "dispatch.formats", "dispatch.render", "dispatch.retry",
        "dispatch.signing",
        "rules.policy", "rules.target", "rules.match", "redact", "timefmt", "api.harbor.shapes",
        "api.ops.report", "api.ui.cards", "api.ui.forms", "cli.report_text")
#: pure modules inside packages that also do I/O, held to more: of the sidecar they import
#: only the pure units above and each other
PURE_MODULES = ("scan.spec", "scan.report", "scan.summary", "scan.plan", "rules.cron",
                "rules.globs", "rules.retention", "retain.policy", "retain.activity",
                "replicate.plan", "replicate.throttle")
IO_MODULES = {"socket", "requests", "urllib3", "gevent", "peewee", "flask", "subprocess"}


def _dotted(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(dotted: str) -> str | None:
    """The longest unit `dotted` (a module path below sidecar) belongs to."""
    best = None
    for unit in ALLOWED:
        if (dotted == unit or dotted.startswith(unit + ".")) and len(unit) > len(best or ""):
            best = unit
    return best


def _exists(dotted: str) -> bool:
    base = PACKAGE.joinpath(*dotted.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import; `from a import b` names a.b when b is a module."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                inside = sub.split(".", 1)[1] if sub.startswith("sidecar.") else ""
                found.append((node.lineno, sub if inside and _exists(inside) else node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def _files():
    return sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE) != Path("__init__.py"))


def test_every_module_belongs_to_a_unit():
    unplaced = [str(p.relative_to(PACKAGE)) for p in _files() if _unit(_dotted(p)) is None]
    assert not unplaced, f"say in ALLOWED what these may import: {unplaced}"


@pytest.mark.parametrize("unit", sorted(ALLOWED))
def test_no_import_runs_back_up_the_data_flow(unit):
    wrong = []
    for path in _files():
        if _unit(_dotted(path)) != unit:
            continue
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] != "sidecar" or len(parts) < 2:
                continue
            target = _unit(".".join(parts[1:]))
            if target != unit and target not in ALLOWED[unit]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line}: imports {module}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("unit", PURE)
def test_pure_core_does_no_io(unit):
    wrong = [
        f"{path.relative_to(PACKAGE)}:{line}: imports {module}"
        for path in _files()
        if _dotted(path) == unit or _dotted(path).startswith(unit + ".")
        for line, module in _imports(path)
        if module.split(".")[0] in IO_MODULES
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("unit", PURE)
def test_pure_units_exist(unit):
    assert _exists(unit), f"{unit} is listed as pure but is gone: update PURE"


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
    """They import no I/O library, and of the sidecar only the pure units and each other."""

    def pure(name: str) -> bool:
        parts = name.split(".")
        if parts[0] != "sidecar":
            return parts[0] not in IO_MODULES
        inside = ".".join(parts[1:])
        return inside in PURE_MODULES or any(
            inside == unit or inside.startswith(unit + ".") for unit in PURE)

    path = PACKAGE.joinpath(*module.split(".")).with_suffix(".py")
    wrong = [f"{module}:{line}: imports {name}"
             for line, name in _imports(path) if not pure(name)]
    assert not wrong, "\n".join(wrong)
