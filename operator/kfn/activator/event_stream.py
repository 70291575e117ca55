"""The JetStream objects of the durable event store, decided without I/O.

One stream holds every accepted ``Event`` invocation, on the subject of its function
(``<prefix>.<namespace>.<name>``, :func:`kfn.activator.event_record.subject`), with
work-queue retention: a message leaves the stream once acknowledged. Each function's
subject has a durable pull consumer of its own (:func:`consumer_config`), shared by every
activator. A work-queue stream allows several consumers only while their subjects do not
overlap, which one subject per consumer guarantees; and a consumer per function is what
makes delivery fair between functions across the whole stream: each activator pulls from
every function with events in turn, so a backlog of one never stands in front of another's
events (:mod:`~kfn.activator.event_jetstream`).

Credentials for the NATS connection come from a Secret's keys (:func:`credentials`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
from collections.abc import Mapping
from typing import Any, Final

import nats.js.api
import nats.js.errors

STREAM: Final = "KFN_EVENTS"
SUBJECT_PREFIX: Final = "kfn.events"
#: Per-function consumers are named this plus a digest of their subject.
CONSUMER_PREFIX: Final = "kfn-events-"
#: The one consumer all functions shared before consumers per function; an activator
#: removes it at start (a work-queue stream refuses consumers whose subjects overlap), and
#: what it held unacknowledged goes to the per-function consumers.
SHARED_CONSUMER: Final = "kfn-activators"
#: How long the server waits for an ack before handing a message out again.
ACK_WAIT: Final = 30.0
#: Lambda keeps an event up to 6 hours; the stream keeps one an hour longer, so the retry
#: rule (``EventAgeExceeded``, to the on-failure destination) decides its end, not the
#: store. Only an event no activator fetched for 7 hours is dropped by the stream.
MAX_AGE: Final = 7 * 3600.0
MAX_BYTES: Final = 1024**3
#: Messages of one function handed out and not acknowledged, all replicas together (retries
#: waiting to be due included); past it its consumer hands out nothing new until some end.
MAX_ACK_PENDING: Final = 10_000
#: Events of one function an activator holds (ready or in flight) before it fetches more of
#: them: a function's backlog stays in the stream, where other activators can take it.
LANE_WINDOW: Final = 64
#: A function's consumer nobody pulled from for this long is removed by the server (its
#: function deleted, or idle); the next event of the function creates it again.
INACTIVE_THRESHOLD: Final = 3600.0


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Where the stream is and how it is bounded."""

    servers: tuple[str, ...]
    stream: str = STREAM
    subject_prefix: str = SUBJECT_PREFIX
    consumer_prefix: str = CONSUMER_PREFIX
    max_age: float = MAX_AGE
    max_bytes: int = MAX_BYTES
    max_ack_pending: int = MAX_ACK_PENDING
    ack_wait: float = ACK_WAIT
    lane_window: int = LANE_WINDOW
    inactive_threshold: float = INACTIVE_THRESHOLD
    #: nats-py ``connect`` credentials (:func:`credentials`).
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def stream_config(settings: Settings) -> nats.js.api.StreamConfig:
    """The stream every activator wants (see the module doc)."""
    return nats.js.api.StreamConfig(
        name=settings.stream,
        description="kfn: accepted asynchronous (Event) invocations, until delivered",
        subjects=[f"{settings.subject_prefix}.>"],
        retention=nats.js.api.RetentionPolicy.WORK_QUEUE,
        storage=nats.js.api.StorageType.FILE,
        discard=nats.js.api.DiscardPolicy.NEW,
        max_age=settings.max_age,
        max_bytes=settings.max_bytes,
        # Lambda's asynchronous payload limit, and room for the headers.
        max_msg_size=256 * 1024 + 8192,
        duplicate_window=120.0,
    )


def consumer_name(settings: Settings, subject: str) -> str:
    """The durable consumer of one function's subject.

    A digest, not the names: consumer names may not hold dots, and namespace and name
    joined by any character could collide (``a-b``/``c`` and ``a``/``b-c``).
    """
    digest = hashlib.sha256(subject.encode()).hexdigest()[:24]
    return f"{settings.consumer_prefix}{digest}"


def consumer_config(settings: Settings, subject: str) -> nats.js.api.ConsumerConfig:
    """The durable pull consumer of one function's events, shared by all activators."""
    name = consumer_name(settings, subject)
    return nats.js.api.ConsumerConfig(
        name=name,
        durable_name=name,
        description=f"kfn activators delivering Event invocations on {subject}",
        deliver_policy=nats.js.api.DeliverPolicy.ALL,
        ack_policy=nats.js.api.AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait,
        max_deliver=-1,
        max_ack_pending=settings.max_ack_pending,
        filter_subject=subject,
        inactive_threshold=settings.inactive_threshold,
    )


def drift(existing: Any, wanted: Any, fields: tuple[str, ...]) -> list[str]:
    """The ``fields`` of an existing stream config that differ from the wanted."""
    return [name for name in fields if getattr(existing, name) != getattr(wanted, name)]


STREAM_FIELDS: Final = ("subjects", "max_age", "max_bytes", "max_msg_size", "discard")


def waiting_subjects(counts: Mapping[str, int] | None) -> set[str]:
    """The subjects with messages, from a stream info's per-subject counts. Under work-queue
    retention a message counts until acknowledged, so this includes events held by some
    activator: a subject listed may have nothing left to fetch."""
    return {subject for subject, count in (counts or {}).items() if count > 0}


def credentials(files: Mapping[str, bytes]) -> dict[str, Any]:
    """nats-py ``connect`` options from a credentials Secret's keys: ``token``, or
    ``username`` and ``password``; none for an empty Secret."""
    if "token" in files:
        return {"token": files["token"].decode().strip()}
    if "username" in files:
        if "password" not in files:
            raise ValueError("the NATS credentials have a username but no password")
        return {
            "user": files["username"].decode().strip(),
            "password": files["password"].decode().strip(),
        }
    if files:
        raise ValueError(
            f"the NATS credentials have none of token, username/password: {sorted(files)}"
        )
    return {}


def read_credentials(directory: pathlib.Path) -> dict[str, Any]:
    """:func:`credentials` from a mounted Secret (one file per key)."""
    files = {
        path.name: path.read_bytes()
        for path in directory.iterdir()
        if path.is_file() and not path.name.startswith(".")
    }
    return credentials(files)


def full(error: BaseException) -> bool:
    """Whether a publish failed because the stream is at its bounds (then 429)."""
    description = getattr(error, "description", None) or ""
    return isinstance(error, nats.js.errors.APIError) and "maximum" in description


def describe(error: BaseException) -> str:
    if isinstance(error, nats.js.errors.APIError) and error.description:
        return error.description
    return str(error) or type(error).__name__
