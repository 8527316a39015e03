"""Free loopback ports and waiting for a server to answer."""

from __future__ import annotations

import socket
import ssl
import time
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 15.0, ok=(200, 401), verify: bool = True) -> None:
    """Poll `url` until it answers with a status in `ok`; raise TimeoutError otherwise.
    `verify=False` accepts any certificate (a test's self-signed one)."""
    deadline = time.monotonic() + timeout
    last = None
    context = None
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1, context=context) as response:
                if response.status in ok:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in ok:
                return
            last = exc
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


def poll(fetch, predicate, timeout: float = 20.0, interval: float = 0.1):
    """Call `fetch` until `predicate(value)` holds; return that value, or raise naming the last."""
    deadline = time.monotonic() + timeout
    value = fetch()
    while not predicate(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition never held; last value: {value!r}")
        time.sleep(interval)
        value = fetch()
    return value
