"""`requests` stays out of a worker until a rare path needs it (issue 13: memory), and is
imported correctly on that path: the registry client, the endpoint test and transport errors
still work through `sidecar.lazy`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from sidecar.lazy import LazyModule
from sidecar.lazy import lazy_module

RARE = ("requests", "charset_normalizer", "idna")


def _run(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_lazy_module_is_imported_by_its_first_use():
    found = _run("""
        import json, sys
        from sidecar.lazy import lazy_module
        wave = lazy_module("wave")
        before = "wave" in sys.modules
        error = wave.Error
        print(json.dumps({"before": before, "after": "wave" in sys.modules,
                          "same": error is sys.modules["wave"].Error, "repr": repr(wave)}))
    """)
    assert found == {"before": False, "after": True, "same": True,
                     "repr": "<lazy module 'wave', imported>"}


def test_a_missing_name_is_the_modules_attribute_error():
    json_module = lazy_module("json")
    assert isinstance(json_module, LazyModule)
    assert json_module.dumps([1]) == "[1]"
    try:
        json_module.no_such_name  # noqa: B018 - the lookup is the test
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_a_worker_loads_no_requests_until_a_rare_path_needs_it(tmp_path):
    # the worker's own start: gevent patched, the application built as gunicorn's load()
    found = _run(f"""
        import json, sys
        from gevent import monkey
        monkey.patch_all()
        from sidecar.cli.commands import _prepare_store, _settings_from, build_parser
        from sidecar.serve import SidecarServer
        args = build_parser().parse_args([
            "serve", "--upstream", "http://127.0.0.1:9", "--bind", "127.0.0.1:9",
            "--database", "sqlite:///{tmp_path / 'sidecar.db'}"])
        settings = _settings_from(args)
        _prepare_store(settings)
        server = SidecarServer.__new__(SidecarServer)
        server.settings, server.preloaded = settings, None
        app = server.load()
        loaded = [m for m in {RARE!r} if m in sys.modules]

        from sidecar.registry import RegistryUnavailable
        import sidecar.serve
        client = sidecar.serve._runtime.registry
        try:
            client.ping()  # nothing listens on port 9: requests' error, reported as ours
        except RegistryUnavailable as exc:
            reason = str(exc)
        print(json.dumps({{"loaded": loaded, "reason": reason,
                          "after": [m for m in {RARE!r} if m in sys.modules]}}))
    """)
    assert found["loaded"] == []
    assert "requests" in found["after"]
    assert "refused" in found["reason"].lower() or "connect" in found["reason"].lower()


@pytest.mark.parametrize("allowed", ["True, ()", "False, ['127.0.0.0/8']"],
                         ids=["plain", "guarded"])
def test_the_endpoint_test_reports_a_refused_connection(allowed):
    found = _run(f"""
        import json, sys
        from sidecar.dispatch.addresses import AddressPolicy
        from sidecar.dispatch.probe import send_probe
        from sidecar.dispatch.render import Request
        before = "requests" in sys.modules
        request = Request(url="http://127.0.0.1:9/hook", headers={{}}, body=b"{{}}",
                          verify_tls=True)
        result = send_probe(request, 2.0, addresses=AddressPolicy.of({allowed}))
        print(json.dumps({{"before": before, "ok": result.ok, "error": result.error}}))
    """)
    assert found["before"] is False
    assert found["ok"] is False
    assert found["error"].startswith("connection failed")
