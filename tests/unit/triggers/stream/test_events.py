"""The events and failure records a stream Trigger sends, in Lambda's shapes."""

from __future__ import annotations

import base64
import datetime
import json
import uuid

from kfn import retry
from kfn.triggers import failure
from kfn.triggers.stream import batching, events


def kafka_records() -> list[batching.Record[events.KafkaRecord]]:
    raws = [
        events.KafkaRecord("orders", 2, 15, 1545084650987, "CREATE_TIME", b"k1", b"hello",
                           (("trace", b"ab"),)),
        events.KafkaRecord("orders", 2, 16, 1545084650990, "LOG_APPEND_TIME", None, b"\x00\xff"),
    ]  # fmt: skip
    return [batching.Record(r.offset, r.timestamp / 1000, 5, r) for r in raws]


def test_a_kafka_event_groups_the_records_under_topic_dash_partition() -> None:
    event = events.kafka_event(kafka_records(), ["b1:9092", "b2:9092"])
    assert event["eventSource"] == "SelfManagedKafka"
    assert event["bootstrapServers"] == "b1:9092,b2:9092"
    assert list(event["records"]) == ["orders-2"]
    first, second = event["records"]["orders-2"]
    assert first == {
        "topic": "orders",
        "partition": 2,
        "offset": 15,
        "timestamp": 1545084650987,
        "timestampType": "CREATE_TIME",
        "key": base64.b64encode(b"k1").decode(),
        "value": base64.b64encode(b"hello").decode(),
        "headers": [{"trace": [97, 98]}],
    }
    assert second["key"] is None
    assert base64.b64decode(second["value"]) == b"\x00\xff"
    assert second["headers"] == []


def test_an_event_encodes_to_compact_json_that_decodes_back() -> None:
    event = events.kafka_event(kafka_records(), ["b:9092"])
    assert json.loads(events.encode(event)) == event


def test_a_nats_event_lists_the_messages_with_sequence_and_millisecond_time() -> None:
    raw = events.NatsRecord("orders.eu", 42, 1_700_000_000_123_456_789, b"{}", (("a", "b"),))
    event = events.nats_event([batching.Record(42, 1.7e9, 2, raw)], ["nats://n:4222"], "ORDERS")
    assert event == {
        "eventSource": "kfn:nats",
        "servers": "nats://n:4222",
        "stream": "ORDERS",
        "records": [
            {"subject": "orders.eu", "sequence": 42, "timestamp": 1_700_000_000_123,
             "data": base64.b64encode(b"{}").decode(), "headers": {"a": "b"}},
        ],
    }  # fmt: skip


def test_a_failure_record_names_the_batch_and_carries_exactly_its_records() -> None:
    records = kafka_records()
    payload = events.encode(events.kafka_event(records, ["b:9092"]))
    record = failure.failure_record(
        failure.Target("shop", "orders-fn", "orders", "stream"),
        request_id="r1",
        payload=payload,
        condition="RetriesExhausted",
        attempts=3,
        outcome=retry.Outcome(200, b'{"errorMessage":"boom"}', function_error=True),
        now=datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC),
        extra={"KafkaBatchInfo": events.kafka_batch_info(records, ["b:9092"])},
    )
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["KafkaBatchInfo"] == {
        "batchSize": 2, "topic": "orders", "partition": 2, "firstOffset": 15, "lastOffset": 16,
        "firstRecordTimestamp": 1545084650987, "lastRecordTimestamp": 1545084650990,
        "bootstrapServers": "b:9092",
    }  # fmt: skip
    offsets = [r["offset"] for r in record["requestPayload"]["records"]["orders-2"]]
    assert offsets == [15, 16]


def test_request_ids_differ_per_attempt_and_per_records() -> None:
    ids = {
        events.request_id("0123456789", 1, 10, 19, 1),
        events.request_id("0123456789", 1, 10, 19, 2),
        events.request_id("0123456789", 1, 10, 14, 1),
        events.request_id("0123456789", 2, 10, 19, 1),
    }
    assert len(ids) == 4


def test_a_kafka_event_is_encoded_directly_to_the_same_bytes_as_its_dict() -> None:
    raws = [
        events.KafkaRecord("orders", 2, 15, 1545084650987, "CREATE_TIME", b"k1", b"hello",
                           (("trace", b"ab"), ("empty", None))),
        events.KafkaRecord("orders", 2, 16, 1545084650990, "LOG_APPEND_TIME", None, None),
        events.KafkaRecord("b\u00e4nk \"q\"", 0, 7, -1, "NO_TIMESTAMP_TYPE", b"", b"\x00\xff\xfe",
                           (("caf\u00e9", b"\x00"),)),
        events.KafkaRecord("orders", 3, 1, 1545084650991, "CREATE_TIME", b"k", b"{}"),
    ]  # fmt: skip
    records = [batching.Record(r.offset, 0.0, 5, r) for r in raws]
    servers = ["b1:9092", "b2:9092"]
    expected = events.encode(events.kafka_event(records, servers))
    assert events.encode_kafka_event(records, servers) == expected
    assert events.encode_kafka_event(records[:1], servers) == events.encode(
        events.kafka_event(records[:1], servers)
    )


def test_a_request_id_is_a_uuid_derived_again_for_the_same_batch_and_attempt() -> None:
    first = events.request_id("0123456789", 1, 10, 19, 1)
    assert uuid.UUID(first).version == 5
    assert events.request_id("0123456789", 1, 10, 19, 1) == first
