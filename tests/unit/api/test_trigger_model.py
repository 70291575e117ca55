"""The Trigger model: one kind per Trigger, Lambda's retry semantics, schedule shapes."""

from __future__ import annotations

import re
from typing import Any

import pydantic
import pytest

from kfn.api import crdgen, trigger

KAFKA = {"bootstrapServers": ["kafka:9092"], "topic": "orders"}


def _trigger(**spec: Any) -> trigger.Trigger:
    return trigger.Trigger.model_validate(
        {"metadata": {"name": "t"}, "spec": {"functionRef": {"name": "hello"}, **spec}}
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"http": {}}, trigger.TriggerType.HTTP),
        ({"cron": {"schedule": "@hourly"}}, trigger.TriggerType.CRON),
        ({"stream": {"kafka": KAFKA}}, trigger.TriggerType.STREAM),
        (
            {
                "bucket": {
                    "endpoint": "http://s3:9000",
                    "bucket": "uploads",
                    "events": ["s3:ObjectRemoved:*"],
                }
            },
            trigger.TriggerType.BUCKET,
        ),
    ],
)
def test_type_names_the_one_source_that_is_set(
    spec: dict[str, Any], expected: trigger.TriggerType
) -> None:
    assert _trigger(**spec).spec.type is expected


def test_stream_defaults_follow_lambda() -> None:
    stream = _trigger(stream={"kafka": KAFKA}).spec.stream
    assert stream is not None
    assert stream.batch_size == 100
    assert stream.max_retries == -1
    assert stream.max_record_age == trigger.INFINITE
    assert stream.starting_position == "Latest"
    assert stream.bisect_batch_on_error is False


def test_async_delivery_defaults_follow_lambda() -> None:
    cron = _trigger(cron={"schedule": "*/5 * * * *"}).spec.cron
    assert cron is not None
    assert cron.delivery.max_retries == 2
    assert cron.delivery.max_event_age == "6h"
    assert cron.time_zone == "UTC"
    assert cron.missed_ticks.policy == "Skip"


@pytest.mark.parametrize(
    "schedule",
    [
        "*/5 * * * *",
        "0 9 * * MON-FRI",
        "0,30 8-18 1 JAN,JUL ?",
        "rate(1 minute)",
        "rate(12 hours)",
        "@every 10s",
        "@every 1m30s",
        "@daily",
    ],
)
def test_schedules_in_every_supported_shape_are_accepted(schedule: str) -> None:
    assert _trigger(cron={"schedule": schedule}).spec.cron is not None


@pytest.mark.parametrize(
    "schedule",
    ["* * * *", "* * * * * * *", "rate(5 weeks)", "rate(0 minutes)", "@every", "@sometimes"],
)
def test_schedules_in_other_shapes_are_refused(schedule: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        _trigger(cron={"schedule": schedule})


def test_every_below_one_second_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="at least 1s"):
        _trigger(cron={"schedule": "@every 999ms"})


@pytest.mark.parametrize(
    ("age", "ok"),
    [("-1", True), ("60s", True), ("168h", True), ("59s", False), ("169h", False), ("-2", False)],
)
def test_record_age_is_infinite_or_between_a_minute_and_a_week(age: str, ok: bool) -> None:
    stream = {"kafka": KAFKA, "maxRecordAge": age}
    if ok:
        assert _trigger(stream=stream).spec.stream is not None
    else:
        with pytest.raises(pydantic.ValidationError):
            _trigger(stream=stream)


def test_starting_timestamp_is_written_in_rfc3339() -> None:
    stream = {
        "kafka": KAFKA,
        "startingPosition": "AtTimestamp",
        "startingTimestamp": "2024-05-01T02:00:00+02:00",
    }
    spec = _trigger(stream=stream).spec
    dumped = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped["stream"]["startingTimestamp"] == "2024-05-01T00:00:00Z"


def test_duplicate_methods_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="Duplicate value"):
        _trigger(http={"methods": ["GET", "GET"]})


def test_an_http_trigger_is_public_unless_it_asks_for_a_service_account_token() -> None:
    public = _trigger(http={}).spec.http
    assert public is not None
    assert public.auth == "None"
    checked = _trigger(http={"auth": "ServiceAccountToken"}).spec.http
    assert checked is not None
    assert checked.auth == trigger.SERVICE_ACCOUNT_TOKEN
    for other in ("AWS_IAM", "none", "serviceAccountToken", None):
        with pytest.raises(pydantic.ValidationError):
            _trigger(http={"auth": other})


def test_the_crd_spells_http_auth_as_an_enum_with_its_default() -> None:
    schema = crdgen.trigger_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    auth = schema["properties"]["spec"]["properties"]["http"]["properties"]["auth"]
    assert auth["enum"] == ["None", "ServiceAccountToken"]
    assert auth["default"] == "None"


def test_payload_may_be_any_json() -> None:
    for payload in ({"a": [1, {"b": None}]}, [1, 2], "text", 3):
        cron = _trigger(cron={"schedule": "@hourly", "payload": payload}).spec.cron
        assert cron is not None
        assert cron.payload == payload


@pytest.mark.parametrize(
    ("prefix", "refusal"),
    [
        ("/", None),
        ("/api", None),
        ("/api/", None),
        ("/api/v1.2/..data", None),
        ("/a.b/.well-known", None),
        ("/_kfnx", None),
        ("/api/_kfn", None),
        ("/%20space", None),
        ("/a/../_kfn", "no '.' or '..' segments"),
        ("/..", "no '.' or '..' segments"),
        ("/./api", "no '.' or '..' segments"),
        ("/api/.", "no '.' or '..' segments"),
        ("/a/%2e%2E/b", "no '.' or '..' segments"),
        ("/a/.%2e", "no '.' or '..' segments"),
        ("/api//v1", "no empty segments"),
        ("//", "no empty segments"),
        ("/_kfn", "cannot be /_kfn or below it"),
        ("/_kfn/", "cannot be /_kfn or below it"),
        ("/_kfn/functions/ns/fn/invoke", "cannot be /_kfn or below it"),
        ("/%5Fkfn", "cannot be /_kfn or below it"),
        ("/_%6bf%6E/health", "cannot be /_kfn or below it"),
    ],
)
def test_path_prefixes_are_plain_paths_outside_kfns_own(prefix: str, refusal: str | None) -> None:
    if refusal is None:
        http = _trigger(http={"pathPrefix": prefix}).spec.http
        assert http is not None
        assert http.path_prefix == prefix
    else:
        with pytest.raises(pydantic.ValidationError, match=re.escape(refusal)):
            _trigger(http={"pathPrefix": prefix})


BUCKET = {"endpoint": "http://s3:9000", "bucket": "uploads", "events": ["s3:ObjectCreated:*"]}


@pytest.mark.parametrize(
    ("object_filter", "ok"),
    [
        ({"prefix": "uploads/", "suffix": ".jpg"}, True),
        ({"prefix": "a+b=c/", "suffix": "[1].txt"}, True),
        ({"suffix": "*.jpg"}, False),
        ({"prefix": "uploads/*"}, False),
        ({"prefix": "2024-??/"}, False),
    ],
)
def test_bucket_filters_are_literal(object_filter: dict[str, str], ok: bool) -> None:
    spec = {**BUCKET, "filter": object_filter}
    if ok:
        assert _trigger(bucket=spec).spec.bucket is not None
    else:
        with pytest.raises(pydantic.ValidationError, match="prefix and suffix are literal"):
            _trigger(bucket=spec)


@pytest.mark.parametrize(
    ("zone", "ok"),
    [
        ("UTC", True),
        ("Europe/Berlin", True),
        ("America/Argentina/ComodRivadavia", True),
        ("Antarctica/DumontDUrville", True),
        ("Etc/GMT+12", True),
        ("America/Argentina_Buenos_Aires", False),
        ("Europe/-Berlin", False),
        ("Etc/+2", False),
        ("Europe/../etc", False),
        ("Europe Berlin", False),
    ],
)
def test_time_zones_have_the_syntax_of_iana_names(zone: str, ok: bool) -> None:
    cron = {"schedule": "@hourly", "timeZone": zone}
    if ok:
        assert _trigger(cron=cron).spec.cron is not None
    else:
        with pytest.raises(pydantic.ValidationError, match="String should match pattern"):
            _trigger(cron=cron)


@pytest.mark.parametrize(
    ("qualifier", "invoked"),
    [(None, ""), ("$LATEST", ""), ("3", "3"), ("live", "live"), ("2024-blue", "2024-blue")],
)
def test_a_function_reference_invokes_its_qualifier_with_latest_as_none(
    qualifier: str | None, invoked: str
) -> None:
    ref = trigger.FunctionReference.model_validate({"name": "hello", "qualifier": qualifier})
    assert ref.target_qualifier == invoked


@pytest.mark.parametrize("qualifier", ["0", "03", "$latest", "live.1", "a b", ""])
def test_a_qualifier_that_is_no_version_number_or_alias_name_is_refused(qualifier: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="qualifier"):
        trigger.FunctionReference.model_validate({"name": "hello", "qualifier": qualifier})
