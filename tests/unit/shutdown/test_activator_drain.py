"""Stopping the activator never cuts a request it accepted (Knative's TestDestroyPodInflight).

The real activator runs as its own process (uvloop, as deployed) in front of the real
Python runtime, both on loopback. Requests are started, the activator gets SIGTERM while
they are in flight (as the kubelet sends it after the preStop pause), and the test reads
what each client gets and when the process exits. The scale is shortened: handlers of
3 s stand for the 20 s of the cluster test (``tests/cluster/test_activator_rollout.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import sys
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.unit.abuse.conftest import SOURCE, free_port, wait_listening
from tests.unit.activator.http import Client, Response, build_request
from tests.unit.runtimes import conftest as runtimes

HANDLER_MS = 3000
#: Requests running in the pod when the signal comes, and requests queued behind them in
#: the activator (the function's concurrency is full): both were accepted, both are served.
RUNNING = 5
QUEUED = 5
INVOKE = "/_kfn/functions/default/slow/invoke"


@pytest_asyncio.fixture
async def runtime(tmp_path: pathlib.Path) -> AsyncIterator[runtimes.RunningRuntime]:
    started = runtimes.start(
        "python",
        runtimes.make_task_root("python", tmp_path),
        "app.slow_async",
        KFN_CONCURRENCY=str(RUNNING),
        KFN_TIMEOUT_MS="10000",
    )
    yield started
    started.stop()


@pytest_asyncio.fixture
async def activator(
    tmp_path: pathlib.Path, runtime: runtimes.RunningRuntime
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """``python -m kfn.activator`` in front of the runtime; killed at teardown if still up."""
    config = tmp_path / "activator.json"
    config.write_text(
        json.dumps(
            {
                "functions": [
                    {
                        "namespace": "default",
                        "name": "slow",
                        "concurrency": RUNNING,
                        "timeout_ms": 10_000,
                        "endpoints": [f"127.0.0.1:{runtime.port}"],
                    }
                ],
                "routes": [],
            }
        )
    )
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kfn.activator",
        f"--config={config}",
        f"--port={port}",
        f"--metrics-port={free_port()}",
        # The chart's rule: the longest timeout (10 s) + the head timeout (10 s) + 5 s.
        "--drain-timeout=25",
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(SOURCE)},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await wait_listening(proc, port)
    yield proc, port
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


def _wait_for_starts(runtime: runtimes.RunningRuntime, count: int) -> None:
    """Until the runtime has logged ``count`` invocations (its output is read by a thread)."""
    deadline = time.monotonic() + 5
    while runtime.output().count("START RequestId") < count:
        assert time.monotonic() < deadline, runtime.output()
        time.sleep(0.02)


async def _invoke(client: Client, ms: int) -> tuple[Response, float]:
    """A slow invocation on ``client``: its response and when it arrived."""
    response = await client.request("POST", INVOKE, json.dumps({"ms": ms}).encode())
    return response, time.monotonic()


async def _new_connection_after_drain(port: int) -> str:
    """What a client opening a connection now gets: ``refused`` or the status it is answered."""
    try:
        client = await Client.connect(port)
    except OSError:
        return "refused"
    try:
        async with asyncio.timeout(5):
            response = await client.request("POST", INVOKE, b'{"ms": 0}')
        return str(response.status)
    except ConnectionError:
        return "closed unanswered"
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_sigterm_mid_flight_serves_every_accepted_request_then_exits_at_once(
    runtime: runtimes.RunningRuntime, activator: tuple[asyncio.subprocess.Process, int]
) -> None:
    proc, port = activator
    # A keep-alive connection that is idle when the signal comes.
    idle = await Client.connect(port)
    warm, _ = await _invoke(idle, 0)
    assert warm.status == 200
    clients = [await Client.connect(port) for _ in range(RUNNING + QUEUED)]
    calls = [asyncio.ensure_future(_invoke(c, HANDLER_MS)) for c in clients]
    # Signal once the pod runs its share and the rest wait in the activator's queue.
    await asyncio.to_thread(_wait_for_starts, runtime, 1 + RUNNING)
    await asyncio.sleep(0.5)  # mid-flight: the running handlers have 2.5 s to go
    assert not any(call.done() for call in calls)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)

    # The idle connection is closed at once; a new connection is refused, never cut.
    assert await idle.closed()
    idle_closed = time.monotonic() - signalled
    await asyncio.sleep(0.2)
    assert await _new_connection_after_drain(port) == "refused"

    results = await asyncio.gather(*calls)
    last_answer = max(at for _, at in results)
    async with asyncio.timeout(10):
        code = await proc.wait()
    exited = time.monotonic()

    statuses = [response.status for response, _ in results]
    assert statuses == [200] * (RUNNING + QUEUED)
    assert all(r.json() == {"slept": HANDLER_MS} for r, _ in results)
    # Each response tells its client that the connection ends with it.
    assert all(r.headers.get("connection") == "close" for r, _ in results)
    for client in clients:
        assert await client.closed()
    # The queued half ran after the first half, on the draining activator.
    queued_done = sorted(at - signalled for _, at in results)[RUNNING:]
    assert min(queued_done) > HANDLER_MS / 1000
    assert runtime.output().count("START RequestId") == 1 + RUNNING + QUEUED
    assert code == 0
    after_last = exited - last_answer
    print(
        f"\nidle connection closed {idle_closed * 1000:.0f} ms after SIGTERM; "
        f"last answer {(last_answer - signalled):.2f} s after SIGTERM; "
        f"process exited {after_last * 1000:.0f} ms after the last answer"
    )
    assert idle_closed < 1.0
    assert after_last < 1.0


@pytest.mark.asyncio
async def test_a_request_pipelined_behind_one_in_flight_at_sigterm_is_left_for_the_client_to_resend(
    activator: tuple[asyncio.subprocess.Process, int],
) -> None:
    proc, port = activator
    client = await Client.connect(port)
    first = build_request("POST", INVOKE, json.dumps({"ms": 1000}).encode())
    second = build_request("POST", INVOKE, json.dumps({"ms": 0}).encode())
    await client.send(first + second)
    await asyncio.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    response = await client.read_response()
    assert response.status == 200
    assert response.headers.get("connection") == "close"
    # The second request got no part of an answer: the connection ends after the first,
    # which said so, and an HTTP client sends an unanswered pipelined request again.
    assert await client.closed()
    async with asyncio.timeout(10):
        assert await proc.wait() == 0
