"""The test events are exactly what kfn's own senders write for the same invocation, and the
``events`` command lists and prints them."""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import pytest
import yaml
from kfn_runtime import events as runtime_events

from kfn.cli import events
from kfn.triggers.bucket import events as bucket_events
from kfn.triggers.cron import schedule
from kfn.triggers.stream import batching
from kfn.triggers.stream import events as stream_events

from .conftest import Run


def test_the_apigw_event_is_the_runtimes_event_for_the_same_request() -> None:
    sample = events.get("apigw")
    context = sample["requestContext"]
    request = runtime_events.HttpRequest(
        "GET", "/hello?name=kfn", "HTTP/1.1", list(sample["headers"].items()), b"", "10.1.2.3"
    )

    built = runtime_events.to_event(
        request, request_id=context["requestId"], now_ms=context["timeEpoch"], api_id="hello"
    )

    assert built == sample


def test_the_s3_event_is_the_bucket_triggers_record_of_the_same_upload() -> None:
    sample = events.get("s3")
    record = sample["Records"][0]
    upload = bucket_events.ObjectEvent(
        bucket="photos",
        key="uploads/holiday 2026.jpg",
        name=bucket_events.CREATED_PUT,
        time=datetime.datetime(2026, 3, 12, 19, 3, 58, tzinfo=datetime.UTC),
        size=1024,
        etag=record["s3"]["object"]["eTag"],
        sequencer=record["s3"]["object"]["sequencer"],
        source_ip="10.244.0.1",
        request_id=record["responseElements"]["x-amz-request-id"],
        host_id=record["responseElements"]["x-amz-id-2"],
    )

    built = bucket_events.record(upload, configuration_id="thumbnails", region="local")

    assert sample == {"Records": [built]}


def test_the_kafka_event_is_the_stream_triggers_event_of_the_same_records() -> None:
    sample = events.get("kafka")
    records = [
        batching.Record(
            position=r["offset"],
            time=r["timestamp"] / 1000,
            size=0,
            raw=stream_events.KafkaRecord(
                topic=r["topic"],
                partition=r["partition"],
                offset=r["offset"],
                timestamp=r["timestamp"],
                timestamp_type=r["timestampType"],
                key=base64.b64decode(r["key"]),
                value=base64.b64decode(r["value"]),
                headers=tuple((k, bytes(v)) for h in r["headers"] for k, v in h.items()),
            ),
        )
        for r in sample["records"]["orders-0"]
    ]

    built = stream_events.kafka_event(records, ["kafka.default.svc:9092"])

    assert built == sample
    order = json.loads(base64.b64decode(sample["records"]["orders-0"][0]["value"]))
    assert order["id"] == "o-1001"


def test_the_schedule_event_is_the_cron_triggers_event_of_the_same_tick() -> None:
    built = schedule.scheduled_event(
        payload=None,
        tick=datetime.datetime(2026, 3, 12, 7, 0, tzinfo=datetime.UTC),
        trigger_uid="3f0c7b9e-2d4a-4c1e-9b8f-6a5d4e3c2b1a",
        namespace="default",
        name="report",
        region="local",
    )

    assert built == events.get("schedule")


def test_a_sample_handed_out_cannot_change_the_next_one() -> None:
    events.get("s3")["Records"].clear()
    events.samples()[0].event.clear()

    assert events.get("s3")["Records"]
    assert events.samples()[0].event


def test_events_lists_every_event_in_a_table(kfn: Run) -> None:
    result = kfn("events")

    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].split() == ["NAME", "DESCRIPTION"]
    assert [line.split()[0] for line in lines[1:]] == ["apigw", "s3", "kafka", "schedule"]


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_events_lists_names_and_descriptions_as_json_or_yaml(kfn: Run, fmt: str) -> None:
    result = kfn("events", "-o", fmt)

    listed: list[dict[str, Any]] = yaml.safe_load(result.out)
    assert [item["name"] for item in listed] == list(events.NAMES)
    assert all(item["description"] for item in listed)


@pytest.mark.parametrize("name", events.NAMES)
def test_each_event_prints_as_json_to_pipe_and_as_yaml_on_request(kfn: Run, name: str) -> None:
    as_json = kfn("events", name)
    as_yaml = kfn("events", name, "-o", "yaml")

    assert as_json.code == as_yaml.code == 0
    assert json.loads(as_json.out) == events.get(name) == yaml.safe_load(as_yaml.out)


def test_an_unknown_event_is_an_error_naming_the_ones_there_are(kfn: Run) -> None:
    result = kfn("events", "sqs")

    assert result.code == 1
    assert (
        result.err == 'error: there is no test event "sqs"; there are: apigw, s3, kafka, schedule\n'
    )
