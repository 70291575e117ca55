"""kfn.authn.reviews: a token reviewed once, kept, shared by concurrent callers, and the API
server asked off the event loop."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Sequence

import pytest

from kfn import kube
from kfn.authn import reviews, tokens
from tests.unit.authn import tokenreviews

ACTIVATOR = tokens.Identity("system:serviceaccount:kfn-system:kfn-activator")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Answers:
    """The API server's reviews as a table, counting what was asked; ``gate`` holds them."""

    def __init__(self) -> None:
        self.table: dict[str, tokens.Identity | tokens.Invalid] = {"good": ACTIVATOR}
        self.asked: list[str] = []
        self.failing = False
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, token: str) -> tokens.Identity | tokens.Invalid:
        self.asked.append(token)
        await self.gate.wait()
        if self.failing:
            raise tokens.ReviewFailedError("connection refused")
        return self.table.get(token, tokens.Invalid("token not recognised"))


@pytest.mark.asyncio
async def test_a_token_is_reviewed_once_then_answered_from_the_cache_for_its_ttl() -> None:
    answers, clock = Answers(), Clock()
    reviewed = reviews.TokenReviews(answers, clock=clock)
    assert reviewed.cached("good") is None
    assert await reviewed.review("good") == ACTIVATOR
    clock.now += tokens.TTL - 0.1
    assert reviewed.cached("good") == ACTIVATOR
    assert await reviewed.review("good") == ACTIVATOR
    assert answers.asked == ["good"]
    clock.now += 0.1
    assert reviewed.cached("good") is None
    await reviewed.review("good")
    assert answers.asked == ["good", "good"]


@pytest.mark.asyncio
async def test_a_token_the_api_server_refused_is_remembered_as_refused() -> None:
    answers, clock = Answers(), Clock()
    reviewed = reviews.TokenReviews(answers, clock=clock)
    assert await reviewed.review("forged") == tokens.Invalid("token not recognised")
    assert reviewed.cached("forged") == tokens.Invalid("token not recognised")
    assert answers.asked == ["forged"]


@pytest.mark.asyncio
async def test_a_review_is_never_kept_past_the_tokens_own_expiry() -> None:
    answers, clock = Answers(), Clock()
    answers.table["short"] = tokens.Identity(ACTIVATOR.username, expires=clock.now + 3)
    reviewed = reviews.TokenReviews(answers, clock=clock)
    await reviewed.review("short")
    clock.now += 2.9
    assert reviewed.cached("short") is not None
    clock.now += 0.1
    assert reviewed.cached("short") is None


@pytest.mark.asyncio
async def test_concurrent_callers_share_one_review_even_when_the_first_goes_away() -> None:
    answers, clock = Answers(), Clock()
    reviewed = reviews.TokenReviews(answers, clock=clock)
    answers.gate.clear()
    waiting = [asyncio.create_task(reviewed.review("good")) for _ in range(50)]
    await asyncio.sleep(0)
    waiting[0].cancel()
    answers.gate.set()
    assert await asyncio.gather(*waiting[1:]) == [ACTIVATOR] * 49
    assert answers.asked == ["good"]


@pytest.mark.asyncio
async def test_a_failed_review_reaches_every_waiting_caller_and_is_not_kept() -> None:
    answers, clock = Answers(), Clock()
    reviewed = reviews.TokenReviews(answers, clock=clock)
    answers.failing = True
    answers.gate.clear()
    waiting = [asyncio.create_task(reviewed.review("good")) for _ in range(3)]
    await asyncio.sleep(0)
    answers.gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, tokens.ReviewFailedError) for r in results)
    assert reviewed.cached("good") is None
    answers.failing = False
    assert await reviewed.review("good") == ACTIVATOR
    assert answers.asked == ["good", "good"]


@pytest.mark.asyncio
async def test_made_up_tokens_past_the_bound_are_refused_without_asking_the_api_server() -> None:
    answers, clock = Answers(), Clock()
    reviewed = reviews.TokenReviews(answers, clock=clock, max_asking=2)
    answers.gate.clear()
    first = [asyncio.create_task(reviewed.review(t)) for t in ("a", "b")]
    await asyncio.sleep(0)
    with pytest.raises(tokens.ReviewFailedError, match="2 tokens are under review already"):
        await reviewed.review("c")
    # A token already under review is still shared, not refused.
    again = asyncio.create_task(reviewed.review("a"))
    answers.gate.set()
    await asyncio.gather(*first, again)
    assert answers.asked == ["a", "b"]


@pytest.mark.asyncio
async def test_the_kept_reviews_are_bounded_least_recently_used_first_out() -> None:
    answers, clock = Answers(), Clock()
    reviewed = reviews.TokenReviews(answers, clock=clock, limit=2)
    for token in ("a", "b", "c"):
        await reviewed.review(token)
    assert reviewed.cached("a") is None
    assert reviewed.cached("c") is not None


# --- asking the API server ---------------------------------------------------------------------


def _jwt(exp: int) -> str:
    payload = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln"


@pytest.mark.asyncio
async def test_the_api_server_is_asked_off_the_loop_and_the_tokens_expiry_moves_clocks() -> None:
    calls: list[tuple[str, tuple[str, ...], float, str]] = []

    def review_status(token: str, audiences: Sequence[str], *, timeout: float) -> dict[str, object]:
        calls.append((token, tuple(audiences), timeout, threading.current_thread().name))
        return {"authenticated": True, "user": {"username": ACTIVATOR.username}}

    api = reviews.ApiServer(
        review_status, ["kfn-stats"], failures=kube.FAILURES,
        loop_clock=lambda: 50.0, wall_clock=lambda: 2_000_000.0,
    )  # fmt: skip
    token = _jwt(2_000_030)
    assert await api(token) == tokens.Identity(ACTIVATOR.username, expires=80.0)
    [(asked, audiences, timeout, thread)] = calls
    assert (asked, audiences, timeout) == (token, ("kfn-stats",), reviews.TIMEOUT)
    assert thread != threading.main_thread().name


@pytest.mark.asyncio
async def test_an_api_server_that_cannot_be_asked_is_a_failed_review_not_a_crash() -> None:
    def unreachable(token: str, audiences: Sequence[str], *, timeout: float) -> dict[str, object]:
        raise ConnectionRefusedError("connection refused")

    api = reviews.ApiServer(unreachable, ["kfn"], failures=kube.FAILURES, loop_clock=lambda: 0.0)
    with pytest.raises(tokens.ReviewFailedError, match="TokenReview: connection refused"):
        await api("t")


@pytest.mark.asyncio
async def test_kubes_token_review_is_read_as_an_identity_or_a_refusal(
    token_reviews: tokenreviews.TokenReviewServer,
) -> None:
    token_reviews.known["good"] = tokenreviews.Known(ACTIVATOR.username, ("kfn-stats",))
    api = reviews.ApiServer(
        kube.review_token, ["kfn-stats"], failures=kube.FAILURES, loop_clock=lambda: 0.0
    )
    assert (await api("good")).username == ACTIVATOR.username  # type: ignore[union-attr]
    assert await api("other") == tokens.Invalid("invalid bearer token")
    token_reviews.refuse = True
    with pytest.raises(tokens.ReviewFailedError, match="403"):
        await api("good")
    assert [token for token, _ in token_reviews.asked] == ["good", "other", "good"]
    assert {audiences for _, audiences in token_reviews.asked} == {("kfn-stats",)}
