"""kfn.registry_auth.policy: robot credentials, scopes and grants, by tables."""

from __future__ import annotations

import datetime

import pytest

from kfn.registry_auth import policy

KEY = b"k" * 32
ADMIN_PASSWORD = "the-admin-password"
NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)
POLICY = policy.Policy(("kfn/", "tests/", "bench/", "charts/"))


def _verify(username: str, password: str, now: datetime.datetime = NOW) -> policy.Subject | None:
    return policy.verify(username, password, robot_key=KEY, admin_password=ADMIN_PASSWORD, now=now)


# Robot credentials


def test_robot_credentials_name_their_namespace_and_verify_until_they_expire() -> None:
    issued = policy.issue_robot(KEY, "tenant-a", NOW + HOUR)
    assert issued.username == "kfn+tenant-a"
    assert issued.password.startswith(f"v1.{int((NOW + HOUR).timestamp())}.")
    assert issued.expires == NOW + HOUR
    assert _verify(issued.username, issued.password) == policy.robot("tenant-a")
    assert _verify(issued.username, issued.password, NOW + HOUR - datetime.timedelta(seconds=1))
    assert _verify(issued.username, issued.password, NOW + HOUR) is None
    assert issued.password not in repr(issued)


def _tampered(password: str) -> list[str]:
    version, expiry, mac = password.split(".")
    flipped = ("A" if mac[0] != "A" else "B") + mac[1:]
    return [
        f"{version}.{int(expiry) + 3600}.{mac}",  # a later expiry under the old signature
        f"{version}.{expiry}.{flipped}",
        f"v2.{expiry}.{mac}",
        f"{version}.{expiry}",
        f"{version}.-{expiry}.{mac}",
        f"{version}.{expiry}.{mac}.extra",
        "",
        "plain password",
        "v1.é.ü",
    ]


def test_a_tampered_robot_password_is_refused() -> None:
    issued = policy.issue_robot(KEY, "a", NOW + HOUR)
    for password in _tampered(issued.password):
        assert _verify(issued.username, password) is None, password


def test_one_namespaces_password_does_not_sign_in_as_another() -> None:
    issued = policy.issue_robot(KEY, "a", NOW + HOUR)
    for username in ("kfn+b", "kfn+a-b", "kfn+A", "kfn+a\n", "a", "admin", "kfn+"):
        assert _verify(username, issued.password) is None, username


def test_robot_credentials_made_with_another_key_are_refused() -> None:
    issued = policy.issue_robot(b"another key, 32 bytes long......", "a", NOW + HOUR)
    assert _verify(issued.username, issued.password) is None
    assert policy.check_robot(KEY, issued.username, issued.password, NOW) == ("invalid", "")


def test_expired_is_said_only_of_a_password_that_is_otherwise_right() -> None:
    issued = policy.issue_robot(KEY, "a", NOW - HOUR)
    assert policy.check_robot(KEY, issued.username, issued.password, NOW) == ("expired", "a")
    forged = issued.password[:-2] + ("xx" if not issued.password.endswith("xx") else "yy")
    assert policy.check_robot(KEY, issued.username, forged, NOW) == ("invalid", "")


@pytest.mark.parametrize("namespace", ["", "A", "a_b", "-a", "a-", "a" * 64, "fn/a", "a.b"])
def test_robots_are_issued_only_for_namespace_names(namespace: str) -> None:
    with pytest.raises(ValueError, match="not a namespace name"):
        policy.issue_robot(KEY, namespace, NOW + HOUR)


def test_times_must_be_timezone_aware_and_the_key_not_empty() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        policy.issue_robot(KEY, "a", datetime.datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="robot key is empty"):
        policy.issue_robot(b"", "a", NOW)


def test_the_admin_signs_in_with_the_configured_password_only() -> None:
    assert _verify("admin", ADMIN_PASSWORD) == policy.ADMIN
    assert _verify("admin", ADMIN_PASSWORD + "x") is None
    assert _verify("admin", "") is None
    assert _verify("Admin", ADMIN_PASSWORD) is None
    no_admin = policy.verify("admin", "", robot_key=KEY, admin_password="", now=NOW)
    assert no_admin is None, "an empty configured password disables the admin"


@pytest.mark.parametrize(
    ("issued_for", "elapsed", "renew"),
    [
        (datetime.timedelta(days=2), datetime.timedelta(hours=0), False),
        (datetime.timedelta(days=2), datetime.timedelta(hours=23, minutes=59), False),
        (datetime.timedelta(days=2), datetime.timedelta(hours=24), True),
        (datetime.timedelta(days=2), datetime.timedelta(days=3), True),
    ],
)
def test_robot_credentials_are_renewed_past_half_their_life(
    issued_for: datetime.timedelta, elapsed: datetime.timedelta, renew: bool
) -> None:
    issued = policy.issue_robot(KEY, "a", NOW + issued_for)
    due = policy.needs_renewal(issued.password, lifetime=issued_for, now=NOW + elapsed)
    assert due is renew


def test_an_unreadable_password_is_renewed_at_once() -> None:
    assert policy.needs_renewal("whatever", lifetime=HOUR, now=NOW)
    assert policy.robot_expiry("whatever") is None


# Scopes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("repository:fn/a/app:pull,push", ("repository", "fn/a/app", ("pull", "push"), "")),
        ("repository:fn/a/app:push,pull,push", ("repository", "fn/a/app", ("pull", "push"), "")),
        ("repository:samalba/my-app:pull", ("repository", "samalba/my-app", ("pull",), "")),
        ("repository(plugin):vieux/sshfs:pull", ("repository", "vieux/sshfs", ("pull",), "plugin")),
        ("repository:localhost:5000/a:pull", ("repository", "localhost:5000/a", ("pull",), "")),
        ("registry:catalog:*", ("registry", "catalog", ("*",), "")),
        ("repository:a:", None),
        ("repository::pull", None),
        ("repository:a", None),
        ("a", None),
        ("repository(:a:pull", None),
        ("repository:a:PULL", None),
        ("repository:a:pull;rm", None),
    ],
)
def test_scopes_parse_per_the_token_spec(
    text: str, expected: tuple[str, str, tuple[str, ...], str] | None
) -> None:
    scope = policy.Scope.parse(text)
    if expected is None:
        assert scope is None
    else:
        assert scope is not None
        assert (scope.type, scope.name, scope.actions, scope.resource_class) == expected
        assert policy.Scope.parse(str(scope)) == scope


def test_a_scope_becomes_an_access_claim_with_its_class_if_any() -> None:
    assert policy.Scope("repository", "a/b", ("pull",)).claim() == {
        "type": "repository",
        "name": "a/b",
        "actions": ["pull"],
    }
    assert policy.Scope("repository", "a", ("pull",), "plugin").claim()["class"] == "plugin"


# Grants

ROBOT_A = policy.robot("a")


def _grant(subject: policy.Subject, *scopes: str) -> list[str]:
    requested = [s for text in scopes if (s := policy.Scope.parse(text)) is not None]
    return [str(s) for s in POLICY.grant(subject, requested)]


@pytest.mark.parametrize(
    ("subject", "scope", "granted"),
    [
        # A namespace's robot: its own functions, and pulls of what is public.
        (ROBOT_A, "repository:fn/a/app:pull,push", ["repository:fn/a/app:pull,push"]),
        (ROBOT_A, "repository:fn/a/app/deep/er:push", ["repository:fn/a/app/deep/er:push"]),
        (ROBOT_A, "repository:fn/a/app:pull,push,delete", ["repository:fn/a/app:pull,push"]),
        (ROBOT_A, "repository:fn/a/app:*", []),
        (ROBOT_A, "repository:kfn/base:pull,push", ["repository:kfn/base:pull"]),
        (ROBOT_A, "repository:charts/kfn:pull", ["repository:charts/kfn:pull"]),
        (ROBOT_A, "repository:private/x:pull", []),
        # ...and nothing of any other namespace, whatever the spelling.
        (ROBOT_A, "repository:fn/b/app:pull,push", []),
        (ROBOT_A, "repository:fn/a-b/app:pull,push", []),
        (ROBOT_A, "repository:fn/ab/app:pull", []),
        (ROBOT_A, "repository:fn/a/../b/app:pull,push", []),
        (ROBOT_A, "repository:fn/a/./app:pull", []),
        (ROBOT_A, "repository:fn//a/app:pull", []),
        (ROBOT_A, "repository:fn/A/app:pull", []),
        (ROBOT_A, "repository:/fn/a/app:pull", []),
        (ROBOT_A, "repository:fn/a/:pull", []),
        (ROBOT_A, "repository:fn/a:pull,push", []),
        (ROBOT_A, "repository:fn:pull,push", []),
        (ROBOT_A, "repository:kfn/../fn/b/app:pull", []),
        (ROBOT_A, "repository:127.0.0.1:5000/fn/a/app:pull", []),
        (policy.robot("a-b"), "repository:fn/a/app:pull", []),
        (ROBOT_A, "registry:catalog:*", []),
        (ROBOT_A, "repository(plugin):fn/a/app:pull", ["repository(plugin):fn/a/app:pull"]),
        (ROBOT_A, "repository(plugin):fn/b/app:pull", []),
        (ROBOT_A, "other:fn/a/app:pull", []),
        # Anonymous: pulls of what is public, nothing else.
        (policy.ANONYMOUS, "repository:kfn/base:pull,push", ["repository:kfn/base:pull"]),
        (policy.ANONYMOUS, "repository:tests/x:pull", ["repository:tests/x:pull"]),
        (policy.ANONYMOUS, "repository:kfnx/base:pull", []),
        (policy.ANONYMOUS, "repository:fn/a/app:pull", []),
        (policy.ANONYMOUS, "registry:catalog:*", []),
        # The admin: what it asks, on valid names.
        (
            policy.ADMIN,
            "repository:fn/b/app:pull,push,delete",
            ["repository:fn/b/app:delete,pull,push"],
        ),
        (policy.ADMIN, "repository:anything/else:*", ["repository:anything/else:*"]),
        (policy.ADMIN, "registry:catalog:*", ["registry:catalog:*"]),
        (policy.ADMIN, "repository:fn/a/../b:pull", []),
    ],
)
def test_grants_by_subject_and_scope(
    subject: policy.Subject, scope: str, granted: list[str]
) -> None:
    assert _grant(subject, scope) == granted


def test_a_mount_request_is_granted_scope_by_scope() -> None:
    granted = _grant(ROBOT_A, "repository:fn/a/app:pull,push", "repository:fn/b/app:pull")
    assert granted == ["repository:fn/a/app:pull,push"]
    granted = _grant(ROBOT_A, "repository:fn/a/app:pull,push", "repository:kfn/base:pull")
    assert granted == ["repository:fn/a/app:pull,push", "repository:kfn/base:pull"]


def test_scopes_naming_the_same_repository_are_merged() -> None:
    granted = _grant(ROBOT_A, "repository:fn/a/app:pull", "repository:fn/a/app:push")
    assert granted == ["repository:fn/a/app:pull,push"]


def test_nothing_is_public_without_a_prefix() -> None:
    closed = policy.Policy()
    scope = policy.Scope("repository", "kfn/base", ("pull",))
    assert closed.grant(policy.ANONYMOUS, [scope]) == []


@pytest.mark.parametrize("prefix", ["fn/", "fn", "/fn/a/", "fn/a/", "", "/", "Kfn/", "a/../fn"])
def test_function_repositories_are_never_public_and_prefixes_must_be_paths(prefix: str) -> None:
    with pytest.raises(ValueError, match="public prefix"):
        policy.Policy((prefix,))


def test_a_public_prefix_matches_whole_path_components() -> None:
    narrow = policy.Policy(("kfn/runtime",))
    pull = policy.Scope("repository", "kfn/runtime-extra", ("pull",))
    assert narrow.grant(policy.ANONYMOUS, [pull]) == []
    pull = policy.Scope("repository", "kfn/runtime/python", ("pull",))
    assert narrow.grant(policy.ANONYMOUS, [pull]) == [pull]
