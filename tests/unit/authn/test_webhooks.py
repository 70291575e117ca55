"""kfn.authn.webhooks: the tokens stores sign notifications with, derived and checked."""

from __future__ import annotations

import base64

import pytest

from kfn.authn import webhooks

KEY = b"events-key-of-the-release"
CLUSTER = "the-cluster-token"


def _basic(password: str, user: str = "kfn") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_token_is_derived_from_the_key_and_its_scope_alone() -> None:
    assert webhooks.token(KEY, "media") == webhooks.token(KEY, "media")
    assert len(webhooks.token(KEY, "media")) == 43
    scopes = {
        webhooks.token(KEY, "media"),
        webhooks.token(KEY, "media", "thumbs"),
        webhooks.token(KEY, "media", "audit"),
        webhooks.token(KEY, "mediathumbs"),
        webhooks.token(KEY, "other"),
        webhooks.token(b"another key", "media"),
    }
    assert len(scopes) == 6


def test_a_token_needs_no_escaping_in_a_urls_user_information() -> None:
    for namespace in ("a", "media", "team-b", "x" * 63):
        token = webhooks.token(KEY, namespace)
        assert token.replace("-", "").replace("_", "").isalnum(), token


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        (_basic("abc"), "abc"),
        (_basic("abc", user="anyone"), "abc"),
        (_basic("a:b:c"), "a:b:c"),
        (None, None),
        ("", None),
        ("Bearer", None),
        (_basic(""), None),
        ("Basic !!!", None),
        ("Digest abc", None),
    ],
)
def test_a_token_is_taken_from_a_bearer_header_or_a_basic_password(
    header: str | None, token: str | None
) -> None:
    assert webhooks.presented(header) == token


def _check(header: str | None, namespace: str = "", trigger: str = "") -> int:
    refusal = webhooks.check(
        header, key=KEY, cluster_token=CLUSTER, namespace=namespace, trigger=trigger
    )
    return 200 if refusal is None else refusal.status


NS = webhooks.token(KEY, "media")
THUMBS = webhooks.token(KEY, "media", "thumbs")


@pytest.mark.parametrize(
    ("header", "path", "status"),
    [
        # The namespace's token: its path and every Trigger's in it.
        (f"Bearer {NS}", ("media", ""), 200),
        (f"Bearer {NS}", ("media", "thumbs"), 200),
        (_basic(NS), ("media", "thumbs"), 200),
        (f"Bearer {NS}", ("other", ""), 403),
        (f"Bearer {NS}", ("", ""), 403),
        # A Trigger's token: that Trigger's path only.
        (f"Bearer {THUMBS}", ("media", "thumbs"), 200),
        (f"Bearer {THUMBS}", ("media", "audit"), 403),
        (f"Bearer {THUMBS}", ("media", ""), 403),
        # The cluster's token: every path.
        (f"Bearer {CLUSTER}", ("", ""), 200),
        (f"Bearer {CLUSTER}", ("media", "thumbs"), 200),
        # Nothing, or something else.
        (None, ("media", ""), 401),
        (None, ("", ""), 401),
        (f"Bearer {NS[:-1]}", ("media", ""), 403),
    ],
)
def test_a_path_takes_its_namespaces_its_triggers_and_the_clusters_token_only(
    header: str | None, path: tuple[str, str], status: int
) -> None:
    assert _check(header, *path) == status


def test_without_a_cluster_token_the_cluster_path_takes_nothing() -> None:
    refusal = webhooks.check(f"Bearer {NS}", key=KEY, cluster_token="", namespace="")
    assert refusal is not None
    assert refusal.status == 403
    assert webhooks.check("Bearer ", key=KEY, cluster_token="") is not None


def test_a_refusal_says_what_to_send_and_where_the_token_is() -> None:
    unsigned = webhooks.check(None, key=KEY, cluster_token=CLUSTER, namespace="media")
    assert unsigned is not None
    assert (unsigned.status, unsigned.why) == (401, "unsigned")
    assert "Authorization: Bearer <token>" in unsigned.message
    assert "http://kfn:<token>@" in unsigned.message
    assert "Secret kfn-bucket-events in namespace media" in unsigned.message
    wrong = webhooks.check("Bearer sent-secret", key=KEY, cluster_token=CLUSTER,
                           namespace="media", trigger="thumbs")  # fmt: skip
    assert wrong is not None
    assert (wrong.status, wrong.why) == (403, "wrong")
    assert "/events/media/thumbs" in wrong.message
    assert "sent-secret" not in wrong.message


def test_a_signed_url_carries_the_token_as_its_password() -> None:
    url = webhooks.signed_url("http://kfn-bucket.kfn-system.svc:80/", "/events/media", "t0k")
    assert url == "http://kfn:t0k@kfn-bucket.kfn-system.svc:80/events/media"
