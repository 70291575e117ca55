"""The events a stream Trigger sends: Lambda's shapes, built from plain records (pure).

* :func:`kafka_event`: Lambda's self-managed Kafka event, records grouped under
  ``"<topic>-<partition>"``, key and value base64, header values as lists of byte values.
  :func:`encode_kafka_event` writes the same event's JSON (byte for byte
  ``encode(kafka_event(...))``) straight from the records: it is built for every invocation,
  and skipping the per-record dicts and the generic encoder makes it several times cheaper,
  which is a large share of the worker's own time per batch.
* :func:`nats_event`: the same idea for JetStream (``eventSource: "kfn:nats"``).
* :func:`kafka_batch_info` / :func:`nats_batch_info`: the coordinates of records given up
  (retries exhausted or too old), added to Lambda's on-failure record
  (:func:`kfn.triggers.failure.failure_record`), whose ``requestPayload`` is the event of
  exactly those records, so nothing is lost.

The ``itemIdentifier`` a handler reports in ``batchItemFailures`` is the record's offset
(Kafka) or stream sequence (JetStream), as a string.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import uuid
from collections.abc import Sequence
from typing import Any, Final, Literal

from kfn.triggers.stream import batching

_STREAM_IDS: Final = uuid.UUID("6f1d2a57-6b1e-5c34-9a0e-2f3c1d0b7e41")
"""The namespace of stream invocations' request ids (:func:`request_id`)."""

KAFKA_EVENT_SOURCE: Final = "SelfManagedKafka"
NATS_EVENT_SOURCE: Final = "kfn:nats"

TimestampType = Literal["CREATE_TIME", "LOG_APPEND_TIME", "NO_TIMESTAMP_TYPE"]


@dataclasses.dataclass(frozen=True)
class KafkaRecord:
    """A Kafka record, copied out of the client's message."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: TimestampType
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


@dataclasses.dataclass(frozen=True)
class NatsRecord:
    """A JetStream message, copied out of the client's message."""

    subject: str
    sequence: int
    #: Nanoseconds since the epoch, as JetStream stores it.
    timestamp_ns: int
    data: bytes
    headers: tuple[tuple[str, str], ...] = ()


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def kafka_record(record: KafkaRecord) -> dict[str, Any]:
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "timestampType": record.timestamp_type,
        "key": b64(record.key),
        "value": b64(record.value) if record.value is not None else "",
        "headers": [{name: list(value or b"")} for name, value in record.headers],
    }


def kafka_event(
    records: Sequence[batching.Record[KafkaRecord]], bootstrap_servers: Sequence[str]
) -> dict[str, Any]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        raw = record.raw
        grouped.setdefault(f"{raw.topic}-{raw.partition}", []).append(kafka_record(raw))
    return {
        "eventSource": KAFKA_EVENT_SOURCE,
        "bootstrapServers": ",".join(bootstrap_servers),
        "records": grouped,
    }


def encode_kafka_event(
    records: Sequence[batching.Record[KafkaRecord]], bootstrap_servers: Sequence[str]
) -> bytes:
    """``encode(kafka_event(records, bootstrap_servers))``, without building it first.

    Base64 needs no JSON escaping and numbers are written as ``json`` writes them, so only
    the names (topic, header names, servers) go through the JSON encoder, once each.
    """
    groups: dict[tuple[str, int], list[str]] = {}
    for record in records:
        raw = record.raw
        group = groups.get((raw.topic, raw.partition))
        if group is None:
            # The first item of each group is the record prefix its records share.
            head = f'{{"topic":{_json(raw.topic)},"partition":{raw.partition},"offset":'
            group = groups[raw.topic, raw.partition] = [head]
        key = raw.key
        value = raw.value
        group.append(
            f'{group[0]}{raw.offset},"timestamp":{raw.timestamp},'
            f'"timestampType":"{raw.timestamp_type}",'
            f'"key":{"null" if key is None else _quoted_b64(key)},'
            f'"value":"{"" if value is None else _b64(value)}",'
            f'"headers":{_headers_json(raw.headers)}}}'
        )
    body = ",".join(
        f"{_json(f'{topic}-{partition}')}:[{','.join(group[1:])}]"
        for (topic, partition), group in groups.items()
    )
    return (
        f'{{"eventSource":{_json(KAFKA_EVENT_SOURCE)},'
        f'"bootstrapServers":{_json(",".join(bootstrap_servers))},"records":{{{body}}}}}'
    ).encode()


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _quoted_b64(data: bytes) -> str:
    return f'"{_b64(data)}"'


def _headers_json(headers: tuple[tuple[str, bytes | None], ...]) -> str:
    if not headers:
        return "[]"
    return _json([{name: list(value or b"")} for name, value in headers])


def nats_record(record: NatsRecord) -> dict[str, Any]:
    return {
        "subject": record.subject,
        "sequence": record.sequence,
        "timestamp": record.timestamp_ns // 1_000_000,
        "data": b64(record.data),
        "headers": dict(record.headers),
    }


def nats_event(
    records: Sequence[batching.Record[NatsRecord]], servers: Sequence[str], stream: str
) -> dict[str, Any]:
    return {
        "eventSource": NATS_EVENT_SOURCE,
        "servers": ",".join(servers),
        "stream": stream,
        "records": [nats_record(r.raw) for r in records],
    }


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def kafka_batch_info(
    records: Sequence[batching.Record[KafkaRecord]], bootstrap_servers: Sequence[str]
) -> dict[str, Any]:
    """``KafkaBatchInfo`` of a failure record: where the given-up records are (one
    partition, ``records`` not empty), as in Lambda's Kafka on-failure records."""
    first, last = records[0].raw, records[-1].raw
    return {
        "batchSize": len(records),
        "topic": first.topic,
        "partition": first.partition,
        "firstOffset": first.offset,
        "lastOffset": last.offset,
        "firstRecordTimestamp": first.timestamp,
        "lastRecordTimestamp": last.timestamp,
        "bootstrapServers": ",".join(bootstrap_servers),
    }


def nats_batch_info(
    records: Sequence[batching.Record[NatsRecord]], servers: Sequence[str], stream: str
) -> dict[str, Any]:
    """``NatsBatchInfo`` of a failure record (``records`` not empty)."""
    return {
        "batchSize": len(records),
        "stream": stream,
        "firstSequence": records[0].raw.sequence,
        "lastSequence": records[-1].raw.sequence,
        "servers": ",".join(servers),
    }


def request_id(uid: str, partition: int, first: int, last: int, attempt: int) -> str:
    """The id of one invocation, derived from the Trigger, the records and the attempt, so
    logs of a batch's retries (and of its redelivery after a restart) line up: a UUID, as
    Lambda's request ids are (name-based, version 5, so that it can be derived again)."""
    return str(uuid.uuid5(_STREAM_IDS, f"{uid}/{partition}/{first}/{last}/{attempt}"))
