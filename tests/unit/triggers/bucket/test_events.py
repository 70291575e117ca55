"""Reading notifications as stores send them, matching Triggers, and the event a handler gets."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kfn.api import trigger as trigger_api
from kfn.triggers.bucket import events
from tests.unit.triggers.bucket.helpers import notification

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)

VERSITYGW = notification(
    "in/a%20b.jpg",
    bucket="photos",
    size=1234,
    etag="9b2cf535f27731c974343645a3985328",
    sequencer="0055AED6DCD90281E5",
)

MINIO = {
    "EventName": "s3:ObjectRemoved:Delete",
    "Key": "photos/in%2Fx+y.png",
    "Records": [
        {
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "awsRegion": "",
            "eventTime": "2026-03-01T11:59:59.123Z",
            "eventName": "s3:ObjectRemoved:Delete",
            "userIdentity": {"principalId": "minioadmin"},
            "requestParameters": {"principalId": "minioadmin", "sourceIPAddress": "10.0.0.1"},
            "responseElements": {"x-amz-request-id": "17C", "x-minio-origin-endpoint": "x"},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "Config",
                "bucket": {"name": "photos", "ownerIdentity": {"principalId": "m"}, "arn": ""},
                "object": {"key": "in%2Fx+y.png", "sequencer": "17C2"},
            },
        }
    ],
}

CEPH = {
    "Records": [
        {
            "eventVersion": "2.2",
            "eventSource": "ceph:s3",
            "awsRegion": "default",
            "eventTime": "2026-03-01T11:59:57.000000Z",
            "eventName": "ObjectCreated:CompleteMultipartUpload",
            "s3": {
                "bucket": {"name": "photos"},
                "object": {"key": "in/100%+1.bin", "size": "42", "eTag": "abc-2"},
            },
        }
    ]
}


def bucket(**fields: Any) -> trigger_api.BucketTrigger:
    base: dict[str, Any] = {
        "endpoint": "http://store:7070",
        "bucket": "photos",
        "events": ["s3:ObjectCreated:*"],
    }
    return trigger_api.BucketTrigger.model_validate(base | fields)


# --- reading -----------------------------------------------------------------------------------


def test_versitygw_notifications_are_read_with_the_decoded_key_and_unquoted_etag() -> None:
    [change] = events.parse_notification(VERSITYGW, NOW)
    assert change.bucket == "photos"
    assert change.key == "in/a b.jpg"
    assert change.name == "ObjectCreated:Put"
    assert change.size == 1234
    assert change.etag == "9b2cf535f27731c974343645a3985328"
    assert change.principal == "admin"
    assert change.time == datetime.datetime(2026, 3, 1, 11, 59, 58, tzinfo=datetime.UTC)


def test_minio_keys_are_query_unescaped_and_its_event_name_loses_the_prefix() -> None:
    [change] = events.parse_notification(MINIO, NOW)
    assert change.key == "in/x y.png"
    assert change.name == "ObjectRemoved:Delete"
    assert change.time.microsecond == 123000


def test_ceph_keys_are_taken_as_stored_and_string_sizes_are_read() -> None:
    [change] = events.parse_notification(CEPH, NOW)
    assert change.key == "in/100%+1.bin"
    assert change.name == "ObjectCreated:CompleteMultipartUpload"
    assert change.size == 42


def test_versitygw_delete_objects_is_reported_as_aws_spells_a_delete() -> None:
    assert events.event_name("s3:ObjectRemoved:DeleteObjects") == "ObjectRemoved:Delete"
    assert events.event_name("ObjectCreated:Copy") == "ObjectCreated:Copy"


@pytest.mark.parametrize(
    "payload",
    [
        {"Service": "S3", "Event": "s3:TestEvent", "Time": "x", "Bucket": "Test-Bucket"},
        {"Event": "s3:TestEvent"},
    ],
)
def test_test_events_carry_no_changes(payload: dict[str, Any]) -> None:
    assert events.is_test_event(payload)
    assert events.parse_notification(payload, NOW) == []


@pytest.mark.parametrize(
    "payload",
    [[], {"Records": "x"}, {"Records": [{"eventName": "s3:ObjectCreated:Put"}]}, {"foo": 1}],
)
def test_bodies_that_are_no_notification_are_refused(payload: Any) -> None:
    with pytest.raises(events.NotificationError):
        events.parse_notification(payload, NOW)


def test_a_missing_event_time_is_the_time_received() -> None:
    record = dict(VERSITYGW["Records"][0])
    record["eventTime"] = "yesterday"
    [change] = events.parse_notification({"Records": [record]}, NOW)
    assert change.time == NOW


# --- matching ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selected", "name", "expected"),
    [
        (["s3:ObjectCreated:*"], "ObjectCreated:Put", True),
        (["s3:ObjectCreated:*"], "ObjectCreated:CompleteMultipartUpload", True),
        (["s3:ObjectCreated:Put"], "ObjectCreated:Copy", False),
        (["s3:ObjectCreated:*"], "ObjectRemoved:Delete", False),
        (["s3:ObjectCreated:Put", "s3:ObjectRemoved:*"], "ObjectRemoved:DeleteMarkerCreated", True),
        (["s3:ObjectRemoved:Delete"], "ObjectRemoved:Delete", True),
    ],
)
def test_event_types_match_exactly_or_by_wildcard(
    selected: list[str], name: str, expected: bool
) -> None:
    assert events.event_selected(selected, name) is expected


def test_prefix_and_suffix_are_matched_on_the_decoded_key() -> None:
    spec = bucket(filter={"prefix": "in/", "suffix": ".jpg"})
    [change] = events.parse_notification(VERSITYGW, NOW)
    assert events.matches(spec, change)
    assert not events.matches(bucket(filter={"prefix": "out/"}), change)
    assert not events.matches(bucket(filter={"suffix": ".png"}), change)
    assert not events.matches(bucket(bucket="other"), change)
    assert not events.matches(bucket(events=["s3:ObjectRemoved:*"]), change)


# --- the event handed to the function ----------------------------------------------------------


def test_the_record_has_aws_shape_with_the_trigger_as_configuration_id() -> None:
    [change] = events.parse_notification(VERSITYGW, NOW)
    record = events.record(change, configuration_id="thumbs", region="eu-west-1")
    assert record["eventVersion"] == "2.1"
    assert record["eventSource"] == "aws:s3"
    assert record["awsRegion"] == "us-east-1"
    assert record["eventTime"] == "2026-03-01T11:59:58.000Z"
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["userIdentity"] == {"principalId": "admin"}
    assert record["requestParameters"] == {"sourceIPAddress": "10.244.0.7"}
    assert record["responseElements"] == {"x-amz-request-id": "r1", "x-amz-id-2": "h1"}
    s3 = record["s3"]
    assert s3["s3SchemaVersion"] == "1.0"
    assert s3["configurationId"] == "thumbs"
    assert s3["bucket"] == {
        "name": "photos",
        "ownerIdentity": {"principalId": "admin"},
        "arn": "arn:aws:s3:::photos",
    }
    assert s3["object"] == {
        "key": "in/a+b.jpg",
        "size": 1234,
        "eTag": "9b2cf535f27731c974343645a3985328",
        "sequencer": "0055AED6DCD90281E5",
    }


def test_removals_carry_no_size_or_etag_and_a_store_without_region_gets_the_triggers() -> None:
    [change] = events.parse_notification(MINIO, NOW)
    record = events.record(change, configuration_id="t", region="eu-west-1")
    assert record["awsRegion"] == "eu-west-1"
    assert record["s3"]["object"] == {"key": "in/x+y.png", "sequencer": "17C2"}


@pytest.mark.parametrize(
    ("key", "encoded"),
    [("a b/c.jpg", "a+b/c.jpg"), ("x+y=z", "x%2By%3Dz"), ("ü/€.txt", "%C3%BC/%E2%82%AC.txt")],
)
def test_keys_are_url_encoded_as_aws_does(key: str, encoded: str) -> None:
    assert events.encode_key(key) == encoded


def test_a_resend_of_a_change_has_the_same_request_id_and_other_changes_another() -> None:
    [change] = events.parse_notification(VERSITYGW, NOW)
    again = events.parse_notification(VERSITYGW, NOW + datetime.timedelta(seconds=5))[0]
    uid = "5e0c"
    assert events.request_id(uid, change) == events.request_id(uid, again)
    other = events.ObjectEvent(**{**change.__dict__, "sequencer": "0055AED6DCD90281E6"})
    assert events.request_id(uid, other) != events.request_id(uid, change)
    assert events.request_id("other-trigger", change) != events.request_id(uid, change)


def test_a_polled_change_found_again_later_keeps_its_request_id() -> None:
    first = events.polled("b", "k", "ObjectCreated:Put", now=NOW, index=0, etag="e1")
    later = events.polled(
        "b", "k", "ObjectCreated:Put", now=NOW.replace(hour=13), index=7, etag="e1"
    )
    changed = events.polled("b", "k", "ObjectCreated:Put", now=NOW, index=0, etag="e2")
    assert first.sequencer != later.sequencer
    assert events.request_id("u", first, polled=True) == events.request_id("u", later, polled=True)
    assert events.request_id("u", first, polled=True) != events.request_id(
        "u", changed, polled=True
    )


def test_polled_sequencers_order_by_time_then_listing_position() -> None:
    a = events.sequencer_of(NOW, 0)
    b = events.sequencer_of(NOW, 1)
    c = events.sequencer_of(NOW + datetime.timedelta(microseconds=1), 0)
    assert a < b < c
    assert len(a) == len(c) == 16
