"""kfn.registry_auth.tokens: one token request answered, with the time passed in."""

from __future__ import annotations

import base64
import datetime
import json
import urllib.parse
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from kfn.registry_auth import jwt, policy, tokens

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)
KEY = b"r" * 32
ADMIN_PASSWORD = "admin-pw"
SETTINGS = tokens.Settings(
    issuer="kfn-token-service",
    service="kfn-registry",
    signing_key=jwt.SigningKey(ec.generate_private_key(ec.SECP256R1())),
    robot_key=KEY,
    admin_password=ADMIN_PASSWORD,
    policy=policy.Policy(("kfn/",)),
    ttl=datetime.timedelta(minutes=5),
)


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _query(*scopes: str, service: str = "kfn-registry") -> str:
    return urllib.parse.urlencode([("service", service), *(("scope", s) for s in scopes)])


def _claims(answer: tokens.Answer) -> dict[str, Any]:
    payload = answer.body["token"].split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_a_robot_gets_a_token_for_its_namespace_only() -> None:
    robot = policy.issue_robot(KEY, "a", NOW + datetime.timedelta(hours=1))
    answer = tokens.answer(
        SETTINGS,
        _query("repository:fn/a/app:pull,push", "repository:fn/b/app:pull"),
        _basic(robot.username, robot.password),
        NOW,
    )
    assert answer.status == 200
    assert answer.body["token"] == answer.body["access_token"]
    assert answer.body["expires_in"] == 300
    assert answer.body["issued_at"] == "2026-06-01T12:00:00Z"
    claims = _claims(answer)
    assert claims["sub"] == "kfn+a"
    assert claims["aud"] == "kfn-registry"
    assert claims["access"] == [
        {"type": "repository", "name": "fn/a/app", "actions": ["pull", "push"]}
    ]
    assert "requested=['repository:fn/a/app:pull,push', 'repository:fn/b/app:pull']" in answer.log
    assert "granted=['repository:fn/a/app:pull,push']" in answer.log
    assert robot.password not in answer.log


def test_several_scopes_in_one_parameter_count_as_several() -> None:
    answer = tokens.answer(
        SETTINGS,
        urllib.parse.urlencode({"scope": "repository:kfn/a:pull repository:kfn/b:pull"}),
        None,
        NOW,
    )
    assert [a["name"] for a in _claims(answer)["access"]] == ["kfn/a", "kfn/b"]


def test_an_anonymous_request_gets_a_token_with_only_what_anonymous_may_do() -> None:
    answer = tokens.answer(
        SETTINGS, _query("repository:kfn/base:pull,push", "repository:fn/a/app:pull"), None, NOW
    )
    assert answer.status == 200
    claims = _claims(answer)
    assert claims["sub"] == ""
    assert claims["access"] == [{"type": "repository", "name": "kfn/base", "actions": ["pull"]}]
    assert "token for anonymous" in answer.log


def test_a_wrong_password_is_answered_401_without_a_token() -> None:
    answer = tokens.answer(SETTINGS, _query(), _basic("admin", "guess"), NOW)
    assert answer.status == 401
    assert answer.body == {
        "errors": [{"code": "UNAUTHORIZED", "message": "incorrect username or password"}]
    }
    assert "guess" not in answer.log
    assert "refused admin" in answer.log


def test_an_expired_robot_is_told_so() -> None:
    robot = policy.issue_robot(KEY, "a", NOW - datetime.timedelta(seconds=1))
    answer = tokens.answer(SETTINGS, _query(), _basic(robot.username, robot.password), NOW)
    assert answer.status == 401
    message = answer.body["errors"][0]["message"]
    assert message == "the robot credentials of namespace a expired at 2026-06-01T11:59:59Z"


def test_credentials_that_are_not_basic_are_refused() -> None:
    for header in ("Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()):
        answer = tokens.answer(SETTINGS, _query(), header, NOW)
        assert answer.status == 401, header


def test_a_request_for_another_service_is_refused() -> None:
    answer = tokens.answer(SETTINGS, _query(service="other-registry"), None, NOW)
    assert answer.status == 400
    assert "kfn-registry" in answer.body["errors"][0]["message"]


def test_too_many_scopes_or_parameters_are_refused() -> None:
    scopes = [f"repository:kfn/r{i}:pull" for i in range(tokens.MAX_SCOPES + 1)]
    assert (
        tokens.answer(
            SETTINGS, urllib.parse.urlencode({"scope": " ".join(scopes)}), None, NOW
        ).status
        == 400
    )
    many = "&".join(f"x{i}=1" for i in range(100))
    assert tokens.answer(SETTINGS, many, None, NOW).status == 400


def test_malformed_scopes_are_ignored_and_logged() -> None:
    answer = tokens.answer(SETTINGS, _query("repository:kfn/a:pull", "garbage"), None, NOW)
    assert answer.status == 200
    assert "ignored=['garbage']" in answer.log
    assert len(_claims(answer)["access"]) == 1
