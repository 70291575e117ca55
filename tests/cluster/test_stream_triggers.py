"""Kafka stream Triggers on the local cluster: batches per partition, in order, none lost.

The function POSTs the (partition, offset, value) of every record it got to a sink this
test runs on the node address (10.244.0.1), so the sink's list is the record of
invocations, duplicates included. Topics are created per test and deleted afterwards.
"""

from __future__ import annotations

import base64
import collections
import http.server
import json
import pathlib
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import confluent_kafka
import confluent_kafka.admin as admin_
import pytest

from kfncluster import fnimage
from tests.cluster import secured
from tests.cluster.kubeutil import (
    NODE,
    apply,
    kubectl,
    kubectl_json,
    python_function,
    require_listening,
    scratch_namespace,
    wait_at_zero,
    wait_for,
)

pytestmark = pytest.mark.cluster

BOOTSTRAP = "10.244.0.1:9092"
POISON = "poison"

HANDLER = """\
import base64, json, urllib.request

SINK = {sink!r}
POISON = {poison!r}


def handler(event, context):
    seen = []
    for records in event["records"].values():
        for record in records:
            value = base64.b64decode(record["value"]).decode()
            if value == POISON:
                raise ValueError("a poison record")
            seen.append([record["partition"], record["offset"], value])
    request = urllib.request.Request(SINK, data=json.dumps(seen).encode(), method="POST")
    urllib.request.urlopen(request, timeout=10).read()
    return None
"""


class Sink:
    """Collects what the functions saw, one list per invocation, in arrival order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches: list[list[tuple[int, int, str]]] = []
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                batch = [(int(p), int(o), str(v)) for p, o, v in json.loads(body)]
                with sink.lock:
                    sink.batches.append(batch)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        self.server = http.server.ThreadingHTTPServer((NODE, 0), Handler)
        self.url = f"http://{NODE}:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def records(self) -> list[tuple[int, int, str]]:
        with self.lock:
            return [record for batch in self.batches for record in batch]

    def distinct(self) -> set[tuple[int, int]]:
        return {(p, o) for p, o, _ in self.records()}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    collected = Sink()
    yield collected
    collected.close()


@pytest.fixture(scope="module")
def image(cluster: pathlib.Path, sink: Sink) -> str:
    handler = HANDLER.format(sink=sink.url, poison=POISON)
    return fnimage.push_python_function("tests/stream", "v1", {"app.py": handler})


@pytest.fixture(scope="module")
def namespace(kfn: str) -> Iterator[str]:
    require_listening(9092, "kafka")
    kubectl("-n", kfn, "rollout", "status", "deployment/kfn-stream", "--timeout=120s")
    kubectl("-n", kfn, "rollout", "status", "deployment/kfn-activator", "--timeout=120s")
    with scratch_namespace("stream") as name:
        yield name


@pytest.fixture
def topics() -> Iterator[list[str]]:
    created: list[str] = []
    yield created
    delete_topics(created)


def delete_topics(names: list[str]) -> None:
    """Deletes the test's topics; a failure is printed, not raised (the broker's to clean)."""
    if not names:
        return
    admin = admin_.AdminClient({"bootstrap.servers": BOOTSTRAP})
    for future in admin.delete_topics(names).values():
        try:
            future.result(30)
        except confluent_kafka.KafkaException as exc:
            print(f"deleting a topic failed: {exc}")


def new_topic(topics: list[str], partitions: int = 3) -> str:
    name = f"stream-test-{uuid.uuid4().hex[:8]}"
    admin = admin_.AdminClient({"bootstrap.servers": BOOTSTRAP})
    for future in admin.create_topics([admin_.NewTopic(name, partitions, 1)]).values():
        future.result(30)
    topics.append(name)
    return name


def produce(topic: str, values: list[str]) -> None:
    producer = confluent_kafka.Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 10})
    for index, value in enumerate(values):
        producer.produce(topic, value.encode(), key=str(index).encode())
        producer.poll(0)
    assert producer.flush(60) == 0


def deploy_function(namespace: str, name: str, image: str, *, at_zero: bool) -> None:
    python_function(namespace, name, image, scale={"idleTimeout": "5s" if at_zero else "10m"})
    if at_zero:
        wait_at_zero(namespace, name, timeout=120)


def trigger(namespace: str, name: str, function: str, stream: dict[str, Any]) -> None:
    apply(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"functionRef": {"name": function}, "stream": stream},
        }
    )


def condition(namespace: str, name: str, type_: str) -> dict[str, Any] | None:
    obj = kubectl_json("-n", namespace, "get", "trigger", name)
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return None


def check_order(records: list[tuple[int, int, str]], values: list[str]) -> dict[int, int]:
    """Asserts every produced value arrived and each partition's first deliveries came in
    offset order; the number of duplicate deliveries per partition."""
    first: dict[int, list[int]] = collections.defaultdict(list)
    seen: set[tuple[int, int]] = set()
    duplicates: collections.Counter[int] = collections.Counter()
    for partition, offset, _ in records:
        if (partition, offset) in seen:
            duplicates[partition] += 1
            continue
        seen.add((partition, offset))
        first[partition].append(offset)
    for partition, offsets in first.items():
        assert offsets == sorted(offsets), f"partition {partition} was delivered out of order"
        assert offsets == list(range(len(offsets))), f"partition {partition} has a gap"
    delivered = {(p, o): v for p, o, v in records}
    assert sorted(delivered.values()) == sorted(values), "records were lost"
    return dict(duplicates)


def test_ten_thousand_records_wake_a_function_at_zero_and_all_arrive_in_order_per_partition(
    namespace: str, image: str, sink: Sink, topics: list[str]
) -> None:
    topic = new_topic(topics)
    deploy_function(namespace, "orders", image, at_zero=True)
    trigger(namespace, "orders", "orders", {
        "kafka": {"bootstrapServers": [BOOTSTRAP], "topic": topic},
        "batchSize": 100, "startingPosition": "Earliest",
    })  # fmt: skip
    values = [f"order-{i}" for i in range(10_000)]
    mine = lambda: [r for r in sink.records() if r[2].startswith("order-")]  # noqa: E731
    started = time.monotonic()
    produce(topic, values)
    wait_for("the first record to wake the function", lambda: bool(mine()), timeout=120,
             every=0.2)  # fmt: skip
    woke = time.monotonic() - started
    wait_for("all 10,000 records", lambda: len({(p, o) for p, o, _ in mine()}) >= 10_000,
             timeout=300, every=1)  # fmt: skip
    elapsed = time.monotonic() - started
    duplicates = check_order(mine(), values)
    print(f"\nfirst record handled {woke:.1f}s after producing; 10,000 in {elapsed:.1f}s; "
          f"duplicates {duplicates}")  # fmt: skip
    assert sum(duplicates.values()) == 0, "records were delivered twice without any failure"

    def caught_up() -> bool:
        status = kubectl_json("-n", namespace, "get", "trigger", "orders").get("status") or {}
        return status.get("lag") == 0 and bool(status.get("lastEventTime"))

    wait_for("lag 0 in the Trigger's status", caught_up, timeout=60, every=1)
    reachable = condition(namespace, "orders", "SourceReachable")
    assert reachable is not None
    assert reachable["status"] == "True"
    group = f"kfn.{namespace}.orders"
    assert group in consumer_groups()
    kubectl("-n", namespace, "delete", "trigger", "orders", "--wait=true")
    wait_for(f"the consumer group {group} to be deleted with its Trigger",
             lambda: group not in consumer_groups(), timeout=60, every=1)  # fmt: skip


def consumer_groups() -> set[str]:
    admin = admin_.AdminClient({"bootstrap.servers": BOOTSTRAP})
    listed = admin.list_consumer_groups(request_timeout=10).result(15)
    return {group.group_id for group in listed.valid}


def test_killing_the_worker_mid_stream_loses_no_record(
    kfn: str, namespace: str, image: str, sink: Sink, topics: list[str]
) -> None:
    topic = new_topic(topics)
    deploy_function(namespace, "killed", image, at_zero=False)
    trigger(namespace, "killed", "killed", {
        "kafka": {"bootstrapServers": [BOOTSTRAP], "topic": topic},
        "batchSize": 10, "startingPosition": "Earliest",
    })  # fmt: skip
    values = [f"kill-{i}" for i in range(10_000)]
    produce(topic, values)
    mine = lambda: [r for r in sink.records() if r[2].startswith("kill-")]  # noqa: E731
    wait_for("a quarter of the records", lambda: len(mine()) >= 2_500, timeout=180, every=0.2)
    before = len(mine())
    kubectl("-n", kfn, "delete", "pod", "-l", "app.kubernetes.io/component=stream",
            "--grace-period=0", "--force")  # fmt: skip
    everything = lambda: len({(p, o) for p, o, _ in mine()}) >= 10_000  # noqa: E731
    wait_for("all 10,000 records after the kill", everything, timeout=300, every=1)
    duplicates = check_order(mine(), values)
    print(f"\nkilled the worker after {before} records; duplicates per partition: {duplicates} "
          f"(total {sum(duplicates.values())})")  # fmt: skip
    kubectl("-n", kfn, "rollout", "status", "deployment/kfn-stream", "--timeout=120s")
    kubectl("-n", namespace, "delete", "trigger", "killed", "--wait=true")


def failure_records(topic: str, wanted: int, timeout: float = 120) -> list[dict[str, Any]]:
    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": BOOTSTRAP, "group.id": f"test-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })  # fmt: skip
    consumer.subscribe([topic])
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < wanted and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                found.append(json.loads(message.value()))
    finally:
        consumer.close()
    return found


def test_a_poison_record_is_isolated_and_sent_to_on_failure_while_the_rest_is_processed(
    namespace: str, image: str, sink: Sink, topics: list[str]
) -> None:
    topic = new_topic(topics)
    dead = new_topic(topics, partitions=1)
    deploy_function(namespace, "poisoned", image, at_zero=False)
    trigger(namespace, "poisoned", "poisoned", {
        "kafka": {"bootstrapServers": [BOOTSTRAP], "topic": topic},
        "batchSize": 50, "startingPosition": "Earliest", "bisectBatchOnError": True,
        "maxRetries": 2,
        "onFailure": {"kafka": {"bootstrapServers": [BOOTSTRAP], "topic": dead}},
    })  # fmt: skip
    values = [f"p-{i}" for i in range(300)]
    values[137] = POISON
    produce(topic, values)
    mine = lambda: [r for r in sink.records() if r[2].startswith("p-")]  # noqa: E731
    wait_for("the 299 good records", lambda: len({(p, o) for p, o, _ in mine()}) >= 299,
             timeout=180, every=1)  # fmt: skip
    [record] = failure_records(dead, 1)
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] >= 3
    assert record["responseContext"]["functionError"] == "Unhandled"
    info = record["KafkaBatchInfo"]
    assert info["batchSize"] == 1
    assert info["topic"] == topic
    [failed] = [r for rs in record["requestPayload"]["records"].values() for r in rs]
    assert (failed["partition"], failed["offset"]) == (info["partition"], info["firstOffset"])
    assert base64.b64decode(failed["value"]).decode() == POISON
    assert POISON not in {v for _, _, v in mine()}
    print(f"\npoison record isolated after {record['requestContext']['approximateInvokeCount']} "
          f"invocations; {len(mine())} deliveries for 299 good records")  # fmt: skip
    kubectl("-n", namespace, "delete", "trigger", "poisoned", "--wait=true")


def test_an_unreachable_broker_shows_source_reachable_false_with_the_reason(
    namespace: str, image: str
) -> None:
    deploy_function(namespace, "nobroker", image, at_zero=False)
    trigger(namespace, "nobroker", "nobroker", {
        "kafka": {"bootstrapServers": [f"{NODE}:1"], "topic": "nowhere"},
    })  # fmt: skip

    def failed() -> dict[str, Any] | None:
        cond = condition(namespace, "nobroker", "SourceReachable")
        return cond if cond and cond["status"] == "False" else None

    cond = wait_for("SourceReachable=False", failed, timeout=90, every=1)
    print(f"\nSourceReachable: {cond['reason']}: {cond['message']}")
    assert cond["reason"] == "ConnectionFailed"
    assert f"{NODE}:1" in cond["message"]
    ready = condition(namespace, "nobroker", "Ready")
    assert ready is not None
    assert ready["status"] == "False"
    kubectl("-n", namespace, "delete", "trigger", "nobroker", "--wait=true")


def refused_naming_the_secret(
    kfn: str, namespace: str, trigger_name: str, secret: str, *, hidden: list[str]
) -> dict[str, Any]:
    """Waits for the Trigger's SourceReachable=False naming ``secret``, and checks that no
    ``hidden`` value shows in the Triggers, the Events or the stream worker's log."""

    def refused() -> dict[str, Any] | None:
        cond = condition(namespace, trigger_name, "SourceReachable")
        return cond if cond and cond["status"] == "False" else None

    cond = wait_for(f"SourceReachable=False for {trigger_name}", refused, timeout=120, every=1)
    print(f"\nSourceReachable: {cond['reason']}: {cond['message']}")
    assert cond["reason"] == "ConnectionFailed"
    assert f"refused the credentials of Secret {namespace}/{secret}" in cond["message"]
    seen = json.dumps(kubectl_json("-n", namespace, "get", "triggers"))
    seen += kubectl("-n", namespace, "get", "events", "-o", "json")
    seen += kubectl("-n", kfn, "logs", "deployment/kfn-stream", "--tail=-1")
    for value in hidden:
        assert value not in seen, "a credential shows in status, events or logs"
    return cond


@pytest.fixture(scope="module")
def secured_kafka(
    cluster: pathlib.Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[secured.Kafka]:
    with secured.kafka_broker(tmp_path_factory.mktemp("secured-kafka")) as broker:
        yield broker


def test_a_scram_secured_broker_is_read_with_the_secrets_credentials_which_never_show(
    kfn: str, namespace: str, image: str, sink: Sink, secured_kafka: secured.Kafka
) -> None:
    topic = f"secured-{uuid.uuid4().hex[:8]}"
    admin_client = admin_.AdminClient(secured_kafka.client())
    for future in admin_client.create_topics([admin_.NewTopic(topic, 2, 1)]).values():
        future.result(30)
    values = [f"sasl-{i}" for i in range(200)]
    producer = confluent_kafka.Producer(secured_kafka.client(**{"linger.ms": "10"}))
    for index, value in enumerate(values):
        producer.produce(topic, value.encode(), key=str(index).encode())
    assert producer.flush(60) == 0
    wrong = secrets.token_urlsafe(18)
    for name, password in (("kafka-scram", secured_kafka.password), ("kafka-wrong", wrong)):
        kubectl("-n", namespace, "create", "secret", "generic", name,
                f"--from-literal=username={secured_kafka.user}",
                f"--from-literal=password={password}",
                f"--from-literal=mechanism={secured.MECHANISM}")  # fmt: skip
        kubectl("-n", namespace, "annotate", "secret", name,
                f"kfn.dev/allowed-endpoints={secured_kafka.bootstrap}")  # fmt: skip
    deploy_function(namespace, "secured", image, at_zero=False)
    source = {"bootstrapServers": [secured_kafka.bootstrap], "topic": topic}
    trigger(namespace, "secured", "secured", {
        "kafka": source, "startingPosition": "Earliest", "batchSize": 50,
        "credentialsSecretRef": {"name": "kafka-scram"},
    })  # fmt: skip
    trigger(namespace, "refused", "secured", {
        "kafka": source, "startingPosition": "Earliest",
        "credentialsSecretRef": {"name": "kafka-wrong"},
    })  # fmt: skip

    def mine() -> list[tuple[int, int, str]]:
        return [r for r in sink.records() if r[2].startswith("sasl-")]

    wait_for("the 200 records of the secured topic", lambda: len({v for *_, v in mine()}) >= 200,
             timeout=180, every=0.5)  # fmt: skip
    check_order(mine(), values)

    cond = refused_naming_the_secret(kfn, namespace, "refused", "kafka-wrong",
                                     hidden=[secured_kafka.password, wrong])  # fmt: skip
    assert "authentication" in cond["message"].lower()
    for name in ("secured", "refused"):
        kubectl("-n", namespace, "delete", "trigger", name, "--wait=true")
