"""Who did it: the operator name read from the Authorization header (attribution only)."""

from __future__ import annotations

import base64
import json

import pytest

from sidecar.events.operator import operator_from_authorization


def basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


def b64url(data: bytes) -> str:
    """base64url without padding, as JWTs are written."""
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt(claims, *, header: bytes = b'{"alg":"RS256","typ":"JWT"}') -> str:
    body = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    return f"{b64url(header)}.{b64url(body)}.{b64url(b'signature-not-checked')}"


@pytest.mark.parametrize(("header", "operator"), [
    (basic(b"alice:secret"), "alice"),
    (basic(b"alice:pa:ss:word"), "alice"),  # only the first colon separates
    (basic(b"alice:"), "alice"),
    (basic(b"alice"), "alice"),
    (basic(b":secret"), ""),
    (basic(b"robot$proj+ci:token"), "robot$proj+ci"),
    (basic("j\u00fcrgen:pw".encode()), "j\u00fcrgen"),
    ("basic " + base64.b64encode(b"bob:pw").decode(), "bob"),
    ("BASIC " + base64.b64encode(b"bob:pw").decode(), "bob"),
    ("Basic   " + base64.b64encode(b"bob:pw").decode() + "  ", "bob"),
    ("  Basic " + base64.b64encode(b"bob:pw").decode(), "bob"),
])
def test_basic_auth_user(header, operator):
    assert operator_from_authorization(header) == operator


@pytest.mark.parametrize("header", [
    "Basic !!!not-base64!!!",
    "Basic YWxpY2U6cGF",           # truncated: bad padding
    "Basic YWxp Y2U6cHc=",         # space inside
    "Basic " + base64.b64encode(b"\xff\xfe:pw").decode(),  # not UTF-8
    "Basic " + base64.b64encode(b"caf\xe9:pw").decode(),  # Latin-1, not UTF-8
    "Basic",
    "Basic ",
])
def test_unreadable_basic_auth_is_anonymous(header):
    assert operator_from_authorization(header) == ""


@pytest.mark.parametrize(("token", "operator"), [
    (jwt({"sub": "alice", "iss": "registry-token-issuer"}), "alice"),
    (jwt({"sub": "robot$proj+ci", "access": []}), "robot$proj+ci"),
    # lengths that need 1 and 2 padding characters, written unpadded as JWTs are
    (jwt({"sub": "ab"}), "ab"),
    (jwt({"sub": "abc"}), "abc"),
    (jwt({"sub": "abcd"}), "abcd"),
    # base64url alphabet: '-' and '_' where standard base64 has '+' and '/'
    (jwt({"sub": "\u00ff\u00ff\u00ff>>>???"}), "\u00ff\u00ff\u00ff>>>???"),
    (jwt({"sub": "\u6f22\u5b57"}), "\u6f22\u5b57"),
])
def test_bearer_jwt_subject(token, operator):
    assert "=" not in token
    assert operator_from_authorization(f"Bearer {token}") == operator
    assert operator_from_authorization(f"bearer {token}") == operator


def test_base64url_alphabet_is_exercised():
    assert any(c in jwt({"sub": "\u00ff\u00ff\u00ff>>>???"}) for c in "-_")


@pytest.mark.parametrize("token", [
    jwt({"iss": "x"}),                    # no sub
    jwt({"sub": None}),
    jwt({"sub": 42}),
    jwt({"sub": ["alice"]}),
    jwt({"sub": {"name": "alice"}}),
    jwt(["alice"]),                       # JSON, but not an object
    jwt("alice"),
    jwt(b"not json at all"),
    jwt(b"\xff\xfe\xfd"),                 # not even text
    jwt(b""),
    "only.two",
    "a.b.c.d.e",                          # JWE: five parts
    "opaque-token-without-dots",
    "abc.!!!.def",
    "abc.a.def",                          # one base64 character cannot decode
    "",
])
def test_bearer_without_a_readable_subject_is_anonymous(token):
    assert operator_from_authorization(f"Bearer {token}") == ""


def test_bearer_subject_with_a_lone_surrogate_becomes_replacement_character():
    # JSON may spell "\ud800"; such a string can be neither stored nor sent as UTF-8
    token = jwt(b'{"sub":"a\\ud800b"}')
    operator = operator_from_authorization(f"Bearer {token}")
    assert operator == "a\ufffdb"
    operator.encode("utf-8")


@pytest.mark.parametrize("header", [
    None,
    "",
    "   ",
    "Digest username=\"alice\", realm=\"r\"",
    "Negotiate YWxpY2U6cHc=",
    "Token " + base64.b64encode(b"alice:pw").decode(),
    "AWS4-HMAC-SHA256 Credential=alice/20250101",
    base64.b64encode(b"alice:pw").decode(),   # credentials without a scheme
    "Basicx " + base64.b64encode(b"alice:pw").decode(),
])
def test_other_schemes_and_empty_headers_are_anonymous(header):
    assert operator_from_authorization(header) == ""
