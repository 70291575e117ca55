"""The ``Trigger`` kind: what invokes a Function (HTTP, a schedule, a stream, a bucket).

A Trigger names exactly one kind of source. The kind cannot change after creation, since each
kind keeps state the others cannot take over (a stream's committed offsets, a schedule's last
tick); delete and recreate the Trigger instead.

Retries follow Lambda: stream records are retried until they expire (``maxRetries: -1``) while
asynchronous sources (cron and bucket) get two retries and six hours, after which the event goes
to the ``onFailure`` destination if one is set, so nothing is dropped without a trace.
"""

from __future__ import annotations

import datetime
import enum
import re
from typing import Annotated, Any, ClassVar, Final, Literal

import pydantic

from kfn.api import cron, meta, toplevel, versioning, web
from kfn.api.meta import Cel, DurationRange, Rule

KIND: Final = "Trigger"
PLURAL: Final = "triggers"


class ConditionType(enum.StrEnum):
    """Condition types of a Trigger."""

    READY = "Ready"
    SOURCE_REACHABLE = "SourceReachable"
    DELIVERING = "Delivering"
    EXPOSED = "Exposed"


READY_DEPENDS_ON: Final = (ConditionType.SOURCE_REACHABLE, ConditionType.DELIVERING)


class Reason(enum.StrEnum):
    """Reasons the operator and trigger workers write into a Trigger's conditions."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    FUNCTION_NOT_FOUND = "FunctionNotFound"
    FUNCTION_NOT_READY = "FunctionNotReady"
    CONNECTED = "Connected"
    CONNECTION_FAILED = "ConnectionFailed"
    CREDENTIALS_NOT_FOUND = "CredentialsNotFound"
    SECRET_NOT_ALLOWED = "SecretNotAllowed"  # noqa: S105 - a reason
    ROUTE_CONFLICT = "RouteConflict"
    EXPOSED = "Exposed"
    EXPOSING = "Exposing"
    GATEWAY_NOT_ALLOWED = "GatewayNotAllowed"
    NOT_EXPOSED = "NotExposed"
    DELIVERING = "Delivering"
    DELIVERY_FAILING = "DeliveryFailing"
    SUSPENDED = "Suspended"
    SCHEDULED = "Scheduled"
    INVALID_SCHEDULE = "InvalidSchedule"


class TriggerType(enum.StrEnum):
    """Which source a Trigger has; written to ``status.type`` for ``kubectl get``."""

    HTTP = "Http"
    CRON = "Cron"
    STREAM = "Stream"
    BUCKET = "Bucket"


class FunctionReference(meta.Model):
    """The Function to invoke, in the Trigger's namespace."""

    name: str = pydantic.Field(
        min_length=1,
        max_length=63,
        pattern=meta.DNS1035_LABEL_PATTERN,
        description="Name of the Function.",
    )
    qualifier: str | None = pydantic.Field(
        default=None,
        max_length=63,
        pattern=versioning.QUALIFIER_PATTERN,
        description="The Function's version or alias to invoke, as Lambda's qualifier: "
        "$LATEST (the default: the newest code), a published version number such as 3, or "
        "an alias name such as live (its weights chosen per request).",
    )

    @property
    def target_qualifier(self) -> str:
        """The qualifier invocations name; "" for ``$LATEST``, which names no version."""
        if self.qualifier is None or self.qualifier == versioning.LATEST:
            return ""
        return self.qualifier


# --- destinations ----------------------------------------------------------------------------

HOST_PORT_PATTERN: Final = r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?:[0-9]{1,5}$"
KAFKA_TOPIC_PATTERN: Final = r"^[a-zA-Z0-9._-]+$"
NATS_URL_PATTERN: Final = r"^(nats|tls|ws|wss)://[^\s/?#]+$"
NATS_SUBJECT_PATTERN: Final = r"^[^\s]+$"
NATS_NAME_PATTERN: Final = r"^[^\s.*>/\\]+$"

BootstrapServers = Annotated[
    list[Annotated[str, pydantic.Field(max_length=261, pattern=HOST_PORT_PATTERN)]],
    pydantic.Field(min_length=1, max_length=16),
]
NatsServers = Annotated[
    list[Annotated[str, pydantic.Field(max_length=512, pattern=NATS_URL_PATTERN)]],
    pydantic.Field(min_length=1, max_length=16),
]
KafkaTopic = Annotated[
    str, pydantic.Field(min_length=1, max_length=249, pattern=KAFKA_TOPIC_PATTERN)
]
NatsSubject = Annotated[
    str, pydantic.Field(min_length=1, max_length=255, pattern=NATS_SUBJECT_PATTERN)
]


class KafkaDestination(meta.Model):
    """A Kafka topic that receives failed events."""

    bootstrap_servers: BootstrapServers = pydantic.Field(description="Kafka brokers as host:port.")
    topic: KafkaTopic = pydantic.Field(description="Topic the failed events are produced to.")
    credentials_secret_ref: meta.LocalObjectReference | None = pydantic.Field(
        default=None,
        description="Secret with the connection's credentials (keys username, password, "
        "ca.crt). kfn sends it only to brokers its annotation kfn.dev/allowed-endpoints lists.",
    )


class NatsDestination(meta.Model):
    """A NATS subject that receives failed events."""

    servers: NatsServers = pydantic.Field(description="NATS server URLs (nats://host:4222).")
    subject: NatsSubject = pydantic.Field(description="Subject the failed events are published to.")
    credentials_secret_ref: meta.LocalObjectReference | None = pydantic.Field(
        default=None,
        description="Secret with the connection's credentials (key creds, token, or username "
        "and password). kfn sends it only to servers its annotation kfn.dev/allowed-endpoints "
        "lists.",
    )


def _count_set(*values: object) -> int:
    return sum(value is not None for value in values)


class Destination(meta.Model):
    """Where an event goes after its retries are exhausted: exactly one of function, kafka, nats.

    The record sent describes the failure the way Lambda's on-failure destinations do: the
    original event, the error of the last attempt and the number of attempts.
    """

    function: FunctionReference | None = pydantic.Field(
        default=None, description="Invoke this Function asynchronously with the failure record."
    )
    kafka: KafkaDestination | None = pydantic.Field(
        default=None, description="Produce the failure record to a Kafka topic."
    )
    nats: NatsDestination | None = pydantic.Field(
        default=None, description="Publish the failure record to a NATS subject."
    )

    __rules__ = (
        Rule(
            cel="(has(self.function) ? 1 : 0) + (has(self.kafka) ? 1 : 0)"
            " + (has(self.nats) ? 1 : 0) == 1",
            message="a destination must set exactly one of function, kafka or nats",
            check=lambda d: _count_set(d.function, d.kafka, d.nats) == 1,
        ),
    )


class AsyncDelivery(meta.Model):
    """Retries of asynchronous invocations, as Lambda does for event sources it invokes async."""

    max_retries: int = pydantic.Field(
        default=2,
        ge=0,
        le=2,
        description="Retries after a failed invocation (0 to 2; Lambda's default of 2).",
    )
    max_event_age: Annotated[meta.Duration, DurationRange("60s", "6h")] = pydantic.Field(
        default="6h",
        description="Oldest an event may get while waiting to be retried before it is sent to "
        "onFailure (60s to 6h, Lambda's bounds; default 6h).",
    )
    on_failure: Destination | None = pydantic.Field(
        default=None,
        description="Where an event goes when retries or its age run out. Without one, the "
        "event is logged and counted, then dropped.",
    )


# --- http ------------------------------------------------------------------------------------

HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

HttpAuth = web.HttpAuth
NO_AUTH: Final = web.NO_AUTH
SERVICE_ACCOUNT_TOKEN: Final = web.SERVICE_ACCOUNT_TOKEN

HOST_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


RESERVED_PATH: Final = "/_kfn"
"""Where the activator and the function pods serve kfn's own endpoints (invoke API, health)."""

_DOT: Final = r"(\.|%2[eE])"
DOT_SEGMENT_PATTERN: Final = rf"(^|/){_DOT}{_DOT}?(/|$)"
"""A ``.`` or ``..`` segment, also percent-encoded (``%2e``), which servers decode."""
RESERVED_PATH_PATTERN: Final = r"^/(_|%5[fF])(k|%6[bB])(f|%66)(n|%6[eE])(/|$)"
"""``/_kfn`` as the first segment, also with any letter percent-encoded (RFC 3986 6.2.2.2)."""


def _is_clean_path(path: str) -> bool:
    return re.search(DOT_SEGMENT_PATTERN, path) is None and "//" not in path


def _is_not_reserved_path(path: str) -> bool:
    return re.search(RESERVED_PATH_PATTERN, path) is None


PathPrefix = Annotated[
    str,
    pydantic.Field(min_length=1, max_length=1024, pattern=r"^/[^\s?#]*$"),
    Cel(
        Rule(
            cel=f"!self.matches(r'{DOT_SEGMENT_PATTERN}') && !self.contains('//')",
            message="pathPrefix must be a plain path: no '.' or '..' segments and no empty "
            "segments ('//'); clients resolve those before they send a request",
            check=_is_clean_path,
        ),
        Rule(
            cel=f"!self.matches(r'{RESERVED_PATH_PATTERN}')",
            message=f"pathPrefix cannot be {RESERVED_PATH} or below it: kfn serves its own "
            "endpoints (invoke API, health) there",
            check=_is_not_reserved_path,
        ),
    ),
]


PayloadFormat = Literal["2.0", "1.0", "alb"]
"""The event an HTTP route gives its handler (the runtime contract's ``Kfn-Payload-Format``)."""


class HttpTrigger(meta.Model):
    """Route HTTP requests arriving at the activator to the function."""

    host: str | None = pydantic.Field(
        default=None,
        max_length=253,
        pattern=HOST_PATTERN,
        description="Host name the requests must be addressed to (lower-case DNS name, no "
        "port). A host belongs, with every path, to the first namespace whose Trigger uses it, "
        "unless the cluster admin assigned it to namespaces; another namespace's Trigger on it "
        "is refused (Ready False, RouteConflict). When unset, the Trigger serves on the shared "
        "default host: any host no namespace owns, and its own namespace's hosts.",
    )
    path_prefix: PathPrefix = pydantic.Field(
        default="/",
        description="Path prefix the requests must start with, beginning with '/', matched on "
        "whole segments. The longest matching prefix wins. The handler sees the full path "
        "unless stripPrefix is set. "
        "Without '.', '..' or empty segments, and not /_kfn, which kfn reserves. On a host "
        "several namespaces share (the default host), a prefix belongs, with every path below "
        "it, to the first namespace that claims it; another namespace's Trigger on it or under "
        "it is refused (Ready False, RouteConflict).",
    )
    methods: list[HttpMethod] = pydantic.Field(
        default_factory=list,
        max_length=7,
        description="HTTP methods routed to the function; all methods when empty.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    payload_format: PayloadFormat = pydantic.Field(
        default="2.0",
        description="The event the handler receives and the result it returns: '2.0' is API "
        "Gateway's HTTP API payload 2.0, as a Function URL sends it; '1.0' is API Gateway's "
        "REST API proxy integration (headers and query parameters also as lists, in "
        "multiValueHeaders and multiValueQueryStringParameters); 'alb' is an Application Load "
        "Balancer target's, multi-value headers off (repeated headers and parameters keep their "
        "last value, query parameters are not decoded). Each format's result is read by its own "
        "rules; only 2.0 turns a result without statusCode into a 200 JSON body.",
    )
    strip_prefix: bool = pydantic.Field(
        default=False,
        description="Whether the handler sees the path below pathPrefix instead of the full "
        "path: with pathPrefix /api, a request for /api/orders/42 has rawPath (2.0) or path "
        "(1.0, alb) /orders/42, and one for /api has '/'. For handlers written for a Function "
        "URL or an API of their own. The query string is kept; the 1.0 event's "
        "requestContext.path keeps the full path.",
    )
    auth: HttpAuth = pydantic.Field(
        default=NO_AUTH, description="Who may call the route. " + web.AUTH_DESCRIPTION
    )
    cors: web.Cors | None = pydantic.Field(
        default=None,
        description="Cross-origin resource sharing: preflights are answered by the activator "
        "without starting the function.",
    )
    gateway: web.ListenerRef | None = pydantic.Field(
        default=None,
        description="The Gateway (and listener) the route attaches to when it reaches the "
        "cluster's edge, instead of the one the cluster admin set; allowed only when the admin "
        "lets Triggers choose (Ready False, GatewayNotAllowed, otherwise). The Gateway's own "
        "allowedRoutes decide whether this namespace may attach. Needs a host.",
    )

    __rules__ = (
        Rule(
            cel="!has(self.gateway) || has(self.host)",
            message="gateway needs a host: a route on a Gateway is matched by its host name",
            check=lambda h: h.gateway is None or h.host is not None,
        ),
    )


# --- cron ------------------------------------------------------------------------------------

TIME_ZONE_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9_+-]{0,13}(/[A-Za-z][A-Za-z0-9_+-]{0,13})*$"
"""An IANA zone name's syntax: '/'-separated parts of 1 to 14 characters starting with a letter.

The tz database keeps its names so (``America/Argentina/ComodRivadavia``, ``Etc/GMT+2``);
whether the zone exists only the cron worker can tell.
"""

Schedule = Annotated[str, pydantic.Field(min_length=1, max_length=128), Cel(*cron.RULES)]
"""Five cron fields, ``rate(5 minutes)``, ``@every 10s`` or a macro such as ``@hourly``.

:data:`kfn.api.cron.RULES` check every part and say which one is wrong; 128 characters bound
the cost of their CEL.
"""


class MissedTicks(meta.Model):
    """What happens to ticks that passed while no scheduler ran (upgrade, outage)."""

    policy: Literal["Skip", "CatchUp"] = pydantic.Field(
        default="Skip",
        description="Skip: forget missed ticks and wait for the next one. CatchUp: fire each "
        "missed tick (oldest first) that is younger than deadline.",
    )
    deadline: Annotated[meta.Duration, DurationRange("1s", "24h")] | None = pydantic.Field(
        default=None,
        description="With CatchUp, how old a missed tick may be and still fire (1s to 24h); "
        "older ticks are skipped. Unset: 1h.",
    )


class CronTrigger(meta.Model):
    """Invoke the function on a schedule, asynchronously, with the payload as the event."""

    schedule: Schedule = pydantic.Field(
        description="When to fire: five cron fields (minute hour day-of-month month "
        "day-of-week, e.g. '*/5 * * * *'), 'rate(5 minutes)' as in EventBridge, '@every 10s', "
        "or a macro such as '@hourly'."
    )
    time_zone: str = pydantic.Field(
        default="UTC",
        min_length=1,
        max_length=64,
        pattern=TIME_ZONE_PATTERN,
        description="IANA time zone the cron fields are read in, e.g. Europe/Berlin.",
    )
    payload: Any = pydantic.Field(
        default=None,
        description="The event passed to the handler: any JSON value. When unset, an "
        "EventBridge-style scheduled event is sent.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    missed_ticks: MissedTicks = pydantic.Field(
        default_factory=MissedTicks, description="What happens to ticks missed during an outage."
    )
    suspend: bool = pydantic.Field(
        default=False, description="Stop firing without deleting the Trigger."
    )
    delivery: AsyncDelivery = pydantic.Field(
        default_factory=AsyncDelivery, description="Retries and the failure destination."
    )


# --- stream ----------------------------------------------------------------------------------


class KafkaSource(meta.Model):
    """A Kafka topic consumed by a consumer group."""

    bootstrap_servers: BootstrapServers = pydantic.Field(description="Kafka brokers as host:port.")
    topic: KafkaTopic = pydantic.Field(description="Topic to consume.")
    consumer_group: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=255,
        pattern=KAFKA_TOPIC_PATTERN,
        description="Consumer group whose committed offsets track progress. Unset: "
        "kfn.<namespace>.<trigger name>, deleted with the Trigger; a group named here is "
        "kept. Cannot change, since offsets belong to the group.",
    )

    __rules__ = (
        Rule(
            cel="has(self.consumerGroup) == has(oldSelf.consumerGroup)"
            " && (!has(self.consumerGroup) || self.consumerGroup == oldSelf.consumerGroup)",
            message="consumerGroup cannot change: committed offsets belong to the group",
        ),
    )


class NatsSource(meta.Model):
    """A NATS JetStream stream consumed by a durable consumer."""

    servers: NatsServers = pydantic.Field(description="NATS server URLs (nats://host:4222).")
    subject: NatsSubject = pydantic.Field(
        description="Subject (wildcards allowed) the consumer filters the stream by."
    )
    stream: str = pydantic.Field(
        min_length=1,
        max_length=255,
        pattern=NATS_NAME_PATTERN,
        description="JetStream stream holding the messages.",
    )
    durable_name: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=255,
        pattern=NATS_NAME_PATTERN,
        description="Durable consumer tracking progress. Unset: kfn_<namespace>_<trigger "
        "name>, deleted with the Trigger; a durable named here is kept. Cannot change, since "
        "acknowledgements belong to the consumer.",
    )

    __rules__ = (
        Rule(
            cel="has(self.durableName) == has(oldSelf.durableName)"
            " && (!has(self.durableName) || self.durableName == oldSelf.durableName)",
            message="durableName cannot change: acknowledgements belong to the consumer",
        ),
    )


INFINITE: Final = "-1"
_SECOND: Final = 1_000_000
RECORD_AGE_PATTERN: Final = r"^(-1|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$"


def _record_age_in_bounds(value: str) -> bool:
    if value == INFINITE:
        return True
    age = meta.duration_micros(value)
    return 60 * _SECOND <= age <= 168 * 3600 * _SECOND


RecordAge = Annotated[
    str,
    pydantic.Field(min_length=1, max_length=32, pattern=RECORD_AGE_PATTERN),
    Cel(
        Rule(
            cel="self == '-1' || (duration(self) >= duration('60s')"
            " && duration(self) <= duration('168h'))",
            message="maxRecordAge must be -1 (no limit) or a duration from 60s to 168h",
            check=_record_age_in_bounds,
        )
    ),
]


class StreamTrigger(meta.Model):
    """Invoke the function synchronously with batches of records, in order per partition.

    A failed batch blocks its partition (or consumer) and is retried; progress is committed only
    after the function succeeded or the batch went to onFailure, so no record is lost.
    """

    kafka: KafkaSource | None = pydantic.Field(default=None, description="A Kafka topic.")
    nats: NatsSource | None = pydantic.Field(default=None, description="A NATS JetStream stream.")
    batch_size: int = pydantic.Field(
        default=100, ge=1, le=10000, description="Most records in one invocation (1 to 10000)."
    )
    max_batching_window: Annotated[meta.Duration, DurationRange(maximum="5m")] = pydantic.Field(
        default="0s",
        description="How long to gather records before invoking with fewer than batchSize "
        "(0s to 5m). 0s invokes as soon as records are there.",
    )
    starting_position: Literal["Latest", "Earliest", "AtTimestamp"] = pydantic.Field(
        default="Latest",
        description="Where a new consumer starts: Latest (only new records), Earliest (all "
        "retained records) or AtTimestamp (startingTimestamp). Cannot change.",
    )
    starting_timestamp: datetime.datetime | None = pydantic.Field(
        default=None,
        description="RFC 3339 time to start from; required with AtTimestamp and only then.",
    )
    max_retries: int = pydantic.Field(
        default=-1,
        ge=-1,
        le=10000,
        description="Retries of a failed batch; -1 (default) retries until the records reach "
        "maxRecordAge, like Lambda.",
    )
    max_record_age: RecordAge = pydantic.Field(
        default=INFINITE,
        description="Records older than this are not invoked but sent to onFailure. '-1' "
        "(default) means no limit, like Lambda's -1; otherwise a duration from 60s to 168h.",
    )
    bisect_batch_on_error: bool = pydantic.Field(
        default=False,
        description="On failure, split the batch in two and retry each half, to isolate a bad "
        "record.",
    )
    report_batch_item_failures: bool = pydantic.Field(
        default=False,
        description='The handler may return {"batchItemFailures": [{"itemIdentifier": '
        "...}]} to retry only from the first failed record, as with Lambda.",
    )
    on_failure: Destination | None = pydantic.Field(
        default=None,
        description="Where records go after retries or age run out; without it they are "
        "logged and skipped.",
    )
    credentials_secret_ref: meta.LocalObjectReference | None = pydantic.Field(
        default=None,
        description="Secret with the connection's credentials (Kafka: username, password, "
        "mechanism, ca.crt; NATS: creds, token, or username and password). kfn sends it only "
        "to the brokers or servers its annotation kfn.dev/allowed-endpoints lists; elsewhere "
        "the Trigger is not Ready (SecretNotAllowed).",
    )

    __rules__ = (
        Rule(
            cel="has(self.kafka) != has(self.nats)",
            message="stream must set exactly one of kafka or nats",
            check=lambda s: _count_set(s.kafka, s.nats) == 1,
        ),
        Rule(
            cel="(self.startingPosition == 'AtTimestamp') == has(self.startingTimestamp)",
            message="startingTimestamp is required when startingPosition is AtTimestamp, "
            "and allowed only then",
            check=lambda s: (
                (s.starting_position == "AtTimestamp") == (s.starting_timestamp is not None)
            ),
        ),
        Rule(
            cel="self.startingPosition == oldSelf.startingPosition"
            " && has(self.startingTimestamp) == has(oldSelf.startingTimestamp)"
            " && (!has(self.startingTimestamp)"
            " || self.startingTimestamp == oldSelf.startingTimestamp)",
            message="startingPosition and startingTimestamp cannot change: they only apply "
            "to a new consumer",
        ),
        Rule(
            cel="has(self.kafka) == has(oldSelf.kafka)",
            message="the stream kind (kafka or nats) cannot change",
        ),
    )

    @pydantic.field_serializer("starting_timestamp")
    def _rfc3339(self, value: datetime.datetime | None) -> str | None:
        return None if value is None else meta.format_time(value)


# --- bucket ----------------------------------------------------------------------------------

BucketEvent = Literal[
    "s3:ObjectCreated:*",
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
    "s3:ObjectRemoved:*",
    "s3:ObjectRemoved:Delete",
    "s3:ObjectRemoved:DeleteMarkerCreated",
]


def _is_literal(text: str) -> bool:
    return "*" not in text and "?" not in text


KeyFilter = Annotated[
    str,
    pydantic.Field(max_length=1024),
    Cel(
        Rule(
            cel="!self.contains('*') && !self.contains('?')",
            message="prefix and suffix are literal, as in S3: '*' and '?' would match only "
            "themselves (write the suffix .jpg, not *.jpg)",
            check=_is_literal,
        )
    ),
]
"""The start or end of an object key, compared character by character as S3 does."""


class ObjectFilter(meta.Model):
    """Only objects whose key matches are reported."""

    prefix: KeyFilter | None = pydantic.Field(
        default=None, description="Key prefix, e.g. uploads/ (literal: no wildcards)."
    )
    suffix: KeyFilter | None = pydantic.Field(
        default=None, description="Key suffix, e.g. .jpg (literal: no wildcards)."
    )


class BucketTrigger(meta.Model):
    """Invoke the function asynchronously for object changes in an S3-compatible bucket.

    The event has the shape of an S3 event notification (``Records[].s3.object.key``).
    """

    endpoint: str = pydantic.Field(
        max_length=2048,
        pattern=r"^https?://[^\s/?#]+[^\s?#]*$",
        description="URL of the S3-compatible service, e.g. http://minio.storage:9000.",
    )
    bucket: str = pydantic.Field(
        min_length=3,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$",
        description="Name of the bucket.",
    )
    region: str = pydantic.Field(
        default="us-east-1",
        min_length=1,
        max_length=32,
        pattern=r"^[a-z0-9-]+$",
        description="Region used to sign requests.",
    )
    events: list[BucketEvent] = pydantic.Field(
        min_length=1,
        max_length=8,
        description="Event types reported, as in S3 notifications (s3:ObjectCreated:*, "
        "s3:ObjectRemoved:Delete, ...). In Poll mode new objects are reported as "
        "s3:ObjectCreated:Put and removed ones as s3:ObjectRemoved:Delete.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    filter: ObjectFilter | None = pydantic.Field(
        default=None, description="Report only objects whose key matches."
    )
    mode: Literal["Push", "Poll"] = pydantic.Field(
        default="Push",
        description="Push: the service sends bucket notifications to kfn (webhook); kfn also "
        "lists the bucket every pollInterval and delivers changes whose notification never "
        "came. Poll: kfn lists the bucket every pollInterval, for services without "
        "notifications.",
    )
    poll_interval: Annotated[meta.Duration, DurationRange("1s", "1h")] = pydantic.Field(
        default="10s",
        description="How often kfn lists the bucket (1s to 1h): in Poll mode to find changes, "
        "in Push mode to catch up on notifications the service failed to send.",
    )
    credentials_secret_ref: meta.LocalObjectReference | None = pydantic.Field(
        default=None,
        description="Secret with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, to list the "
        "bucket (Push mode catches up on lost notifications only with it). kfn uses it only "
        "with an endpoint its annotation kfn.dev/allowed-endpoints lists.",
    )
    delivery: AsyncDelivery = pydantic.Field(
        default_factory=AsyncDelivery, description="Retries and the failure destination."
    )


# --- the spec --------------------------------------------------------------------------------


class TriggerSpec(meta.Model):
    """The desired state of a Trigger: a function and exactly one source."""

    function_ref: FunctionReference = pydantic.Field(
        description="The Function to invoke, in the same namespace."
    )
    http: HttpTrigger | None = pydantic.Field(default=None, description="HTTP requests.")
    cron: CronTrigger | None = pydantic.Field(default=None, description="A schedule.")
    stream: StreamTrigger | None = pydantic.Field(
        default=None, description="Records from Kafka or NATS JetStream."
    )
    bucket: BucketTrigger | None = pydantic.Field(
        default=None, description="Object changes in an S3-compatible bucket."
    )

    __rules__ = (
        Rule(
            cel="(has(self.http) ? 1 : 0) + (has(self.cron) ? 1 : 0)"
            " + (has(self.stream) ? 1 : 0) + (has(self.bucket) ? 1 : 0) == 1",
            message="a Trigger must set exactly one of http, cron, stream or bucket",
            check=lambda s: _count_set(s.http, s.cron, s.stream, s.bucket) == 1,
        ),
        Rule(
            cel="has(self.http) == has(oldSelf.http) && has(self.cron) == has(oldSelf.cron)"
            " && has(self.stream) == has(oldSelf.stream)"
            " && has(self.bucket) == has(oldSelf.bucket)",
            message="the kind of a Trigger (http, cron, stream or bucket) cannot change; "
            "create a new Trigger instead",
        ),
    )

    @property
    def type(self) -> TriggerType:
        """Which source is set (validation guarantees exactly one)."""
        if self.http is not None:
            return TriggerType.HTTP
        if self.cron is not None:
            return TriggerType.CRON
        if self.stream is not None:
            return TriggerType.STREAM
        return TriggerType.BUCKET


class TriggerStatus(toplevel.Status):
    """The observed state of a Trigger."""

    conditions: list[meta.Condition] = toplevel.conditions_field(
        "Ready (summary), SourceReachable and Delivering."
    )
    type: TriggerType | None = pydantic.Field(
        default=None, description="Which source the Trigger has (Http, Cron, Stream, Bucket)."
    )
    url: str | None = pydantic.Field(
        default=None, max_length=2048, description="http: the URL routed to the function."
    )
    last_fire_time: datetime.datetime | None = pydantic.Field(
        default=None, description="cron: when the schedule last fired."
    )
    next_fire_time: datetime.datetime | None = pydantic.Field(
        default=None, description="cron: when the schedule fires next."
    )
    last_event_time: datetime.datetime | None = pydantic.Field(
        default=None, description="When the last event was delivered to the function."
    )
    lag: int | None = pydantic.Field(
        default=None, ge=0, description="stream: records not yet processed, over all partitions."
    )

    @pydantic.field_serializer("last_fire_time", "next_fire_time", "last_event_time")
    def _rfc3339(self, value: datetime.datetime | None) -> str | None:
        return None if value is None else meta.format_time(value)


TRIGGER_NAME_RULE: Final = toplevel.NameRule(
    max_length=63,
    pattern=meta.DNS1123_LABEL_PATTERN,
    message="a Trigger name must be a DNS-1123 label: at most 63 lower-case letters, digits "
    "and '-' (it is used in label values and consumer names)",
)


class Trigger(toplevel.Object):
    """A Trigger as stored by the API server."""

    NAME_RULE: ClassVar[toplevel.NameRule] = TRIGGER_NAME_RULE

    kind: Literal["Trigger"] = KIND
    spec: TriggerSpec
    status: TriggerStatus | None = None
