"""S3 event notifications: read what stores push, build what polling finds, match filters.

Everything here is pure. Stores disagree on details of the notification they send:

* AWS writes ``eventName`` without the ``s3:`` prefix (``ObjectCreated:Put``) and the key
  URL-encoded as a form value (a space is ``+``);
* MinIO adds ``s3:`` to ``eventName``, encodes the key with Go's ``url.QueryEscape``
  (``/`` becomes ``%2F``) and wraps the records with ``EventName`` and ``Key``;
* versitygw adds ``s3:``, sends the key as it appeared in the request path, reports
  DeleteObjects as its own ``s3:ObjectRemoved:DeleteObjects`` and quotes the eTag;
* Ceph RGW (``eventSource: ceph:s3``) sends the key as stored, not encoded.

:func:`parse_notification` turns any of them into :class:`ObjectEvent` (the raw key, the
AWS event name) and :func:`record` writes the one shape a handler written for Lambda
expects, so the same function works behind any store.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib import parse

from kfn.api import trigger as trigger_api

EVENT_VERSION: Final = "2.1"
SCHEMA_VERSION: Final = "1.0"
CREATED_PUT: Final = "ObjectCreated:Put"
REMOVED_DELETE: Final = "ObjectRemoved:Delete"
#: Event names some stores use that AWS spells differently.
_ALIASES: Final = {"ObjectRemoved:DeleteObjects": REMOVED_DELETE}
#: Sources whose keys arrive as stored rather than URL-encoded.
_RAW_KEY_SOURCES: Final = frozenset({"ceph:s3"})
#: Namespace of request ids: one id per (trigger, object change), stable across resends.
_ID_NAMESPACE: Final = uuid.UUID("7d0c2a8e-5b1e-4f57-9a53-6c2b8f1e4a10")


class NotificationError(ValueError):
    """The body is not an S3 event notification."""


@dataclasses.dataclass(frozen=True)
class ObjectEvent:
    """One object change, whatever reported it; ``key`` is the object's real key."""

    bucket: str
    key: str
    name: str
    time: datetime.datetime
    size: int = 0
    etag: str = ""
    version_id: str | None = None
    sequencer: str = ""
    principal: str = ""
    source_ip: str = ""
    request_id: str = ""
    host_id: str = ""
    region: str = ""


# --- reading pushed notifications --------------------------------------------------------------


def is_test_event(payload: Any) -> bool:
    """Whether the body is the test message stores send when notifications are configured
    (``{"Event": "s3:TestEvent", "Service": "S3", ...}``)."""
    if not isinstance(payload, Mapping) or "Records" in payload:
        return False
    return payload.get("Event") == "s3:TestEvent" or payload.get("Service") == "S3"


def event_name(name: str) -> str:
    """The AWS spelling of an event name: no ``s3:`` prefix, store-specific names mapped."""
    bare = name.removeprefix("s3:")
    return _ALIASES.get(bare, bare)


def parse_time(text: Any) -> datetime.datetime | None:
    """An RFC 3339 time in any of the spellings stores use, or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def format_time(value: datetime.datetime) -> str:
    """``eventTime`` as AWS writes it: UTC with milliseconds (``2026-01-01T10:00:00.000Z``)."""
    utc = value.astimezone(datetime.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def sequencer_of(value: datetime.datetime, index: int = 0) -> str:
    """A sequencer for an event a store did not number: hex, ordered by time then index."""
    nanos = int(value.timestamp() * 1_000_000) * 1000 + index % 1000
    return f"{nanos:016X}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _key_of(raw: str, source: str) -> str:
    return raw if source in _RAW_KEY_SOURCES else parse.unquote_plus(raw)


def _etag(value: Any) -> str:
    return _text(value).strip('"')


def _size(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return 0


def _record_event(record: Any, received: datetime.datetime) -> ObjectEvent:
    if not isinstance(record, Mapping):
        raise NotificationError("a record is not an object")
    s3 = record.get("s3")
    if not isinstance(s3, Mapping):
        raise NotificationError("a record has no s3 section")
    bucket = _mapping(s3.get("bucket"))
    obj = _mapping(s3.get("object"))
    name = _text(record.get("eventName"))
    bucket_name = _text(bucket.get("name"))
    raw_key = _text(obj.get("key"))
    if not name or not bucket_name or not raw_key:
        raise NotificationError("a record lacks eventName, the bucket name or the object key")
    identity = record.get("userIdentity")
    params = record.get("requestParameters")
    response = record.get("responseElements")
    version = obj.get("versionId")
    return ObjectEvent(
        bucket=bucket_name,
        key=_key_of(raw_key, _text(record.get("eventSource"))),
        name=event_name(name),
        time=parse_time(record.get("eventTime")) or received,
        size=_size(obj.get("size")),
        etag=_etag(obj.get("eTag")),
        version_id=version if isinstance(version, str) and version else None,
        sequencer=_text(obj.get("sequencer")),
        principal=_principal(identity),
        source_ip=_text(params.get("sourceIPAddress")) if isinstance(params, Mapping) else "",
        request_id=_text(response.get("x-amz-request-id")) if isinstance(response, Mapping) else "",
        host_id=_text(response.get("x-amz-id-2")) if isinstance(response, Mapping) else "",
        region=_text(record.get("awsRegion")),
    )


def _principal(identity: Any) -> str:
    if not isinstance(identity, Mapping):
        return ""
    # AWS spells it principalId; versitygw PrincipalId.
    return _text(identity.get("principalId") or identity.get("PrincipalId"))


def parse_notification(payload: Any, received: datetime.datetime) -> list[ObjectEvent]:
    """The object changes in a pushed notification body (empty for a test event).

    ``received`` stands in for a missing or unreadable ``eventTime``. Raises
    :class:`NotificationError` when the body is neither a notification nor a test event.
    """
    if is_test_event(payload):
        return []
    if not isinstance(payload, Mapping) or not isinstance(payload.get("Records"), list):
        raise NotificationError('the body has no "Records" list')
    return [_record_event(record, received) for record in payload["Records"]]


# --- matching ----------------------------------------------------------------------------------


def event_selected(selected: Iterable[str], name: str) -> bool:
    """Whether ``name`` (``ObjectCreated:Put``) is one of the selected event types
    (``s3:ObjectCreated:*``, ``s3:ObjectCreated:Put``, ...)."""
    for pattern in selected:
        bare = pattern.removeprefix("s3:")
        if bare == name or (bare.endswith(":*") and name.startswith(bare[:-1])):
            return True
    return False


def key_matches(object_filter: trigger_api.ObjectFilter | None, key: str) -> bool:
    """Whether the real (decoded) key passes the Trigger's prefix and suffix."""
    if object_filter is None:
        return True
    if object_filter.prefix and not key.startswith(object_filter.prefix):
        return False
    return not (object_filter.suffix and not key.endswith(object_filter.suffix))


def matches(spec: trigger_api.BucketTrigger, event: ObjectEvent) -> bool:
    """Whether the Trigger reports this change: same bucket, selected type, matching key."""
    return (
        event.bucket == spec.bucket
        and event_selected(spec.events, event.name)
        and key_matches(spec.filter, event.key)
    )


# --- the event handed to the function ------------------------------------------------------------


def encode_key(key: str) -> str:
    """The key as AWS puts it into notifications: form-encoded, ``/`` kept."""
    return parse.quote_plus(key, safe="/")


def record(event: ObjectEvent, *, configuration_id: str, region: str) -> dict[str, Any]:
    """One record in AWS's shape; ``configuration_id`` names the Trigger as AWS names the
    notification configuration."""
    obj: dict[str, Any] = {
        "key": encode_key(event.key),
        "size": event.size,
        "eTag": event.etag,
        "sequencer": event.sequencer or sequencer_of(event.time),
    }
    if event.version_id:
        obj["versionId"] = event.version_id
    if event.name.startswith("ObjectRemoved:"):
        # AWS reports no size or eTag for removals.
        del obj["size"], obj["eTag"]
    principal = event.principal or "kfn"
    return {
        "eventVersion": EVENT_VERSION,
        "eventSource": "aws:s3",
        "awsRegion": event.region or region,
        "eventTime": format_time(event.time),
        "eventName": event.name,
        "userIdentity": {"principalId": principal},
        "requestParameters": {"sourceIPAddress": event.source_ip},
        "responseElements": {
            "x-amz-request-id": event.request_id,
            "x-amz-id-2": event.host_id,
        },
        "s3": {
            "s3SchemaVersion": SCHEMA_VERSION,
            "configurationId": configuration_id,
            "bucket": {
                "name": event.bucket,
                "ownerIdentity": {"principalId": principal},
                "arn": f"arn:aws:s3:::{event.bucket}",
            },
            "object": obj,
        },
    }


def event_time_of(payload: bytes) -> datetime.datetime | None:
    """The ``eventTime`` of the first record of an event the function receives (one
    :func:`record` in ``Records``), None when it has none."""
    try:
        event = json.loads(payload)
    except ValueError:
        return None
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list) or not records or not isinstance(records[0], Mapping):
        return None
    return parse_time(records[0].get("eventTime"))


def request_id(trigger_uid: str, event: ObjectEvent, *, polled: bool = False) -> str:
    """The invocation's request id: the same for a resend of the same change, so a handler
    can drop duplicates, and different for every other change.

    A pushed change is told apart by the store's sequencer (the same content uploaded twice
    is two events); a polled one by its eTag alone, since a poller that restarts finds the
    same change again at another time.
    """
    order = "" if polled else (event.sequencer or format_time(event.time))
    identity = "\0".join(
        [trigger_uid, event.bucket, event.key, event.name, event.etag, event.version_id or "",
         order]
    )  # fmt: skip
    return str(uuid.uuid5(_ID_NAMESPACE, hashlib.sha256(identity.encode()).hexdigest()))


# --- changes found by polling ---------------------------------------------------------------------


def polled(
    bucket: str,
    key: str,
    name: str,
    *,
    now: datetime.datetime,
    index: int,
    size: int = 0,
    etag: str = "",
    region: str = "",
) -> ObjectEvent:
    """A change that polling found; ``index`` orders the sequencers of one listing."""
    return ObjectEvent(
        bucket=bucket,
        key=key,
        name=name,
        time=now,
        size=size,
        etag=etag,
        sequencer=sequencer_of(now, index),
        region=region,
    )
