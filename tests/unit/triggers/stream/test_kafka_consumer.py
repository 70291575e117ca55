"""The Kafka consumer's account of a broker that refuses it (no broker needed)."""

from __future__ import annotations

import confluent_kafka

from kfn.triggers import invoke, onfailure
from kfn.triggers import status as status_
from kfn.triggers.stream import kafka, source, worker
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
