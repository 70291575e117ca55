"""NATS JetStream stream Triggers on the local cluster: in order, none lost, poison isolated.

Streams are created from the host with nats-py (one per test, deleted afterwards). The
function POSTs ``[0, sequence, value]`` for every record it got to the sink of the Kafka
stream tests, so the sink's list is the record of invocations, duplicates included (a worker
restarted by a concurrent reinstall redelivers its unacknowledged batch, which is allowed).
"""

from __future__ import annotations

import asyncio
import base64
import json
import pathlib
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kfncluster import fnimage
from tests.cluster import secured
from tests.cluster.kubeutil import (
    NODE,
    kubectl,
    kubectl_json,
    require_listening,
    scratch_namespace,
    wait_for,
)
from tests.cluster.test_stream_triggers import (
    Sink,
    condition,
    deploy_function,
    refused_naming_the_secret,
    trigger,
)

nats = pytest.importorskip("nats")

pytestmark = pytest.mark.cluster

SERVER = f"nats://{NODE}:4222"
POISON = "poison"

HANDLER = """\
import base64, json, urllib.request

SINK = {sink!r}
POISON = {poison!r}


def handler(event, context):
    assert event["eventSource"] == "kfn:nats", event["eventSource"]
    seen = []
    for record in event["records"]:
        value = base64.b64decode(record["data"]).decode()
        if value == POISON:
            raise ValueError("a poison record")
        seen.append([0, record["sequence"], value])
    request = urllib.request.Request(SINK, data=json.dumps(seen).encode(), method="POST")
    urllib.request.urlopen(request, timeout=10).read()
    return None
"""


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    collected = Sink()
    yield collected
    collected.close()


@pytest.fixture(scope="module")
def image(cluster: pathlib.Path, sink: Sink) -> str:
    handler = HANDLER.format(sink=sink.url, poison=POISON)
    return fnimage.push_python_function("tests/stream-nats", "v1", {"app.py": handler})


@pytest.fixture(scope="module")
def namespace(kfn: str) -> Iterator[str]:
    require_listening(4222, "nats")
    kubectl("-n", kfn, "rollout", "status", "deployment/kfn-stream", "--timeout=120s")
    kubectl("-n", kfn, "rollout", "status", "deployment/kfn-activator", "--timeout=120s")
    with scratch_namespace("stream-nats") as name:
        yield name


async def _jetstream(action: Any) -> Any:
    client = await nats.connect(SERVER, connect_timeout=5, max_reconnect_attempts=0)
    try:
        return await action(client.jetstream())
    finally:
        await client.close()


def jetstream(action: Any) -> Any:
    """Runs ``action(js)`` on a fresh connection from the host."""
    return asyncio.run(_jetstream(action))


@pytest.fixture
def streams() -> Iterator[list[str]]:
    created: list[str] = []
    yield created

    async def delete(js: Any) -> None:
        for name in created:
            try:
                await js.delete_stream(name)
            except Exception as exc:  # cleanup reports and goes on
                print(f"deleting stream {name} failed: {exc}")

    if created:
        jetstream(delete)


def new_stream(streams: list[str]) -> str:
    name = f"NATSTEST{uuid.uuid4().hex[:8].upper()}"

    async def add(js: Any) -> None:
        await js.add_stream(name=name, subjects=[f"{name}.>"])

    jetstream(add)
    streams.append(name)
    return name


def publish(subject: str, values: list[str]) -> None:
    async def send(js: Any) -> None:
        for start in range(0, len(values), 100):
            acks = [js.publish(subject, v.encode()) for v in values[start : start + 100]]
            await asyncio.gather(*acks)

    jetstream(send)


def stored(stream: str) -> list[bytes]:
    async def read(js: Any) -> list[bytes]:
        info = await js.stream_info(stream)
        return [
            (await js.get_msg(stream, seq)).data or b""
            for seq in range(info.state.first_seq, info.state.last_seq + 1)
            if info.state.messages
        ]

    return list(jetstream(read))


def check_order(records: list[tuple[int, int, str]], values: list[str]) -> int:
    """Asserts all values arrived and first deliveries came in sequence order without a gap;
    the number of duplicate deliveries."""
    first: list[int] = []
    seen: set[int] = set()
    for _, sequence, _ in records:
        if sequence not in seen:
            seen.add(sequence)
            first.append(sequence)
    assert first == sorted(first), "records were delivered out of order"
    assert first == list(range(first[0], first[0] + len(first))), "a sequence is missing"
    assert sorted({s: v for _, s, v in records}.values()) == sorted(values), "records were lost"
    return len(records) - len(seen)


def status_of(namespace: str, name: str) -> dict[str, Any]:
    return dict(kubectl_json("-n", namespace, "get", "trigger", name).get("status") or {})


def test_a_thousand_messages_wake_a_function_at_zero_and_arrive_in_order(
    namespace: str, image: str, sink: Sink, streams: list[str]
) -> None:
    stream = new_stream(streams)
    deploy_function(namespace, "orders", image, at_zero=True)
    trigger(namespace, "orders", "orders", {
        "nats": {"servers": [SERVER], "subject": f"{stream}.>", "stream": stream},
        "batchSize": 100, "startingPosition": "Earliest",
    })  # fmt: skip
    values = [f"order-{i}" for i in range(1_000)]

    def mine() -> list[tuple[int, int, str]]:
        return [r for r in sink.records() if r[2].startswith("order-")]

    started = time.monotonic()
    publish(f"{stream}.new", values)
    wait_for("the first message to wake the function", lambda: bool(mine()), timeout=120,
             every=0.2)  # fmt: skip
    woke = time.monotonic() - started
    first_seen = time.monotonic()
    wait_for("all 1,000 messages", lambda: len({s for _, s, _ in mine()}) >= 1_000,
             timeout=300, every=0.2)  # fmt: skip
    done = time.monotonic()
    duplicates = check_order(mine(), values)
    rate = 999 / max(done - first_seen, 1e-3)
    print(f"\nfirst message handled {woke:.1f}s after publishing; 1,000 in {done - started:.1f}s "
          f"(~{rate:.0f} messages/s once awake); duplicates {duplicates}")  # fmt: skip

    def caught_up() -> bool:
        status = status_of(namespace, "orders")
        return status.get("lag") == 0 and bool(status.get("lastEventTime"))

    wait_for("lag 0 in the Trigger's status", caught_up, timeout=60, every=1)
    reachable = condition(namespace, "orders", "SourceReachable")
    assert reachable is not None
    assert reachable["status"] == "True"
    assert stream in reachable["message"]
    durable = f"kfn_{namespace}_orders"
    assert durable in durables(stream)
    kubectl("-n", namespace, "delete", "trigger", "orders", "--wait=true")
    wait_for(f"the durable {durable} to be deleted with its Trigger",
             lambda: durable not in durables(stream), timeout=60, every=1)  # fmt: skip


def durables(stream: str) -> set[str]:
    async def names(js: Any) -> set[str]:
        return {info.name for info in await js.consumers_info(stream)}

    return set(jetstream(names))


def test_killing_the_worker_mid_stream_loses_no_message(
    kfn: str, namespace: str, image: str, sink: Sink, streams: list[str]
) -> None:
    """What the killed worker had not acknowledged comes back to its replacement after the
    consumer's ack wait (30 s); order holds for first deliveries."""
    stream = new_stream(streams)
    deploy_function(namespace, "killed", image, at_zero=False)
    trigger(namespace, "killed", "killed", {
        "nats": {"servers": [SERVER], "subject": f"{stream}.>", "stream": stream},
        "batchSize": 10, "startingPosition": "Earliest",
    })  # fmt: skip
    values = [f"kill-{i}" for i in range(2_000)]
    publish(f"{stream}.in", values)

    def mine() -> list[tuple[int, int, str]]:
        return [r for r in sink.records() if r[2].startswith("kill-")]

    wait_for("a quarter of the messages", lambda: len(mine()) >= 500, timeout=180, every=0.2)
    before = len(mine())
    kubectl("-n", kfn, "delete", "pod", "-l", "app.kubernetes.io/component=stream",
            "--grace-period=0", "--force")  # fmt: skip
    wait_for("all 2,000 messages after the kill",
             lambda: len({s for _, s, _ in mine()}) >= 2_000, timeout=240, every=1)  # fmt: skip
    duplicates = check_order(mine(), values)
    print(f"\nkilled the worker after {before} messages; {duplicates} duplicates")
    kubectl("-n", kfn, "rollout", "status", "deployment/kfn-stream", "--timeout=120s")
    kubectl("-n", namespace, "delete", "trigger", "killed", "--wait=true")


def test_a_poison_message_goes_to_the_on_failure_subject_while_the_rest_flows(
    namespace: str, image: str, sink: Sink, streams: list[str]
) -> None:
    stream = new_stream(streams)
    dead = new_stream(streams)
    deploy_function(namespace, "poisoned", image, at_zero=False)
    trigger(namespace, "poisoned", "poisoned", {
        "nats": {"servers": [SERVER], "subject": f"{stream}.>", "stream": stream},
        "batchSize": 50, "startingPosition": "Earliest", "bisectBatchOnError": True,
        "maxRetries": 2,
        "onFailure": {"nats": {"servers": [SERVER], "subject": f"{dead}.failed"}},
    })  # fmt: skip
    values = [f"p-{i}" for i in range(300)]
    values[137] = POISON
    publish(f"{stream}.in", values)

    def mine() -> list[tuple[int, int, str]]:
        return [r for r in sink.records() if r[2].startswith("p-")]

    wait_for("the 299 good messages", lambda: len({s for _, s, _ in mine()}) >= 299,
             timeout=180, every=0.5)  # fmt: skip
    captured = wait_for("the failure record", lambda: stored(dead), timeout=60, every=1)
    record = json.loads(captured[0])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] >= 3
    assert record["responseContext"]["functionError"] == "Unhandled"
    info = record["NatsBatchInfo"]
    assert (info["batchSize"], info["stream"]) == (1, stream)
    assert info["firstSequence"] == info["lastSequence"] == 138
    [failed] = record["requestPayload"]["records"]
    assert failed["sequence"] == 138
    assert base64.b64decode(failed["data"]).decode() == POISON
    good = [v for v in values if v != POISON]
    first = list(dict.fromkeys(s for _, s, _ in mine()))
    assert first == sorted(first), "records were delivered out of order"
    assert sorted({v for _, _, v in mine()}) == sorted(good), "records were lost"
    print(f"\npoison message isolated after {record['requestContext']['approximateInvokeCount']} "
          f"invocations; {len(mine())} deliveries for 299 good messages")  # fmt: skip
    kubectl("-n", namespace, "delete", "trigger", "poisoned", "--wait=true")


def test_a_missing_stream_shows_source_reachable_false_with_the_reason(
    namespace: str, image: str
) -> None:
    deploy_function(namespace, "nostream", image, at_zero=False)
    trigger(namespace, "nostream", "nostream", {
        "nats": {"servers": [SERVER], "subject": "nowhere.>", "stream": "NOWHERE"},
    })  # fmt: skip

    def failed() -> dict[str, Any] | None:
        cond = condition(namespace, "nostream", "SourceReachable")
        return cond if cond and cond["status"] == "False" else None

    cond = wait_for("SourceReachable=False", failed, timeout=90, every=1)
    print(f"\nSourceReachable: {cond['reason']}: {cond['message']}")
    assert cond["reason"] == "ConnectionFailed"
    assert cond["message"] == "stream NOWHERE not found"
    ready = condition(namespace, "nostream", "Ready")
    assert ready is not None
    assert ready["status"] == "False"
    kubectl("-n", namespace, "delete", "trigger", "nostream", "--wait=true")


@pytest.fixture(scope="module")
def secured_nats(
    cluster: pathlib.Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[secured.Nats]:
    with secured.nats_server(tmp_path_factory.mktemp("secured-nats")) as server:
        yield server


def test_a_secured_server_is_reached_with_the_secrets_token_which_never_shows(
    kfn: str, namespace: str, image: str, sink: Sink, secured_nats: secured.Nats
) -> None:
    stream = f"SECURED{uuid.uuid4().hex[:8].upper()}"

    async def add_and_publish() -> None:
        client = await nats.connect(secured_nats.url, token=secured_nats.token, connect_timeout=5,
                                    max_reconnect_attempts=0)  # fmt: skip
        try:
            js = client.jetstream()
            await js.add_stream(name=stream, subjects=[f"{stream}.>"])
            for i in range(50):
                await js.publish(f"{stream}.in", f"s-{i}".encode())
        finally:
            await client.close()

    asyncio.run(add_and_publish())
    wrong = secrets.token_urlsafe(24)
    for name, token in (("nats-token", secured_nats.token), ("nats-wrong", wrong)):
        kubectl("-n", namespace, "create", "secret", "generic", name,
                f"--from-literal=token={token}")  # fmt: skip
        kubectl("-n", namespace, "annotate", "secret", name,
                f"kfn.dev/allowed-endpoints={secured_nats.url}")  # fmt: skip
    deploy_function(namespace, "secured", image, at_zero=False)
    source = {"servers": [secured_nats.url], "subject": f"{stream}.>", "stream": stream}
    trigger(namespace, "secured", "secured", {
        "nats": source, "startingPosition": "Earliest",
        "credentialsSecretRef": {"name": "nats-token"},
    })  # fmt: skip
    trigger(namespace, "refused", "secured", {
        "nats": {**source, "durableName": "refused"}, "startingPosition": "Earliest",
        "credentialsSecretRef": {"name": "nats-wrong"},
    })  # fmt: skip

    def mine() -> list[tuple[int, int, str]]:
        return [r for r in sink.records() if r[2].startswith("s-")]

    wait_for("the 50 messages of the secured stream", lambda: len({s for _, s, _ in mine()}) >= 50,
             timeout=120, every=0.5)  # fmt: skip
    check_order(mine(), [f"s-{i}" for i in range(50)])

    cond = refused_naming_the_secret(kfn, namespace, "refused", "nats-wrong",
                                     hidden=[secured_nats.token, wrong])  # fmt: skip
    assert "Authorization Violation" in cond["message"]
    for name in ("secured", "refused"):
        kubectl("-n", namespace, "delete", "trigger", name, "--wait=true")
