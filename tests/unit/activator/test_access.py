"""Who may invoke: bearer tokens, the review caches and their lifetimes (no I/O)."""

from __future__ import annotations

import asyncio
import json

import pytest

from kfn import expiring, stats
from kfn.activator import access, reviews

FN = stats.FunctionKey("team-a", "resize")
OTHER = stats.FunctionKey("team-a", "mail")
ALICE = access.Identity("system:serviceaccount:team-b:alice", groups=("system:serviceaccounts",))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ApiServer:
    """The API server's answers as a table, counting the reviews asked of it."""

    def __init__(self) -> None:
        self.identities: dict[str, access.Identity | access.Invalid] = {"good": ALICE}
        self.allowed: set[tuple[str, stats.FunctionKey]] = {(ALICE.username, FN)}
        self.token_reviews = 0
        self.access_reviews = 0
        self.failing = False
        self.gate = asyncio.Event()
        self.gate.set()

    async def review_token(self, token: str) -> access.Identity | access.Invalid:
        self.token_reviews += 1
        await self.gate.wait()
        if self.failing:
            raise access.ReviewFailedError("connection refused")
        return self.identities.get(token, access.Invalid("token not recognised"))

    async def review_access(
        self, identity: access.Identity, function: stats.FunctionKey
    ) -> tuple[bool, str]:
        self.access_reviews += 1
        if self.failing:
            raise access.ReviewFailedError("connection refused")
        if (identity.username, function) in self.allowed:
            return True, "RBAC: allowed by RoleBinding invokers/team-a"
        return False, ""


def checks(api: ApiServer, clock: Clock) -> access.Access:
    return access.Access(api.review_token, api.review_access, clock=clock)


def error_of(verdict: access.Verdict) -> tuple[int, str, str]:
    assert verdict.refusal is not None
    body = json.loads(verdict.refusal.body)
    return verdict.refusal.status, body["errorType"], body["errorMessage"]


# --- the header --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (b"Bearer abc.def.ghi", "abc.def.ghi"),
        (b"bearer   abc", "abc"),
        (b"  Bearer abc  ", "abc"),
    ],
)
def test_a_bearer_header_gives_its_token(header: bytes, token: str) -> None:
    assert access.bearer(header) == token


@pytest.mark.parametrize("header", [b"", b"Bearer", b"Bearer ", b"Basic YWxpY2U6cHc=", b"abc"])
def test_a_request_without_a_bearer_token_is_told_what_to_send(header: bytes) -> None:
    verdict = access.bearer(header)
    assert isinstance(verdict, access.Verdict)
    status, kind, message = error_of(verdict)
    assert (status, kind) == (401, "UnrecognizedClientException")
    assert "Authorization: Bearer" in message
    assert "--audience kfn" in message
    assert verdict.refusal is not None
    assert b"WWW-Authenticate: Bearer" in verdict.refusal.extra


def test_a_token_longer_than_the_bound_is_refused_unread() -> None:
    verdict = access.bearer(b"Bearer " + b"x" * (access.MAX_TOKEN + 1))
    assert isinstance(verdict, access.Verdict)
    assert error_of(verdict)[0] == 401


# --- deciding ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_allowed_caller_is_reviewed_once_then_served_from_the_cache() -> None:
    api, clock = ApiServer(), Clock()
    decide = checks(api, clock)
    assert decide.cached(b"Bearer good", FN) is None
    assert (await decide.decide(b"Bearer good", FN)).allowed
    assert decide.cached(b"Bearer good", FN) == access.ALLOWED
    assert (api.token_reviews, api.access_reviews) == (1, 1)


@pytest.mark.asyncio
async def test_a_removed_binding_is_seen_once_the_allowed_decision_expires() -> None:
    api, clock = ApiServer(), Clock()
    decide = checks(api, clock)
    assert (await decide.decide(b"Bearer good", FN)).allowed
    api.allowed.clear()
    clock.now += access.ALLOWED_TTL - 0.1
    assert decide.cached(b"Bearer good", FN) == access.ALLOWED
    clock.now += 0.2
    assert decide.cached(b"Bearer good", FN) is None
    verdict = await decide.decide(b"Bearer good", FN)
    assert not verdict.allowed
    # The token's own review is kept longer than the decision: only access was asked again.
    assert (api.token_reviews, api.access_reviews) == (1, 2)


@pytest.mark.asyncio
async def test_a_denied_caller_hears_who_they_are_and_what_to_bind() -> None:
    api, clock = ApiServer(), Clock()
    decide = checks(api, clock)
    status, kind, message = error_of(await decide.decide(b"Bearer good", OTHER))
    assert (status, kind) == (403, "AccessDeniedException")
    assert "system:serviceaccount:team-b:alice" in message
    assert "invoke" in message
    assert "functions.kfn.dev team-a/mail" in message
    assert "kfn-invoker" in message


@pytest.mark.asyncio
async def test_a_new_binding_is_seen_once_the_denied_decision_expires() -> None:
    api, clock = ApiServer(), Clock()
    decide = checks(api, clock)
    assert not (await decide.decide(b"Bearer good", OTHER)).allowed
    api.allowed.add((ALICE.username, OTHER))
    assert decide.cached(b"Bearer good", OTHER) is not None
    clock.now += access.DENIED_TTL
    assert (await decide.decide(b"Bearer good", OTHER)).allowed


@pytest.mark.asyncio
async def test_a_token_the_api_server_rejects_is_401_with_its_reason() -> None:
    api, clock = ApiServer(), Clock()
    status, kind, message = error_of(await checks(api, clock).decide(b"Bearer forged", FN))
    assert (status, kind) == (401, "UnrecognizedClientException")
    assert "token not recognised" in message
    assert api.access_reviews == 0


@pytest.mark.asyncio
async def test_an_unreachable_api_server_is_503_at_once_and_not_remembered() -> None:
    api, clock = ApiServer(), Clock()
    decide = checks(api, clock)
    api.failing = True
    status, kind, message = error_of(await decide.decide(b"Bearer good", FN))
    assert (status, kind) == (503, "ServiceException")
    assert "connection refused" in message
    api.failing = False
    assert decide.cached(b"Bearer good", FN) is None
    assert (await decide.decide(b"Bearer good", FN)).allowed


@pytest.mark.asyncio
async def test_concurrent_callers_with_one_question_share_one_review() -> None:
    api, clock = ApiServer(), Clock()
    decide = checks(api, clock)
    api.gate.clear()
    waiting = [asyncio.create_task(decide.decide(b"Bearer good", FN)) for _ in range(50)]
    await asyncio.sleep(0)
    # The first caller goes away: the others still get their answer.
    waiting[0].cancel()
    api.gate.set()
    verdicts = await asyncio.gather(*waiting[1:])
    assert all(v.allowed for v in verdicts)
    assert (api.token_reviews, api.access_reviews) == (1, 1)


@pytest.mark.asyncio
async def test_a_decision_is_never_kept_past_its_tokens_expiry() -> None:
    api, clock = ApiServer(), Clock()
    api.identities["short"] = access.Identity(ALICE.username, expires=clock.now + 3)
    decide = checks(api, clock)
    assert (await decide.decide(b"Bearer short", FN)).allowed
    clock.now += 3
    assert decide.cached(b"Bearer short", FN) is None


async def settled() -> None:
    """Let the reviews started in the background run to their end."""
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_an_allowed_decision_in_use_is_reviewed_again_before_it_expires_without_waiting() -> (
    None
):
    api, clock = ApiServer(), Clock()
    decide = checks(api, clock)
    recent = access.Recent()
    assert (await decide.decide(b"Bearer good", FN)).allowed
    clock.now += access.ALLOWED_TTL - access.REFRESH_AHEAD - 0.1
    assert decide.cached(b"Bearer good", FN, recent) == access.ALLOWED
    await settled()
    assert api.access_reviews == 1  # not due yet
    clock.now += 0.2
    for _ in range(20):  # many requests while it is due: one review
        assert decide.cached(b"Bearer good", FN, recent) == access.ALLOWED
    await settled()
    assert (api.token_reviews, api.access_reviews) == (1, 2)
    clock.now += access.REFRESH_AHEAD  # past the first decision's expiry: the new one answers
    assert decide.cached(b"Bearer good", FN, recent) == access.ALLOWED
    await settled()
    assert api.access_reviews == 2


@pytest.mark.asyncio
async def test_a_decision_reviewed_again_after_its_binding_went_refuses_from_its_expiry() -> None:
    api, clock = ApiServer(), Clock()
    decide = checks(api, clock)
    assert (await decide.decide(b"Bearer good", FN)).allowed
    api.allowed.clear()
    clock.now += access.ALLOWED_TTL - 1
    assert decide.cached(b"Bearer good", FN) == access.ALLOWED
    await settled()
    refused = decide.cached(b"Bearer good", FN)
    assert refused is not None
    assert error_of(refused)[0] == 403


@pytest.mark.asyncio
async def test_a_review_ahead_that_fails_keeps_the_decision_only_to_its_expiry_and_once() -> None:
    api, clock = ApiServer(), Clock()
    decide = checks(api, clock)
    assert (await decide.decide(b"Bearer good", FN)).allowed
    api.failing = True
    clock.now += access.ALLOWED_TTL - 1
    for _ in range(20):
        assert decide.cached(b"Bearer good", FN) == access.ALLOWED
        await settled()
    assert api.access_reviews == 2  # one attempt, not one per request
    clock.now += 1
    assert decide.cached(b"Bearer good", FN) is None


@pytest.mark.asyncio
async def test_a_decision_ending_with_its_token_is_not_reviewed_ahead() -> None:
    api, clock = ApiServer(), Clock()
    api.identities["short"] = access.Identity(ALICE.username, expires=clock.now + 5)
    decide = checks(api, clock)
    assert (await decide.decide(b"Bearer short", FN)).allowed
    clock.now += 4.5
    assert decide.cached(b"Bearer short", FN) == access.ALLOWED
    await settled()
    assert api.access_reviews == 1


@pytest.mark.asyncio
async def test_a_connection_asking_again_is_answered_from_its_recent_decision() -> None:
    api, clock = ApiServer(), Clock()
    decide = checks(api, clock)
    recent = access.Recent()
    assert (await decide.decide(b"Bearer good", FN)).allowed
    assert decide.cached(b"Bearer good", FN, recent) == access.ALLOWED
    decide.decisions = expiring.Expiring()  # the shared cache no longer knows it
    assert decide.cached(b"Bearer good", FN, recent) == access.ALLOWED
    assert decide.cached(b"Bearer good", FN) is None


@pytest.mark.asyncio
async def test_a_recent_decision_is_revoked_when_the_cached_one_expires() -> None:
    api, clock = ApiServer(), Clock()
    decide = checks(api, clock)
    recent = access.Recent()
    assert (await decide.decide(b"Bearer good", FN)).allowed
    assert decide.cached(b"Bearer good", FN, recent) == access.ALLOWED
    clock.now += access.ALLOWED_TTL
    assert decide.cached(b"Bearer good", FN, recent) is None


@pytest.mark.asyncio
async def test_a_recent_decision_answers_only_the_same_header_and_function() -> None:
    api, clock = ApiServer(), Clock()
    api.identities["other"] = access.Identity("system:serviceaccount:team-c:eve")
    decide = checks(api, clock)
    recent = access.Recent()
    assert (await decide.decide(b"Bearer good", FN)).allowed
    assert decide.cached(b"Bearer good", FN, recent) == access.ALLOWED
    assert decide.cached(b"Bearer other", FN, recent) is None
    assert decide.cached(b"Bearer good", OTHER, recent) is None
    assert decide.cached(b"", FN, recent) == access.Verdict(False, access.NO_TOKEN)
    assert not (await decide.decide(b"Bearer other", FN)).allowed
    refused = decide.cached(b"Bearer other", FN, recent)
    assert refused is not None
    assert not refused.allowed
    clock.now += access.DENIED_TTL
    assert decide.cached(b"Bearer other", FN, recent) is None


# --- the API server's answers ------------------------------------------------------------------


def test_the_access_review_names_the_reviewed_user() -> None:
    identity = access.Identity(
        username="system:serviceaccount:team-b:alice",
        uid="0b5f",
        groups=("system:serviceaccounts", "system:serviceaccounts:team-b"),
        extra=(("authentication.kubernetes.io/pod-name", ("p",)),),
    )
    assert reviews.user_of(identity) == {
        "username": "system:serviceaccount:team-b:alice",
        "uid": "0b5f",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:team-b"],
        "extra": {"authentication.kubernetes.io/pod-name": ["p"]},
    }


def test_the_access_review_asks_for_invoke_on_the_function() -> None:
    assert reviews.attributes(FN) == {
        "namespace": "team-a",
        "verb": "invoke",
        "group": "kfn.dev",
        "resource": "functions",
        "name": "resize",
    }
