"""The Kafka consumer's account of a broker that refuses it, and of a Secret it may not send
(no broker needed)."""

from __future__ import annotations

import time
from typing import Any

import confluent_kafka
import pytest

from kfn import kube
from kfn.api import endpoints
from kfn.triggers import invoke, onfailure
from kfn.triggers import status as status_
from kfn.triggers.stream import budget as budget_
from kfn.triggers.stream import kafka, source, worker
from tests.unit.triggers.conftest import Listener
from tests.unit.triggers.stream.test_worker import trigger


def consumer() -> kafka.Consumer:
    wanted = worker.wanted_of(
        trigger("k", kafka={"bootstrapServers": ["k:9092"], "topic": "t"},
                credentialsSecretRef={"name": "kafka-creds"})
    )  # fmt: skip
    assert wanted is not None
    invoker = invoke.Invoker("http://127.0.0.1:9")
    return kafka.Consumer(
        wanted.target,
        source.Clients(invoker, onfailure.Destinations(invoker), status_.StatusWriter()),
    )


def test_a_refused_login_stays_the_reason_until_a_connection_succeeds() -> None:
    refused = confluent_kafka.KafkaError(
        confluent_kafka.KafkaError.SASL_AUTHENTICATION_FAILED, "Authentication failed"
    )
    down = confluent_kafka.KafkaError(
        confluent_kafka.KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"
    )
    kafka_consumer = consumer()
    try:
        kafka_consumer._on_error(refused)
        kafka_consumer._on_error(down)
        assert kafka_consumer.fatal_error is not None
        assert kafka_consumer.fatal_error.startswith(
            "brokers k:9092 refused the credentials of Secret ns/kafka-creds: "
        )
        kafka_consumer._reachable(True, "Connected", "consuming")
        kafka_consumer._on_error(down)
        assert kafka_consumer.fatal_error == "brokers k:9092: 1/1 brokers are down"
    finally:
        kafka_consumer.pool.shutdown()


KIB = 1024


def message(partition: int, offset: int, size: int) -> confluent_kafka.Message:
    return confluent_kafka.Message(
        topic="t", partition=partition, offset=offset, value=b"v" * size, timestamp=(1, 1000)
    )


def test_the_consumers_of_one_process_pause_together_past_its_byte_budget() -> None:
    """Two Triggers' consumers share a 1 MiB budget: neither's partitions reach their own
    bound, but together they hold more than the budget, so all pause; once records are let
    go and the process holds half, they fetch again. A long batching window keeps every
    record buffered (no batch is due), so only fetching is decided here."""
    budget = budget_.ByteBudget(1024 * KIB)
    consumers: list[tuple[kafka.Consumer, confluent_kafka.Consumer]] = []
    for name in ("a", "b"):
        wanted = worker.wanted_of(
            trigger(name, kafka={"bootstrapServers": ["127.0.0.1:9"], "topic": "t"},
                    batchSize=10000, maxBatchingWindow="300s")
        )  # fmt: skip
        assert wanted is not None
        invoker = invoke.Invoker("http://127.0.0.1:9")
        clients = source.Clients(
            invoker, onfailure.Destinations(invoker), status_.StatusWriter(), budget
        )
        ours = kafka.Consumer(wanted.target, clients)
        client = confluent_kafka.Consumer({"bootstrap.servers": "127.0.0.1:9", "group.id": name})
        client.assign([confluent_kafka.TopicPartition("t", n) for n in (0, 1)])
        ours.partitions = {n: kafka.Partition(n) for n in (0, 1)}
        consumers.append((ours, client))
    (a, _), (b, _) = consumers
    try:
        a._take([message(0, n, 200 * KIB) for n in range(4)], now=0.0)
        for ours, client in consumers:
            ours._dispatch(client, now=0.0)
        assert budget.held == 800 * KIB
        assert not any(p.paused for c, _ in consumers for p in c.partitions.values())

        b._take([message(1, n, 200 * KIB) for n in range(2)], now=0.0)
        for ours, client in consumers:
            ours._dispatch(client, now=0.0)
        assert budget.held == 1200 * KIB
        assert all(p.paused for c, _ in consumers for p in c.partitions.values())

        a._release([0], wait=0.0)  # a rebalance takes a's partition 0 and its records
        for ours, client in consumers:
            ours._dispatch(client, now=0.0)
        assert budget.held == 400 * KIB
        assert a.partitions[1].paused is False
        assert all(not p.paused for p in b.partitions.values())

        b.discharge()  # b ends: what it held goes back
        assert budget.held == 0
    finally:
        for ours, client in consumers:
            client.close()
            ours.pool.shutdown()


def test_a_kafka_trigger_aimed_at_a_foreign_broker_never_connects_with_a_refused_secret(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = kube.Secret(
        {"username": b"fn", "password": b"pw-of-team-a-4711"},
        {endpoints.ANNOTATION: "kafka-0.kafka.ns.svc:9092"},
    )
    monkeypatch.setattr(kube, "get_secret", lambda namespace, name: stored)
    wanted = worker.wanted_of(
        trigger("k", kafka={"bootstrapServers": [listener.address], "topic": "t"},
                credentialsSecretRef={"name": "kafka-creds"})
    )  # fmt: skip
    assert wanted is not None
    seen: list[status_.Verdict] = []

    class Verdicts(status_.StatusWriter):
        def set(self, key: Any, *, reachable: Any = None, **extra: Any) -> None:
            del key, extra
            if reachable is not None:
                seen.append(reachable)

    invoker = invoke.Invoker("http://127.0.0.1:9")
    kafka_consumer = kafka.Consumer(
        wanted.target, source.Clients(invoker, onfailure.Destinations(invoker), Verdicts())
    )
    kafka_consumer.start()
    try:
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        kafka_consumer.stop()
        kafka_consumer.join(15)
    assert not kafka_consumer.thread.is_alive()
    assert listener.seen() == (0, b"")
    [refused] = seen
    assert (refused.ok, refused.reason) == (False, "SecretNotAllowed")
    assert refused.message.startswith(
        f"Secret ns/kafka-creds does not allow {listener.address}; add it to the annotation "
        "kfn.dev/allowed-endpoints"
    )
