"""Who may send the autoscaler stats: the activators' ServiceAccount token, reviewed by the
API server (a stand-in on loopback behind the real kfn.kube), and nobody else."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from kfn import kube, stats
from kfn.authn import reviews, tokens
from kfn.autoscaler import callers, server
from tests.unit.authn import tokenreviews

from ..activator.conftest import until
from ..activator.http import Client, build_request

FN = stats.FunctionKey("team-a", "resize")
ACTIVATOR = "system:serviceaccount:kfn-system:kfn-activator"
MESSAGE = stats.encode(
    stats.StatMessage("act-1", 0.0, (stats.FunctionStat(FN, 2.0, 2, 1, 5),), poke=True)
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Autoscaler:
    """The stats endpoint as ``python -m kfn.autoscaler`` runs it in a cluster, on loopback."""

    def __init__(
        self, port: int, received: list[stats.StatMessage], clock: Clock, gate: callers.Callers
    ) -> None:
        self.port = port
        self.received = received
        self.clock = clock
        self.gate = gate

    async def post(
        self, authorization: str | None, body: bytes = MESSAGE, path: str = stats.STATS_PATH
    ) -> tuple[int, dict[str, str], dict[str, str]]:
        client = await Client.connect(self.port)
        try:
            headers = {"Authorization": authorization} if authorization is not None else {}
            answer = await client.request("POST", path, body, headers)
        finally:
            await client.close()
        return answer.status, answer.headers, (answer.json() if answer.body else {})


@pytest_asyncio.fixture
async def autoscaler(
    token_reviews: tokenreviews.TokenReviewServer,
) -> AsyncIterator[Autoscaler]:
    token_reviews.known["activator"] = tokenreviews.Known(ACTIVATOR, (stats.AUDIENCE,))
    token_reviews.known["trigger-worker"] = tokenreviews.Known(
        "system:serviceaccount:kfn-system:kfn-cron", (stats.AUDIENCE,)
    )
    token_reviews.known["for-kfn"] = tokenreviews.Known(ACTIVATOR, ("kfn",))
    received: list[stats.StatMessage] = []

    async def receive(message: stats.StatMessage) -> None:
        received.append(message)

    clock = Clock()
    api = reviews.ApiServer(
        kube.review_token, [stats.AUDIENCE], failures=kube.FAILURES, loop_clock=clock
    )
    reviewed = reviews.TokenReviews(api, clock=clock, max_asking=callers.MAX_ASKING)
    gate = callers.Callers(reviewed, [ACTIVATOR])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = await server.serve(receive, "127.0.0.1", port, gate=gate)
    try:
        yield Autoscaler(port, received, clock, gate)
    finally:
        endpoint.close()


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_message_without_a_token_is_refused_401_saying_what_to_send(
    autoscaler: Autoscaler, token_reviews: tokenreviews.TokenReviewServer
) -> None:
    for authorization in (None, "Basic YWxpY2U6cHc=", "Bearer "):
        status, headers, body = await autoscaler.post(authorization)
        assert status == 401
        assert headers["content-type"] == "application/json"
        assert headers["www-authenticate"] == 'Bearer realm="kfn-stats"'
        assert "no bearer token" in body["message"]
        assert "audience 'kfn-stats'" in body["message"]
    assert autoscaler.received == []
    assert token_reviews.asked == [], "nothing to review, the API server is not asked"


@pytest.mark.asyncio
async def test_a_token_the_api_server_does_not_accept_is_refused_401_with_its_reason(
    autoscaler: Autoscaler,
) -> None:
    status, _, body = await autoscaler.post("Bearer forged")
    assert status == 401
    assert "not valid for the audience 'kfn-stats': invalid bearer token" in body["message"]
    assert autoscaler.received == []


@pytest.mark.asyncio
async def test_the_activators_token_made_for_another_audience_is_refused(
    autoscaler: Autoscaler, token_reviews: tokenreviews.TokenReviewServer
) -> None:
    status, _, _ = await autoscaler.post("Bearer for-kfn")
    assert status == 401
    assert token_reviews.asked == [("for-kfn", (stats.AUDIENCE,))]


@pytest.mark.asyncio
async def test_another_service_accounts_valid_token_is_refused_403_naming_it(
    autoscaler: Autoscaler,
) -> None:
    status, _, body = await autoscaler.post("Bearer trigger-worker")
    assert status == 403
    assert body["message"] == (
        "system:serviceaccount:kfn-system:kfn-cron may not send stats: the autoscaler takes "
        f"them only from {ACTIVATOR}"
    )
    assert autoscaler.received == []


@pytest.mark.asyncio
async def test_an_api_server_that_cannot_be_asked_is_503_at_once_and_not_remembered(
    autoscaler: Autoscaler, token_reviews: tokenreviews.TokenReviewServer
) -> None:
    token_reviews.refuse = True
    status, headers, body = await autoscaler.post("Bearer activator")
    assert status == 503
    assert headers["retry-after"] == "1"
    assert "could not check the sender's token" in body["message"]
    token_reviews.refuse = False
    assert (await autoscaler.post("Bearer activator"))[0] == 204
    assert len(token_reviews.asked) == 2


@pytest.mark.asyncio
async def test_a_refused_sender_learns_nothing_of_the_message_it_sent(
    autoscaler: Autoscaler,
) -> None:
    status, _, _ = await autoscaler.post(None, body=b"not a message")
    assert status == 401, "the token is checked before the body is read as a message"


@pytest.mark.asyncio
async def test_refusals_are_logged_at_most_once_a_minute_each(
    autoscaler: Autoscaler, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=server.__name__):
        for _ in range(5):
            await autoscaler.post(None)
    assert len([r for r in caplog.records if "refused stats" in r.getMessage()]) == 1


# --- the activators' messages ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_activators_messages_are_taken_and_its_token_reviewed_once(
    autoscaler: Autoscaler, token_reviews: tokenreviews.TokenReviewServer
) -> None:
    for _ in range(3):
        assert (await autoscaler.post("Bearer activator"))[0] == 204
    assert len(autoscaler.received) == 3
    assert autoscaler.received[0].functions[0].function == FN
    assert token_reviews.asked == [("activator", (stats.AUDIENCE,))]


@pytest.mark.asyncio
async def test_a_taken_sender_still_hears_about_a_malformed_message(
    autoscaler: Autoscaler,
) -> None:
    status, _, body = await autoscaler.post("Bearer activator", body=b'{"v": 9}')
    assert status == 400
    assert "unsupported schema version" in body["message"]


@pytest.mark.asyncio
async def test_concurrent_messages_with_a_new_token_share_one_review(
    autoscaler: Autoscaler, token_reviews: tokenreviews.TokenReviewServer
) -> None:
    token_reviews.hold.clear()
    deciding = 0
    decide = autoscaler.gate.decide

    async def counted(authorization: bytes) -> callers.Verdict:
        nonlocal deciding
        deciding += 1
        return await decide(authorization)

    autoscaler.gate.decide = counted  # type: ignore[method-assign]
    sending = [asyncio.create_task(autoscaler.post("Bearer activator")) for _ in range(10)]
    await until(lambda: deciding == 10)
    token_reviews.hold.set()
    assert [answer[0] for answer in await asyncio.gather(*sending)] == [204] * 10
    assert len(token_reviews.asked) == 1


def _jwt(exp: float) -> str:
    payload = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln"


@pytest.mark.asyncio
async def test_a_token_is_reviewed_again_after_a_minute_and_never_trusted_past_its_expiry(
    autoscaler: Autoscaler, token_reviews: tokenreviews.TokenReviewServer
) -> None:
    assert (await autoscaler.post("Bearer activator"))[0] == 204
    autoscaler.clock.now += tokens.TTL
    assert (await autoscaler.post("Bearer activator"))[0] == 204
    assert len(token_reviews.asked) == 2
    # A token that expires in 5 s (wall clock) is kept 5 s, not a minute.
    short = _jwt(time.time() + 5)
    token_reviews.known[short] = tokenreviews.Known(ACTIVATOR, (stats.AUDIENCE,))
    assert (await autoscaler.post(f"Bearer {short}"))[0] == 204
    autoscaler.clock.now += 4
    assert (await autoscaler.post(f"Bearer {short}"))[0] == 204
    assert len(token_reviews.asked) == 3
    autoscaler.clock.now += 2
    del token_reviews.known[short]  # the API server no longer takes it: it expired
    assert (await autoscaler.post(f"Bearer {short}"))[0] == 401
    assert len(token_reviews.asked) == 4


@pytest.mark.asyncio
async def test_answers_on_one_connection_keep_the_order_of_its_requests(
    autoscaler: Autoscaler, token_reviews: tokenreviews.TokenReviewServer
) -> None:
    token_reviews.hold.clear()
    client = await Client.connect(autoscaler.port)
    try:
        signed = {"Authorization": "Bearer activator"}
        pipelined = b"".join(
            [
                build_request("POST", stats.STATS_PATH, MESSAGE, signed),
                build_request("GET", "/elsewhere"),
                build_request("POST", stats.STATS_PATH, b"{}", signed),
            ]
        )
        await client.send(pipelined)
        await asyncio.sleep(0.1)
        token_reviews.hold.set()
        answers = [(await client.read_response()).status for _ in range(3)]
    finally:
        await client.close()
    assert answers == [204, 404, 400]
    assert len(autoscaler.received) == 1


@pytest.mark.asyncio
async def test_without_a_gate_anyone_may_send_stats() -> None:
    received: list[stats.StatMessage] = []

    async def receive(message: stats.StatMessage) -> None:
        received.append(message)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = await server.serve(receive, "127.0.0.1", port)
    try:
        client = await Client.connect(port)
        answer = await client.request("POST", stats.STATS_PATH, MESSAGE)
        await client.close()
    finally:
        endpoint.close()
    assert answer.status == 204
    assert len(received) == 1


# --- the decision alone ------------------------------------------------------------------------


def test_only_the_named_senders_are_taken() -> None:
    accepted = frozenset({ACTIVATOR})
    assert callers.judge(tokens.Identity(ACTIVATOR), accepted) == callers.ACCEPTED
    assert callers.judge(tokens.Identity("system:anonymous"), accepted).status == 403
    assert callers.judge(tokens.Invalid("expired"), accepted).status == 401


def test_a_gate_that_accepts_nobody_is_refused_at_start() -> None:
    async def never(token: str) -> tokens.Identity:
        raise AssertionError("not asked")

    reviewed = reviews.TokenReviews(never, clock=Clock())
    with pytest.raises(ValueError, match="name the activators' ServiceAccount"):
        callers.Callers(reviewed, [])
