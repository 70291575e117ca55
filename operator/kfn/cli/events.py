"""Test events, as the Lambda console's: one of each kind of event kfn sends a function.

Each has the keys kfn's own senders write (the runtime's HTTP mapping, the bucket, stream and
cron Trigger workers; the unit tests compare them key for key), with the values of a made-up
but plausible invocation. ``kubectl kfn events NAME`` prints one to edit and send with
``kubectl kfn invoke``, or to call a handler with on a laptop.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
from typing import Any, Final

_ORDER: Final = {"id": "o-1001", "customer": "c-42", "amount": 12.5}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


@dataclasses.dataclass(frozen=True)
class Sample:
    """A named test event."""

    name: str
    description: str
    event: dict[str, Any]


_SAMPLES: Final = (
    Sample(
        "apigw",
        "An HTTP request as a Function URL or an HTTP Trigger sends it "
        "(API Gateway HTTP API payload 2.0): GET /hello?name=kfn",
        {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": "/hello",
            "rawQueryString": "name=kfn",
            "headers": {
                "accept": "application/json",
                "host": "hello-default.kfn.localhost",
                "user-agent": "curl/8.5.0",
                "x-forwarded-for": "10.244.0.1",
            },
            "queryStringParameters": {"name": "kfn"},
            "requestContext": {
                "accountId": "anonymous",
                "apiId": "hello",
                "domainName": "hello-default.kfn.localhost",
                "domainPrefix": "hello-default",
                "http": {
                    "method": "GET",
                    "path": "/hello",
                    "protocol": "HTTP/1.1",
                    "sourceIp": "10.244.0.1",
                    "userAgent": "curl/8.5.0",
                },
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "routeKey": "$default",
                "stage": "$default",
                "time": "12/Mar/2026:19:03:58 +0000",
                "timeEpoch": 1773342238000,
            },
            "isBase64Encoded": False,
        },
    ),
    Sample(
        "s3",
        "An object uploaded to a bucket, as a bucket Trigger sends it "
        "(S3 event notification, ObjectCreated:Put)",
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "awsRegion": "local",
                    "eventTime": "2026-03-12T19:03:58.000Z",
                    "eventName": "ObjectCreated:Put",
                    "userIdentity": {"principalId": "kfn"},
                    "requestParameters": {"sourceIPAddress": "10.244.0.1"},
                    "responseElements": {
                        "x-amz-request-id": "C3D13FE58DE4C810",
                        "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWe",
                    },
                    "s3": {
                        "s3SchemaVersion": "1.0",
                        "configurationId": "thumbnails",
                        "bucket": {
                            "name": "photos",
                            "ownerIdentity": {"principalId": "kfn"},
                            "arn": "arn:aws:s3:::photos",
                        },
                        "object": {
                            "key": "uploads/holiday+2026.jpg",
                            "size": 1024,
                            "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                            "sequencer": "0061B1E3E4B3C6A9F0",
                        },
                    },
                }
            ]
        },
    ),
    Sample(
        "kafka",
        "Two records of the Kafka topic orders, as a stream Trigger sends them "
        "(Lambda's self-managed Kafka event; key and value base64)",
        {
            "eventSource": "SelfManagedKafka",
            "bootstrapServers": "kafka.default.svc:9092",
            "records": {
                "orders-0": [
                    {
                        "topic": "orders",
                        "partition": 0,
                        "offset": 15,
                        "timestamp": 1773342238000,
                        "timestampType": "CREATE_TIME",
                        "key": _b64("o-1001"),
                        "value": _b64(json.dumps(_ORDER)),
                        "headers": [{"source": list(b"web")}],
                    },
                    {
                        "topic": "orders",
                        "partition": 0,
                        "offset": 16,
                        "timestamp": 1773342239000,
                        "timestampType": "CREATE_TIME",
                        "key": _b64("o-1002"),
                        "value": _b64(json.dumps({**_ORDER, "id": "o-1002", "amount": 3})),
                        "headers": [],
                    },
                ]
            },
        },
    ),
    Sample(
        "schedule",
        "A tick of a cron Trigger (EventBridge's Scheduled Event)",
        {
            "version": "0",
            "id": "503db914-b998-5391-89c3-27fc22adb209",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "default",
            "time": "2026-03-12T07:00:00Z",
            "region": "local",
            "resources": ["arn:kfn:events:local:default:rule/report"],
            "detail": {},
        },
    ),
)

NAMES: Final = tuple(sample.name for sample in _SAMPLES)


def samples() -> tuple[Sample, ...]:
    """Every test event, in a fixed order (each a fresh copy)."""
    return tuple(dataclasses.replace(s, event=copy.deepcopy(s.event)) for s in _SAMPLES)


def get(name: str) -> dict[str, Any]:
    """The test event ``name`` (a fresh copy); KeyError when there is none."""
    for sample in _SAMPLES:
        if sample.name == name:
            return copy.deepcopy(sample.event)
    raise KeyError(name)


def dumps(event: Any) -> str:
    """An event as a file holds it: indented JSON, ending in a newline."""
    return json.dumps(event, indent=2) + "\n"
