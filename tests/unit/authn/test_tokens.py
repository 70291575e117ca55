"""kfn.authn.tokens: bearer headers, the API server's reviews and how long they are kept."""

from __future__ import annotations

import base64
import json

import pytest

from kfn.authn import tokens


def _jwt(claims: dict[str, object]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln"


# --- the header --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [(b"Bearer abc.def.ghi", "abc.def.ghi"), (b"bearer   abc", "abc"), (b"  Bearer abc  ", "abc")],
)
def test_a_bearer_header_gives_its_token(header: bytes, token: str) -> None:
    assert tokens.bearer(header) == token


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"", "no bearer token"),
        (b"Bearer ", "no bearer token"),
        (b"Basic YWxpY2U6cHc=", "no bearer token"),
        (b"Bearer " + b"x" * (tokens.MAX_TOKEN + 1), "longer than 8192 bytes"),
        ("Bearer é".encode(), "not ASCII"),
    ],
)
def test_a_header_without_a_usable_bearer_token_says_why(header: bytes, reason: str) -> None:
    unreadable = tokens.bearer(header)
    assert isinstance(unreadable, tokens.Unreadable)
    assert reason in unreadable.reason


def test_a_service_accounts_user_is_named_as_the_api_server_names_it() -> None:
    assert tokens.service_account("kfn-system", "kfn-activator") == (
        "system:serviceaccount:kfn-system:kfn-activator"
    )


# --- the API server's answers ------------------------------------------------------------------


def test_a_token_review_becomes_an_identity_expiring_with_the_token() -> None:
    status = {
        "authenticated": True,
        "user": {
            "username": "system:serviceaccount:team-b:alice",
            "uid": "0b5f",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:team-b"],
            "extra": {"authentication.kubernetes.io/pod-name": ["p"]},
        },
        "audiences": ["kfn"],
    }
    identity = tokens.identity_of(status, _jwt({"exp": 2_000_060}), wall=2_000_000, loop=50)
    assert identity == tokens.Identity(
        username="system:serviceaccount:team-b:alice",
        uid="0b5f",
        groups=("system:serviceaccounts", "system:serviceaccounts:team-b"),
        extra=(("authentication.kubernetes.io/pod-name", ("p",)),),
        expires=110,
    )


def test_a_token_review_that_did_not_authenticate_keeps_the_api_servers_reason() -> None:
    status = {"authenticated": False, "error": 'token audiences ["api"] is invalid'}
    assert tokens.identity_of(status, "t", wall=0, loop=0) == tokens.Invalid(
        'token audiences ["api"] is invalid'
    )


def test_a_review_that_names_no_user_is_not_an_identity() -> None:
    assert tokens.identity_of({"authenticated": True, "user": {}}, "t", wall=0, loop=0) == (
        tokens.Invalid("the review named no user")
    )


@pytest.mark.parametrize("token", ["opaque", "a.b", "a.!!!.c", _jwt({"sub": "x"})])
def test_a_token_without_a_readable_expiry_has_none(token: str) -> None:
    assert tokens.jwt_expiry(token) is None


# --- how long a review is kept -----------------------------------------------------------------


def test_a_review_is_kept_its_ttl_but_never_past_the_tokens_expiry() -> None:
    assert tokens.until(tokens.Identity("u"), now=100, ttl=60) == 160
    assert tokens.until(tokens.Identity("u", expires=130), now=100, ttl=60) == 130
    assert tokens.until(tokens.Identity("u", expires=500), now=100, ttl=60) == 160
    assert tokens.until(tokens.Invalid("no"), now=100, ttl=60) == 160
