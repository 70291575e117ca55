"""The activator's stats carry its ServiceAccount token, read again as the kubelet rotates it,
to an autoscaler that takes stats only from the activators."""

from __future__ import annotations

import asyncio
import os
import pathlib
import socket
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from kfn import stats
from kfn.activator import stats_reporter
from kfn.authn import reviews, tokenfile, tokens
from kfn.autoscaler import callers
from kfn.autoscaler import server as stats_server

from .conftest import until

ACTIVATOR = "system:serviceaccount:kfn-system:kfn-activator"
FN = stats.FunctionKey("team-a", "resize")
MESSAGE = stats.StatMessage("act-1", 0.0, (stats.FunctionStat(FN, 1.0, 1, 0, 3),))


class Autoscaler:
    """An autoscaler endpoint whose API server knows two tokens of the activator's and one
    of someone else's, and records which it was asked to review."""

    def __init__(self) -> None:
        self.received: list[stats.StatMessage] = []
        self.reviewed: list[str] = []
        self.url = ""

    async def review(self, token: str) -> tokens.Identity | tokens.Invalid:
        self.reviewed.append(token)
        users = {"first": ACTIVATOR, "second": ACTIVATOR, "stranger": "system:anonymous"}
        return tokens.Identity(users[token]) if token in users else tokens.Invalid("unknown")

    async def receive(self, message: stats.StatMessage) -> None:
        self.received.append(message)


@pytest_asyncio.fixture
async def autoscaler() -> AsyncIterator[Autoscaler]:
    made = Autoscaler()
    gate = callers.Callers(
        reviews.TokenReviews(made.review, clock=asyncio.get_running_loop().time), [ACTIVATOR]
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = await stats_server.serve(made.receive, "127.0.0.1", port, gate=gate)
    made.url = f"http://127.0.0.1:{port}{stats.STATS_PATH}"
    try:
        yield made
    finally:
        endpoint.close()


def _rotate(path: pathlib.Path, token: str) -> None:
    """Writes a new token as the kubelet does: a new file, a later modification time."""
    path.write_text(token)
    later = time.time() + 5
    os.utime(path, (later, later))


@pytest.mark.asyncio
async def test_the_reporter_sends_its_token_and_reads_it_again_once_the_kubelet_rotated_it(
    autoscaler: Autoscaler, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    now = [0.0]
    sink = stats_reporter.HttpStatsSink(
        autoscaler.url, token=tokenfile.TokenFile(str(path), clock=lambda: now[0])
    )
    await sink.send(MESSAGE)
    _rotate(path, "second")
    await sink.send(MESSAGE)  # the file is not looked at again yet
    now[0] += tokenfile.RECHECK
    await sink.send(MESSAGE)
    assert autoscaler.received == [MESSAGE] * 3
    assert autoscaler.reviewed == ["first", "second"], "each token reviewed once"


@pytest.mark.asyncio
async def test_a_refused_message_fails_with_the_autoscalers_reason(
    autoscaler: Autoscaler, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "token"
    path.write_text("stranger")
    sink = stats_reporter.HttpStatsSink(autoscaler.url, token=tokenfile.TokenFile(str(path)))
    with pytest.raises(OSError, match=r"403 Forbidden.*system:anonymous may not send stats"):
        await sink.send(MESSAGE)
    no_token = stats_reporter.HttpStatsSink(autoscaler.url)
    with pytest.raises(OSError, match=r"401 Unauthorized.*no bearer token"):
        await no_token.send(MESSAGE)
    assert autoscaler.received == []


@pytest.mark.asyncio
async def test_a_token_that_cannot_be_read_fails_that_message_only(
    autoscaler: Autoscaler, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "token"
    sink = stats_reporter.HttpStatsSink(autoscaler.url, token=tokenfile.TokenFile(str(path)))
    reporter = stats_reporter.StatsReporter("act-1", dict, sink)
    reporter.poke(FN)
    await until(lambda: "sending stats failed" in caplog.text)
    assert "No such file" in caplog.text
    path.write_text("first")
    reporter.poke(FN)
    await until(lambda: autoscaler.received)
    assert autoscaler.received[0].poke
