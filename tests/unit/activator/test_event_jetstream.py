"""The durable event store against a real nats-server on loopback.

The server is the binary the local cluster installs (``make up`` puts it under
``~/.cache/kfn/components/nats-*/``); without it these tests are skipped, saying so. Each
test gets its own server and store directory. "Killing" an activator stops its workers
mid-delivery and closes its connection without acknowledging anything, which is what the
server sees of a SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import pathlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import nats
import nats.js.api
import pytest
import pytest_asyncio

from kfn import retry, stats
from kfn.activator import async_invoke, event_jetstream, event_record, event_stream, events, metrics

from .conftest import until

FN = stats.FunctionKey("tenant-a", "resize")
OTHER = stats.FunctionKey("tenant-b", "mail")
COMPONENTS = pathlib.Path.home() / ".cache" / "kfn" / "components"


def _nats_server() -> pathlib.Path | None:
    found = sorted(COMPONENTS.glob("nats-*/nats-server"))
    return found[-1] if found else None


pytestmark = pytest.mark.skipif(
    _nats_server() is None,
    reason=f"no nats-server under {COMPONENTS}/nats-*/ (the local cluster's `make up` installs it)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """A nats-server with JetStream on a loopback port, stopped and started again at will
    (the same port and store directory)."""

    def __init__(self, store: pathlib.Path) -> None:
        self.store = store
        self.port = _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = _nats_server()
        assert binary is not None
        self.process = subprocess.Popen(
            [str(binary), "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.1),
            ):
                return
            if self.process.poll() is not None:
                pytest.fail(f"nats-server exited with {self.process.returncode}")
            time.sleep(0.025)
        pytest.fail(f"nats-server did not listen on {self.url}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def nats_server(tmp_path: pathlib.Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "js")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    return nats_server.url


class Recorder:
    """The functions: each call recorded; calls wait while ``gate`` is closed."""

    def __init__(self) -> None:
        self.calls: list[tuple[stats.FunctionKey, str, bytes]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.answers: list[retry.Outcome] = []
        self.times: list[float] = []

    async def deliver(
        self, function: stats.FunctionKey, request_id: str, payload: bytes
    ) -> retry.Outcome:
        self.calls.append((function, request_id, payload))
        self.times.append(time.monotonic())
        await self.gate.wait()
        if self.answers:
            return self.answers.pop(0)
        return retry.Outcome(200, b"{}")


class Split(Recorder):
    """Only FN's deliveries wait for the gate; every other function's run at once."""

    async def deliver(
        self, function: stats.FunctionKey, request_id: str, payload: bytes
    ) -> retry.Outcome:
        self.calls.append((function, request_id, payload))
        if function == FN:
            await self.gate.wait()
        return retry.Outcome(200, b"{}")


class Collecting:
    def __init__(self) -> None:
        self.records: list[async_invoke.FailedEvent] = []

    async def on_failure(self, record: async_invoke.FailedEvent) -> None:
        self.records.append(record)


class Make(Protocol):
    """Starts an activator's invoker over the JetStream store (``settings``: its Settings)."""

    async def __call__(
        self,
        recorder: Recorder,
        *,
        destination: Collecting | None = None,
        counters: metrics.Metrics | None = None,
        url: str | None = None,
        wait: bool = True,
        window: int = 1024,
        **settings: Any,
    ) -> async_invoke.AsyncInvoker: ...


@pytest_asyncio.fixture
async def make(nats_url: str) -> AsyncIterator[Make]:
    started: list[async_invoke.AsyncInvoker] = []

    async def build(
        recorder: Recorder,
        *,
        destination: Collecting | None = None,
        counters: metrics.Metrics | None = None,
        url: str | None = None,
        wait: bool = True,
        window: int = 1024,
        **settings: Any,
    ) -> async_invoke.AsyncInvoker:
        store = event_jetstream.JetStreamStore(
            event_stream.Settings(servers=(url or nats_url,), **settings)
        )
        invoker = async_invoke.AsyncInvoker(
            recorder.deliver,
            destination or Collecting(),
            store,
            workers=8,
            per_function=8,
            window=window,
            retry_delays=(0.3, 0.3),
            throttle_backoff=(0.05, 0.1),
            counters=counters,
        )
        invoker.start()
        if wait:
            await asyncio.wait_for(store.wait_ready(), 10)
        started.append(invoker)
        return invoker

    yield build
    for invoker in started:
        await invoker.stop()


async def stream_messages(url: str, stream: str = event_stream.STREAM) -> int:
    client = await nats.connect(url)
    try:
        info = await client.jetstream().stream_info(stream)
        return int(info.state.messages)
    finally:
        await client.close()


# --- accepting ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_event_is_accepted_only_once_the_stream_holds_it(
    make: Make, nats_url: str
) -> None:
    recorder = Recorder()
    recorder.gate.clear()
    invoker = await make(recorder)
    answer = await events.submit(invoker, FN, b'{"n": 1}')
    assert answer.status == 202
    assert await stream_messages(nats_url) == 1
    await until(lambda: len(recorder.calls) == 1)
    assert recorder.calls[0][1].encode() in answer.body
    recorder.gate.set()
    await asyncio.wait_for(invoker.wait_idle(), 5)
    # Work-queue retention: an acknowledged event leaves the stream.
    for _ in range(100):
        if await stream_messages(nats_url) == 0:
            break
        await asyncio.sleep(0.02)
    assert await stream_messages(nats_url) == 0


@pytest.mark.asyncio
async def test_an_event_is_refused_503_while_the_store_cannot_be_reached(make: Make) -> None:
    invoker = await make(Recorder(), url=f"nats://127.0.0.1:{_free_port()}", wait=False)
    answer = await events.submit(invoker, FN, b"{}")
    assert answer.status == 503


@pytest.mark.asyncio
async def test_a_full_stream_refuses_new_events_with_429(make: Make) -> None:
    invoker = await make(Recorder(), max_bytes=4096)
    await invoker.store.stop_taking()  # the events stay: nothing is delivered meanwhile
    statuses = [(await events.submit(invoker, FN, b"x" * 1500)).status for _ in range(4)]
    assert statuses[0] == 202
    assert statuses[-1] == 429


# --- surviving the activator -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_events_held_by_a_killed_activator_are_delivered_by_another_and_counted(
    make: Make, nats_url: str
) -> None:
    doomed = Recorder()
    doomed.gate.clear()  # it never finishes a delivery
    first = await make(doomed, ack_wait=1.0)
    accepted = {await first.submit(FN, b"{}") for _ in range(12)}
    # Its 8 workers busy, and the 4 other events fetched into its lanes.
    await until(lambda: len(doomed.calls) == 8 and first.lanes.waiting == 4)
    await first.stop()  # killed: nothing acknowledged or given back

    counted = metrics.Metrics(dict)
    survivor = Recorder()
    second = await make(survivor, counters=counted, ack_wait=1.0)
    await until(lambda: {r for _, r, _ in survivor.calls} == accepted)
    await asyncio.wait_for(second.wait_idle(), 5)
    assert len(survivor.calls) == 12
    assert sum(f.events_redelivered for f in counted.functions.values()) == 12


@pytest.mark.asyncio
async def test_held_events_outlive_the_ack_wait_while_their_delivery_runs(make: Make) -> None:
    # In-progress acks keep a long delivery's message from being handed out again.
    recorder = Recorder()
    recorder.gate.clear()
    counted = metrics.Metrics(dict)
    invoker = await make(recorder, counters=counted, ack_wait=0.6)
    await invoker.submit(FN, b"{}")
    await until(lambda: len(recorder.calls) == 1)
    await asyncio.sleep(3 * 0.6)
    recorder.gate.set()
    await asyncio.wait_for(invoker.wait_idle(), 5)
    assert len(recorder.calls) == 1
    assert all(f.events_redelivered == 0 for f in counted.functions.values())


@pytest.mark.asyncio
async def test_a_stopping_activator_gives_back_the_events_it_has_not_started(
    make: Make,
) -> None:
    slow = Recorder()
    slow.gate.clear()
    first = await make(slow)  # ack_wait 30 s: only a NAK frees them
    accepted = {await first.submit(FN, b"{}") for _ in range(12)}
    await until(lambda: len(slow.calls) == 8)
    draining = asyncio.create_task(first.drain())
    await until(lambda: first.lanes.waiting == 0)
    second_recorder = Recorder()
    counted = metrics.Metrics(dict)
    await make(second_recorder, counters=counted)
    await until(lambda: len(second_recorder.calls) == 4)
    slow.gate.set()
    await asyncio.wait_for(draining, 5)
    assert {r for _, r, _ in slow.calls + second_recorder.calls} == accepted


# --- retries -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_failed_attempt_is_retried_from_the_stream_with_its_counters_then_given_up(
    make: Make, nats_url: str
) -> None:
    recorder = Recorder()
    recorder.answers = [retry.Outcome(500, b'{"errorType": "Boom"}', function_error=True)] * 3
    destination = Collecting()
    counted = metrics.Metrics(dict)
    invoker = await make(recorder, destination=destination, counters=counted)
    request_id = await invoker.submit(FN, b'{"n": 7}')
    await until(lambda: len(destination.records) == 1)
    assert [r for _, r, _ in recorder.calls] == [request_id] * 3
    # Each retry waited in the stream for its delay (0.3 s) before it ran.
    gaps = [b - a for a, b in itertools.pairwise(recorder.times)]
    assert all(gap >= 0.25 for gap in gaps), gaps
    [record] = destination.records
    assert record.condition == "RetriesExhausted"
    assert record.attempts == 3
    assert record.payload == b'{"n": 7}'
    assert record.response == b'{"errorType": "Boom"}'
    assert counted.of(FN).events_dropped == {"RetriesExhausted": 1}
    assert counted.of(FN).events_redelivered == 0  # put back until due is no redelivery


@pytest.mark.asyncio
async def test_one_functions_held_events_leave_the_other_functions_flowing(make: Make) -> None:
    recorder = Split()
    recorder.gate.clear()
    invoker = await make(recorder)
    invoker.lanes.per_function = 2
    for _ in range(6):
        await invoker.submit(FN, b"{}")
    await until(lambda: sum(1 for f, _, _ in recorder.calls if f == FN) == 2)
    others = [await invoker.submit(OTHER, b"{}") for _ in range(10)]
    await until(lambda: [r for f, r, _ in recorder.calls if f == OTHER] == others)
    recorder.gate.set()
    await asyncio.wait_for(invoker.wait_idle(), 5)


@pytest.mark.asyncio
async def test_a_backlog_of_one_function_beyond_every_window_leaves_anothers_events_flowing(
    make: Make, nats_url: str
) -> None:
    # The invoker's window (16) and one function's lane window (4) are far smaller than
    # its backlog (200): the other function's events, stored behind all of it, still run
    # at once.
    recorder = Split()
    recorder.gate.clear()
    invoker = await make(recorder, window=16, lane_window=4)
    for _ in range(200):
        await invoker.submit(FN, b"{}")
    await until(lambda: sum(1 for f, _, _ in recorder.calls if f == FN) == 4)
    assert await stream_messages(nats_url) == 200
    others = [await invoker.submit(OTHER, b"{}") for _ in range(10)]
    await until(lambda: [r for f, r, _ in recorder.calls if f == OTHER] == others)
    # Only the lane window of the backlog was ever taken out of the stream.
    assert sum(1 for f, _, _ in recorder.calls if f == FN) == 4
    recorder.gate.set()
    await until(lambda: sum(1 for f, _, _ in recorder.calls if f == FN) == 200)
    await asyncio.wait_for(invoker.wait_idle(), 10)


@pytest.mark.asyncio
async def test_an_event_sent_while_nats_restarts_is_stored_once_and_accepted(
    make: Make, nats_server: NatsServer, nats_url: str
) -> None:
    recorder = Recorder()
    recorder.gate.clear()
    invoker = await make(recorder)
    nats_server.stop()
    sending = asyncio.create_task(events.submit(invoker, FN, b'{"n": 1}'))
    await asyncio.sleep(1.5)
    assert not sending.done()  # held while the store is away, not answered 503
    nats_server.start()
    answer = await asyncio.wait_for(sending, event_jetstream.PUT_BUDGET)
    assert answer.status == 202
    assert await stream_messages(nats_url) == 1
    await until(lambda: len(recorder.calls) == 1)
    recorder.gate.set()
    await asyncio.wait_for(invoker.wait_idle(), 5)


@pytest.mark.asyncio
async def test_an_event_the_store_never_confirms_is_answered_503_after_the_budget(
    make: Make, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_jetstream, "PUT_BUDGET", 1.0)
    invoker = await make(Recorder())
    nats_server.stop()
    started = time.monotonic()
    answer = await events.submit(invoker, FN, b"{}")
    assert answer.status == 503
    assert time.monotonic() - started < 3


# --- the stream --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_stream_is_created_once_and_updated_in_place(make: Make, nats_url: str) -> None:
    await make(Recorder(), max_bytes=1 << 20)
    await make(Recorder(), max_bytes=2 << 20)
    client = await nats.connect(nats_url)
    try:
        info = await client.jetstream().stream_info(event_stream.STREAM)
        assert info.config.max_bytes == 2 << 20
        assert info.config.retention == nats.js.api.RetentionPolicy.WORK_QUEUE
        assert info.config.storage == nats.js.api.StorageType.FILE
        assert info.config.subjects == ["kfn.events.>"]
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_each_function_has_a_consumer_of_its_own_and_the_shared_one_is_removed(
    make: Make, nats_url: str
) -> None:
    settings = event_stream.Settings(servers=(nats_url,))
    client = await nats.connect(nats_url)
    try:
        # An activator from before consumers per function: its shared consumer holds an
        # event it fetched and never acknowledged.
        js = client.jetstream()
        await js.add_stream(event_stream.stream_config(settings))
        await js.add_consumer(
            event_stream.STREAM,
            durable_name=event_stream.SHARED_CONSUMER,
            ack_policy=nats.js.api.AckPolicy.EXPLICIT,
            filter_subject="kfn.events.>",
        )
        now = time.time()
        old_event = event_record.Event(FN, "held-by-the-old-consumer", b"{}", now, due=now)
        await js.publish(
            event_record.subject(event_stream.SUBJECT_PREFIX, FN),
            old_event.payload,
            headers=event_record.headers(old_event, stored=now),
        )
        old = await js.pull_subscribe_bind(event_stream.SHARED_CONSUMER, event_stream.STREAM)
        assert len(await old.fetch(1, timeout=2)) == 1

        recorder = Recorder()
        invoker = await make(recorder)
        other = await invoker.submit(OTHER, b"{}")
        await until(lambda: {r for _, r, _ in recorder.calls} == {old_event.request_id, other})
        names = {c.name for c in await js.consumers_info(event_stream.STREAM)}
        assert names == {
            event_stream.consumer_name(settings, "kfn.events.tenant-a.resize"),
            event_stream.consumer_name(settings, "kfn.events.tenant-b.mail"),
        }
    finally:
        await client.close()


def test_consumer_names_differ_for_names_that_join_alike() -> None:
    settings = event_stream.Settings(servers=())
    one = event_stream.consumer_name(settings, "kfn.events.a-b.c")
    two = event_stream.consumer_name(settings, "kfn.events.a.b-c")
    assert one != two
    assert one.startswith("kfn-events-")
    assert "." not in one


def test_credentials_come_from_a_token_or_a_username_and_password() -> None:
    assert event_stream.credentials({}) == {}
    assert event_stream.credentials({"token": b"s3cret\n"}) == {"token": "s3cret"}
    assert event_stream.credentials({"username": b"kfn", "password": b"pw"}) == {
        "user": "kfn",
        "password": "pw",
    }
    with pytest.raises(ValueError, match="no password"):
        event_stream.credentials({"username": b"kfn"})
    with pytest.raises(ValueError, match="none of token"):
        event_stream.credentials({"creds": b"..."})
