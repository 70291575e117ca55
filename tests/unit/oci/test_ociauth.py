"""kfn.ociauth: the pure rules of signing in to a registry, by tables."""

from __future__ import annotations

import base64
import json

import pytest

from kfn import ociauth

# Challenges


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://auth.example/token",service="registry.example",'
            'scope="repository:fn/a/app:pull,push"',
            [
                (
                    "bearer",
                    {
                        "realm": "https://auth.example/token",
                        "service": "registry.example",
                        "scope": "repository:fn/a/app:pull,push",
                    },
                )
            ],
        ),
        (
            'Bearer realm="https://r/token",service="r",'
            'scope="repository:a:pull,push repository:b:pull",error="insufficient_scope"',
            [
                (
                    "bearer",
                    {
                        "realm": "https://r/token",
                        "service": "r",
                        "scope": "repository:a:pull,push repository:b:pull",
                        "error": "insufficient_scope",
                    },
                )
            ],
        ),
        ('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})]),
        (
            'Bearer realm="https://r/t", Basic realm="fallback, with a comma"',
            [("bearer", {"realm": "https://r/t"}), ("basic", {"realm": "fallback, with a comma"})],
        ),
        (
            'Bearer realm = "https://r/t" , service=unquoted , scope="a \\"quoted\\" b"',
            [("bearer", {"realm": "https://r/t", "service": "unquoted", "scope": 'a "quoted" b'})],
        ),
        ('BEARER REALM="https://r/t"', [("bearer", {"realm": "https://r/t"})]),
        ("", []),
        ('Bearer realm="unterminated', [("bearer", {"realm": "unterminated"})]),
    ],
)
def test_challenges_parse_with_quoted_commas_escapes_and_several_schemes(
    header: str, expected: list[tuple[str, dict[str, str]]]
) -> None:
    parsed = ociauth.parse_challenges(header)
    assert [(c.scheme, dict(c.params)) for c in parsed] == expected


def test_a_bearer_challenge_lists_its_space_separated_scopes() -> None:
    (challenge,) = ociauth.parse_challenges(
        'Bearer realm="r",scope="repository:fn/a/app:pull,push repository:kfn/base:pull"'
    )
    assert challenge.scopes == ("repository:fn/a/app:pull,push", "repository:kfn/base:pull")


def test_bearer_with_a_realm_is_answered_before_basic_and_neither_means_none() -> None:
    both = ociauth.parse_challenges('Basic realm="x", Bearer realm="https://r/t"')
    picked = ociauth.pick_challenge(both)
    assert picked is not None
    assert picked.scheme == "bearer"
    no_realm = ociauth.parse_challenges('Bearer service="x", Basic realm="y"')
    picked = ociauth.pick_challenge(no_realm)
    assert picked is not None
    assert picked.scheme == "basic"
    assert (
        ociauth.pick_challenge(ociauth.parse_challenges('Negotiate abc, Digest realm="d"')) is None
    )


# Docker config documents


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "key",
    [
        "registry.example:5000",
        "https://registry.example:5000",
        "https://registry.example:5000/",
        "registry.example:5000/v2/",
        "https://registry.example:5000/v1/",
        "http://registry.example:5000/v2",
    ],
)
def test_a_docker_config_entry_is_found_under_every_form_docker_writes(key: str) -> None:
    doc = json.dumps({"auths": {key: {"auth": _auth("robot", "s3:cr:et")}}})
    found = ociauth.Credentials.from_docker_config(doc, "registry.example:5000", "Secret a/b")
    assert found == ociauth.Credentials("robot", "s3:cr:et", "Secret a/b")


def test_a_docker_config_matches_the_host_exactly() -> None:
    doc = json.dumps(
        {
            "auths": {
                "registry.example": {"auth": _auth("no-port", "x")},
                "registry.example:5000.evil": {"auth": _auth("evil", "x")},
                "registry.example:5000": {"username": "right", "password": "p"},
            }
        }
    )
    found = ociauth.Credentials.from_docker_config(doc, "registry.example:5000", "s")
    assert found is not None
    assert found.username == "right"
    assert ociauth.Credentials.from_docker_config(doc, "other.example", "s") is None


def test_docker_hub_credentials_stored_by_docker_login_serve_its_registry_host() -> None:
    doc = json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": _auth("me", "pw")}}})
    found = ociauth.Credentials.from_docker_config(doc, "registry-1.docker.io", "s")
    assert found is not None
    assert found.username == "me"


def test_a_config_without_auths_holds_no_credentials() -> None:
    assert ociauth.Credentials.from_docker_config(b'{"credsStore": "x"}', "r:1", "s") is None


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("not json", "Secret ns/reg is not a Docker config JSON document"),
        ("[]", "not an object"),
        ('{"auths": []}', "auths must be an object"),
        ('{"auths": {"r:1": "x"}}', "the entry for r:1 must be an object"),
        ('{"auths": {"r:1": {"auth": "!!!"}}}', "is not base64 of user:password"),
        (
            '{"auths": {"r:1": {"auth": "' + base64.b64encode(b"nocolon").decode() + '"}}}',
            "is not base64",
        ),
        ('{"auths": {"r:1": {"identitytoken": "t"}}}', "identity token"),
        ('{"auths": {"r:1": {}}}', "neither auth nor username and password"),
    ],
)
def test_a_malformed_docker_config_is_refused_naming_its_source(doc: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        ociauth.Credentials.from_docker_config(doc, "r:1", "Secret ns/reg")
    assert "Secret ns/reg" in str(err.value)


def test_a_written_docker_config_reads_back_and_passwords_stay_out_of_repr() -> None:
    data = ociauth.docker_config("10.0.0.1:5000", "kfn+a", "v1.1.sig")
    found = ociauth.Credentials.from_docker_config(data, "10.0.0.1:5000", "Secret a/kfn-registry")
    assert found == ociauth.Credentials("kfn+a", "v1.1.sig", "Secret a/kfn-registry")
    assert "v1.1.sig" not in repr(found)
    assert found.basic() == "Basic " + _auth("kfn+a", "v1.1.sig")


# Scopes a request needs


@pytest.mark.parametrize(
    ("method", "path", "scopes", "access"),
    [
        (
            "HEAD",
            "/v2/fn/a/app/blobs/sha256:1",
            ("repository:fn/a/app:pull",),
            "pull from fn/a/app",
        ),
        ("GET", "/v2/kfn/base/manifests/1", ("repository:kfn/base:pull",), "pull from kfn/base"),
        (
            "POST",
            "/v2/fn/a/app/blobs/uploads/",
            ("repository:fn/a/app:pull,push",),
            "push to fn/a/app",
        ),
        (
            "PUT",
            "/v2/x/blobs/y/blobs/uploads/u?digest=sha256:1",
            ("repository:x/blobs/y:pull,push",),
            "push to x/blobs/y",
        ),
        (
            "POST",
            "/v2/fn/a/app/blobs/uploads/?mount=sha256%3A1&from=kfn%2Fbase",
            ("repository:fn/a/app:pull,push", "repository:kfn/base:pull"),
            "push to fn/a/app (mounting from kfn/base)",
        ),
        ("DELETE", "/v2/a/manifests/sha256:1", ("repository:a:delete",), "delete in a"),
        ("GET", "/v2/_catalog", ("registry:catalog:*",), "access to the catalog"),
        ("GET", "/v2/", (), "access to /v2/"),
    ],
)
def test_the_scopes_and_description_of_a_request_follow_its_method_and_path(
    method: str, path: str, scopes: tuple[str, ...], access: str
) -> None:
    assert ociauth.request_scopes(method, path) == scopes
    assert ociauth.describe_access(method, path) == access


def test_scopes_are_cached_by_one_spelling_whatever_the_order_of_actions() -> None:
    a = ociauth.scope_key("r", "s", ["repository:a:push,pull", "repository:b:pull"])
    b = ociauth.scope_key("r", "s", ["repository:b:pull", "repository:a:pull,push"])
    assert a == b
    assert a != ociauth.scope_key("r", "other", ["repository:a:pull,push", "repository:b:pull"])


# Answers and messages


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            401,
            b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[]}]}',
            "HTTP 401 UNAUTHORIZED: authentication required",
        ),
        (
            403,
            b'{"errors":[{"code":"DENIED",'
            b'"message":"requested access to the resource is denied"}]}',
            "HTTP 403 DENIED: requested access to the resource is denied",
        ),
        (
            401,
            b'{"details":"incorrect username or password"}',
            "HTTP 401 incorrect username or password",
        ),
        (500, b"<html>\n  oops\n</html>", "HTTP 500 <html> oops </html>"),
        (401, b"", "HTTP 401"),
    ],
)
def test_an_answer_is_summarised_in_one_line(status: int, body: bytes, expected: str) -> None:
    assert ociauth.summarise_answer(status, body) == expected


def test_a_long_answer_is_trimmed_and_an_empty_one_says_its_challenge_error() -> None:
    long = ociauth.summarise_answer(400, b"x" * 1000)
    assert len(long) == ociauth.ANSWER_LIMIT
    assert long.endswith("…")
    assert (
        ociauth.summarise_answer(401, b"", "insufficient_scope") == "HTTP 401 (insufficient_scope)"
    )


def test_refusal_messages_name_the_registry_the_credentials_and_the_answer() -> None:
    creds = ociauth.Credentials("kfn+ns", "pw", "Secret ns/kfn-registry")
    refused = ociauth.refusal_message(
        "10.244.0.1:5000",
        "refused",
        "HTTP 401 UNAUTHORIZED: authentication required",
        credentials=creds,
    )
    assert refused == (
        "registry 10.244.0.1:5000 refused the credentials of Secret ns/kfn-registry: "
        "HTTP 401 UNAUTHORIZED: authentication required"
    )
    denied = ociauth.refusal_message(
        "10.244.0.1:5000",
        "denied",
        "HTTP 403 DENIED: requested access to the resource is denied",
        credentials=creds,
        access="push to fn/b/x",
    )
    assert denied == (
        "registry 10.244.0.1:5000 denied push to fn/b/x with the credentials of "
        "Secret ns/kfn-registry: HTTP 403 DENIED: requested access to the resource is denied"
    )
    anonymous = ociauth.refusal_message(
        "r:1", "denied", "HTTP 401", credentials=None, access="pull from fn/a/x"
    )
    assert anonymous == "registry r:1 denied pull from fn/a/x without credentials: HTTP 401"
    realm = "https://t/token"
    via = ociauth.refusal_message(
        "r:1", "refused", "HTTP 401", credentials=None, token_service=realm
    )
    assert via == (
        f"registry r:1 refused access without credentials (token service {realm}): HTTP 401"
    )


# Token lifetimes


def test_a_token_is_used_until_a_margin_before_it_expires() -> None:
    assert ociauth.token_until(300, now=1000.0) == 1000.0 + 300 - ociauth.TOKEN_MARGIN


def test_a_short_lived_token_keeps_half_its_life() -> None:
    assert ociauth.token_until(4, now=0.0) == 2.0


@pytest.mark.parametrize(
    ("expires_in", "seconds"),
    [(300, 300.0), (None, 60.0), ("300", 60.0), (0, 60.0), (-5, 60.0), (True, 60.0), (1.5, 1.5)],
)
def test_expires_in_defaults_to_a_minute_unless_it_is_a_positive_number(
    expires_in: object, seconds: float
) -> None:
    assert ociauth.token_seconds(expires_in) == seconds
