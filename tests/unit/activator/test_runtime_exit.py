"""A function whose process dies mid-request: a function error, counted against retries.

A real runtime (a subprocess on loopback) behind the real activator runs a handler that
kills its own process with SIGKILL, as the kernel's OOM killer would, when its event holds
"poison". A small stand-in for the kubelet restarts the process on the same port before the
next invocation, as a container restart keeps the pod's address.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import pathlib
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from kfn import retry
from kfn.activator import exits, upstream
from kfn.api import trigger as trigger_api
from kfn.triggers import delivery, failure, invoke, onfailure
from kfn.triggers.stream import batching, runner
from tests.unit.runtimes import conftest as runtimes

from .conftest import FN, MakeActivator, until
from .http import Backend, Client

INVOKE_PATH = f"/_kfn/functions/{FN.namespace}/{FN.name}/invoke"


class Kubelet:
    """Keeps one runtime process running on one port, restarting it when it died."""

    def __init__(self, language: str, tmp_path: pathlib.Path) -> None:
        self.language = language
        self.root = runtimes.make_task_root(language, tmp_path)
        self.runtime = runtimes.start(language, self.root, "app.die_on_poison")
        self.runtime.wait_ready()
        self.starts = 1
        self.lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.runtime.port}"

    def ensure_running(self) -> None:
        with self.lock:
            if self.runtime.proc.poll() is None:
                return
            port = str(self.runtime.port)
            self.runtime = runtimes.start(
                self.language, self.root, "app.die_on_poison", KFN_PORT=port
            )
            self.runtime.wait_ready()
            self.starts += 1

    def reap(self, outcome: retry.Outcome) -> None:
        """After a function error, wait for the dead process: the activator may have seen
        its connection end before the process was gone."""
        if outcome.function_error:
            self.runtime.proc.wait(timeout=10)

    def stop(self) -> None:
        self.runtime.stop()


@pytest.fixture(params=runtimes.LANGUAGES)
def kubelet(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Kubelet]:
    started = Kubelet(str(request.param), tmp_path)
    yield started
    started.stop()


@pytest.mark.asyncio
async def test_a_handler_killing_its_process_mid_request_is_answered_as_runtime_exit_error(
    make_activator: MakeActivator, kubelet: Kubelet
) -> None:
    activator = await make_activator(endpoints=frozenset({kubelet.address}))
    client = await Client.connect(activator.ports[0])
    response = await client.request("POST", INVOKE_PATH, b'{"records": ["poison"]}')
    assert response.status == 502
    assert response.headers["kfn-function-error"] == "Unhandled"
    answer = response.json()
    assert answer["errorType"] == "Runtime.ExitError"
    assert answer["errorMessage"].startswith(
        f"RequestId: {response.headers['kfn-request-id']} Error: Runtime exited"
    )
    assert retry.kind_of(response.status, function_error=True) == "function-error"
    await client.close()
    await asyncio.to_thread(kubelet.reap, retry.Outcome(502, function_error=True))
    await asyncio.to_thread(kubelet.ensure_running)
    again = await Client.connect(activator.ports[0])
    healthy = await again.request("POST", INVOKE_PATH, b'{"records": ["fine"]}')
    assert (healthy.status, healthy.json()) == (200, {"handled": 1})
    await again.close()


@pytest.mark.asyncio
async def test_a_process_killed_mid_request_is_answered_with_the_exit_its_pod_reports(
    make_activator: MakeActivator, kubelet: Kubelet
) -> None:
    activator = await make_activator(endpoints=frozenset({kubelet.address}))
    known = activator.ctx.exits = exits.Exits()
    client = await Client.connect(activator.ports[0])
    sent = asyncio.ensure_future(client.request("POST", INVOKE_PATH, b'{"records": ["poison"]}'))
    # The process dies at once; the kubelet reports it, OOM-killed, a little later.
    await until(lambda: bool(known._waiting.get(kubelet.address)))
    known.observe(kubelet.address, 1, exits.Exit("OOMKilled", 137, finished=time.time()))
    response = await sent
    assert response.status == 502
    assert response.headers["kfn-function-error"] == "Unhandled"
    assert response.json()["errorType"] == "Runtime.OutOfMemory"
    assert response.json()["errorMessage"] == (
        f"RequestId: {response.headers['kfn-request-id']} Error: Runtime exited with error: "
        "signal: killed"
    )
    await client.close()


class _Clock:
    """Time that passes only when the runner waits for a backoff."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Cancel(threading.Event):
    """A cancel event whose waits advance the fake clock; it cancels after ``limit`` waits,
    so a batch held for ever (the old classification as throttling) ends the test."""

    def __init__(self, clock: _Clock, limit: int) -> None:
        super().__init__()
        self.clock = clock
        self.limit = limit
        self.waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        if self.waits > self.limit:
            self.set()
        self.clock.now += timeout or 0.0
        return self.is_set()


class _ThroughActivator:
    """A stream source invoking through the activator with the trigger workers' client."""

    def __init__(self, invoker: invoke.Invoker, kubelet: Kubelet) -> None:
        self.invoker = invoker
        self.kubelet = kubelet
        self.outcomes: list[tuple[tuple[int, ...], int, retry.Kind]] = []
        self.given_up: list[tuple[tuple[int, ...], str, int]] = []
        self.delivered_records = 0
        self.committed: list[int] = []

    def invoke(self, records: Sequence[batching.Record[str]], attempt: int) -> retry.Outcome:
        self.kubelet.ensure_running()
        payload = json.dumps({"records": [r.raw for r in records]}).encode()
        outcome = self.invoker.invoke(
            FN.namespace, FN.name, payload, request_id=f"batch-{attempt}", timeout=10
        )
        self.kubelet.reap(outcome)
        self.outcomes.append((tuple(r.position for r in records), outcome.status, outcome.kind))
        return outcome

    def give_up(self, dead: batching.DeadLetter[str], last: retry.Outcome | None) -> bool:
        positions = tuple(r.position for r in dead.records)
        self.given_up.append((positions, dead.condition, dead.invokes))
        return True

    def commit(self, last: batching.Record[str]) -> None:
        self.committed.append(last.position)

    def observe(self, outcome: retry.Outcome, records: int) -> None:
        pass

    def delivered(self, records: int) -> None:
        self.delivered_records += records


@pytest.mark.asyncio
async def test_a_poison_record_that_kills_its_function_is_bisected_out_and_given_up(
    make_activator: MakeActivator, kubelet: Kubelet
) -> None:
    activator = await make_activator(endpoints=frozenset({kubelet.address}), timeout_ms=10000)
    source = _ThroughActivator(invoke.Invoker(f"http://127.0.0.1:{activator.ports[0]}"), kubelet)
    values = ["a", "b", "poison", "c"]
    batch = [batching.Record(10 + i, 1000.0, 1, v) for i, v in enumerate(values)]
    policy = batching.Policy(batch_size=4, max_retries=2, bisect=True)
    clock = _Clock()
    cancel = _Cancel(clock, limit=50)

    finished = await asyncio.to_thread(
        runner.run_batch, batch, policy, source, cancel=cancel, clock=clock
    )

    assert finished
    assert [(positions, status, kind) for positions, status, kind in source.outcomes] == [
        ((10, 11, 12, 13), 502, "function-error"),
        ((10, 11), 200, "success"),
        ((12, 13), 502, "function-error"),
        ((12,), 502, "function-error"),
        ((12,), 502, "function-error"),  # retry 1
        ((12,), 502, "function-error"),  # retry 2
        ((13,), 200, "success"),
    ]
    assert source.given_up == [((12,), "RetriesExhausted", 5)]
    assert source.delivered_records == 3
    assert source.committed[-1] == 13
    assert kubelet.starts == 6  # the first start and one restart after each of five deaths


class _RestartingInvoker(invoke.Invoker):
    """The trigger workers' client, with the process restarted before each attempt."""

    def __init__(self, url: str, kubelet: Kubelet) -> None:
        super().__init__(url)
        self.kubelet = kubelet

    def invoke(
        self,
        namespace: str,
        function: str,
        payload: bytes,
        *,
        request_id: str,
        timeout: float = 900.0,
        invocation_type: str = "RequestResponse",
        qualifier: str = "",
    ) -> retry.Outcome:
        self.kubelet.ensure_running()
        outcome = super().invoke(
            namespace,
            function,
            payload,
            request_id=request_id,
            timeout=timeout,
            invocation_type=invocation_type,
            qualifier=qualifier,
        )
        self.kubelet.reap(outcome)
        return outcome


@pytest.mark.asyncio
async def test_an_event_that_kills_its_function_uses_up_its_retries_and_fails(
    make_activator: MakeActivator, kubelet: Kubelet
) -> None:
    activator = await make_activator(endpoints=frozenset({kubelet.address}), timeout_ms=10000)
    invoker = _RestartingInvoker(f"http://127.0.0.1:{activator.ports[0]}", kubelet)
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    deliverer = delivery.AsyncDeliverer(
        invoker,
        onfailure.Destinations(invoker),
        stop=threading.Event(),
        clock=lambda: now,
        retry_delays=(0.0, 0.0),
    )
    result = await asyncio.to_thread(
        deliverer.deliver,
        failure.Target(FN.namespace, FN.name, "on-upload", "bucket"),
        trigger_api.AsyncDelivery(max_retries=2),
        b'{"Records": ["poison"]}',
        request_id="event-1",
        first_seen=now,
    )
    assert (result.handled, result.delivered, result.condition) == (True, False, "RetriesExhausted")
    assert result.attempts == 3
    assert result.outcome is not None
    assert result.outcome.function_error
    assert json.loads(result.outcome.body)["errorType"] == "Runtime.ExitError"
    assert kubelet.starts == 3


@pytest.mark.asyncio
async def test_a_pooled_connection_is_not_reused_once_the_runtime_may_be_closing_it(
    backend: Backend,
) -> None:
    """A request lost on a connection the runtime closed idle would read as a process that
    died mid-request; so the pool closes connections before the runtime's 65 s do."""
    endpoint = upstream.Endpoint(backend.address)
    fresh, old = await endpoint.connect(), await endpoint.connect()
    endpoint.put_idle(old)
    old.idle_since -= upstream.MAX_IDLE_REUSE_S + 1
    endpoint.put_idle(fresh)
    assert endpoint.take_idle() is fresh
    assert endpoint.take_idle() is None
    assert old.closed
    endpoint.put_idle(fresh)
    assert endpoint.take_idle(now=fresh.idle_since + upstream.MAX_IDLE_REUSE_S - 1) is fresh
    endpoint.put_idle(fresh)
    assert endpoint.take_idle(now=fresh.idle_since + upstream.MAX_IDLE_REUSE_S + 1) is None
    assert fresh.closed
    endpoint.close()
