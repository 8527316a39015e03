"""The pure parts of the registry client's auth: reading WWW-Authenticate, scopes, the token
cache's lifetime rule, and the credential that never prints its password."""

from __future__ import annotations

import pytest

from sidecar.registry.cache import TokenCache
from sidecar.registry.cache import usable_for
from sidecar.registry.challenge import Scope
from sidecar.registry.challenge import merge
from sidecar.registry.challenge import parse_challenges
from sidecar.registry.challenge import parse_scopes
from sidecar.registry.challenge import repository
from sidecar.registry.challenge import scope_text
from sidecar.registry.credential import Credential

# --- WWW-Authenticate ----------------------------------------------------------------------


def test_distribution_bearer_challenge():
    [c] = parse_challenges(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:acc/app:pull,push",error="insufficient_scope"')
    assert c.scheme == "bearer"
    assert c.realm == "https://auth.example.com/token"
    assert c.service == "registry.example.com"
    assert c.error == "insufficient_scope"
    assert c.scopes == (Scope("repository", "acc/app", ("pull", "push")),)


def test_scheme_and_parameter_names_are_case_insensitive_and_spaces_allowed():
    [c] = parse_challenges('BEARER Realm = "http://t/token" , Service=reg')
    assert (c.scheme, c.realm, c.service) == ("bearer", "http://t/token", "reg")


def test_several_scopes_in_one_parameter():
    [c] = parse_challenges('Bearer realm="r",service="s",'
                           'scope="repository:a:pull repository:b/c:pull,push"')
    assert c.scopes == (repository("a", "pull"), repository("b/c", "pull", "push"))


def test_quoted_strings_keep_commas_and_escapes():
    [c] = parse_challenges(r'Bearer realm="http://t/token?a=1,b=2",service="say \"hi\""')
    assert c.realm == "http://t/token?a=1,b=2"
    assert c.service == 'say "hi"'


def test_two_challenges_joined_by_requests_and_as_separate_headers():
    joined = 'Basic realm="basic-realm", Bearer realm="http://t/token",service="s"'
    for value in (joined, ['Basic realm="basic-realm"', 'Bearer realm="http://t/token",service="s"']):
        basic, bearer = parse_challenges(value)
        assert (basic.scheme, basic.realm) == ("basic", "basic-realm")
        assert (bearer.scheme, bearer.realm, bearer.service) == ("bearer", "http://t/token", "s")


def test_unquoted_values_and_a_bare_scheme():
    basic, bearer = parse_challenges("Basic, Bearer realm=http://t/token,service=s")
    assert basic.scheme == "basic" and basic.params == ()
    assert (bearer.realm, bearer.service) == ("http://t/token", "s")


@pytest.mark.parametrize("garbage", ["", "   ", ",,,", "=", '"unterminated', "Bearer realm="])
def test_garbage_never_raises(garbage):
    for challenge in parse_challenges(garbage):
        assert challenge.realm in ("", )


# --- scopes --------------------------------------------------------------------------------

def test_scope_names_may_hold_a_port_and_actions_are_sorted():
    assert parse_scopes("repository:host:5000/acc/app:push,pull") == (
        Scope("repository", "host:5000/acc/app", ("pull", "push")),)


def test_merge_unites_actions_per_resource_in_a_stable_order():
    merged = merge([repository("b", "push")], [repository("a", "pull"), repository("b", "pull")])
    assert scope_text(merged) == "repository:a:pull repository:b:pull,push"
    assert merge(merged, merged) == merged


def test_malformed_scopes_are_skipped():
    assert parse_scopes("nonsense repository::pull registry:catalog:*") == (
        Scope("registry", "catalog", ("*",)),)


# --- the token cache -----------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("lifetime, reused", [(300, 270), (60, 54), (2, 1.8), (0, 0)])
def test_a_token_is_reused_until_shortly_before_it_expires(lifetime, reused):
    assert usable_for(lifetime) == pytest.approx(reused)


def test_cache_serves_a_token_until_its_renewal_time_then_forgets_it():
    clock = Clock()
    cache = TokenCache(clock)
    cache.put("pull", "t1", lifetime=60)
    clock.now += 53.9
    assert cache.get("pull") == "t1"
    clock.now += 0.2
    assert cache.get("pull") is None
    assert len(cache) == 0


def test_cache_is_per_key():
    cache = TokenCache(Clock())
    cache.put(("realm", "svc", "repository:a:pull"), "pull-token", 300)
    cache.put(("realm", "svc", "repository:a:delete"), "delete-token", 300)
    assert cache.get(("realm", "svc", "repository:a:pull")) == "pull-token"
    assert cache.get(("realm", "svc", "repository:a:delete")) == "delete-token"
    assert cache.get(("realm", "svc", "registry:catalog:*")) is None


def test_dropping_a_rejected_token_keeps_a_newer_one():
    cache = TokenCache(Clock())
    cache.put("k", "new", 300)
    cache.drop("k", "old")          # someone else already replaced the rejected token
    assert cache.get("k") == "new"
    cache.drop("k", "new")
    assert cache.get("k") is None


def test_cache_is_bounded_and_drops_the_oldest():
    cache = TokenCache(Clock(), capacity=3)
    for n in range(5):
        cache.put(n, f"t{n}", 300)
    assert len(cache) == 3
    assert cache.get(0) is None and cache.get(4) == "t4"


# --- the credential ------------------------------------------------------------------------

def test_credential_never_prints_its_password():
    credential = Credential("sidecar-bot", "hunter2-secret")
    assert "hunter2" not in repr(credential) and "hunter2" not in str(credential)
    assert credential.basic() == "Basic c2lkZWNhci1ib3Q6aHVudGVyMi1zZWNyZXQ="
