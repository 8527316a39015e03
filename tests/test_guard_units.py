"""The pieces of the admin guard without a server: whose X-Forwarded-For is believed, and the
store-backed login throttle (SQLite; the e2e test runs it across two workers)."""

from __future__ import annotations

import pytest

from sidecar.clientaddr import TrustedProxies
from sidecar.clientaddr import is_loopback
from sidecar.store import db as store_db
from sidecar.store import login_throttle
from sidecar.store.login_throttle import Throttle


def test_forwarded_for_only_from_trusted_peers():
    none = TrustedProxies()
    assert none.client("10.0.0.5", "203.0.113.9") == "10.0.0.5"
    proxies = TrustedProxies(["10.0.0.0/8", "::1/128"])
    assert proxies.client("10.0.0.5", "203.0.113.9") == "203.0.113.9"
    # a client's own made-up entry comes first; each trusted hop appended what it saw
    assert proxies.client("10.0.0.5", "1.2.3.4, 203.0.113.9, 10.1.1.1") == "203.0.113.9"
    assert proxies.client("192.0.2.1", "203.0.113.9") == "192.0.2.1"  # untrusted peer
    assert proxies.client("10.0.0.5", "not-an-address") == "10.0.0.5"
    assert proxies.client("::ffff:10.0.0.5", "203.0.113.9") == "203.0.113.9"
    assert proxies.client("10.0.0.5", "[2001:db8::1]:443") == "2001:db8::1"


def test_loopback():
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("10.0.0.1") and not is_loopback("")


@pytest.fixture
def store(empty_store_url):
    """SQLite and PostgreSQL: the upserts and row locks differ between them."""
    url = empty_store_url
    db = store_db.bind(url)
    db.connect(reuse_if_open=True)
    yield
    db.close()


def test_throttle_counts_failures_and_a_window_ends(store):
    rule = Throttle(failures=3, window=60)
    key = login_throttle.key_of("198.51.100.7", "admin")
    for _ in range(3):
        assert login_throttle.attempt(key, False, rule, now=1000.0) == 0
    assert login_throttle.attempt(key, True, rule, now=1010.0) == pytest.approx(50)
    other = login_throttle.key_of("198.51.100.8", "admin")
    assert login_throttle.attempt(other, True, rule, now=1010.0) == 0
    # the window over: tries again, a success clears the count
    assert login_throttle.attempt(key, False, rule, now=1061.0) == 0
    assert login_throttle.attempt(key, True, rule, now=1062.0) == 0
    assert not login_throttle.known(key)
    assert login_throttle.sweep(5000.0, rule) == 0


def test_key_hides_address_and_user():
    key = login_throttle.key_of("198.51.100.7", "admin")
    assert "198.51.100.7" not in key and "admin" not in key and len(key) == 64
